"""`--workers N`: load steps shared by this process and real worker processes against a real server.

Everything here is real: `bemcp serve` in a subprocess, `python -m bemcp.stress.workerproc` processes talking
over pipes, TCP connections from each process to the server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from bemcp.stress.discovery import Call
from bemcp.stress.load import SessionPool, closed_calls, open_calls
from bemcp.stress.recorder import Recorder
from bemcp.stress.targets import HttpTarget
from bemcp.stress.workerpool import WorkerPool
from tests.procs import ROOT, HttpServer, http_server
from tests.stress.cli_run import check_outputs, no_traceback, stress

ECHO = Call("echo", {"text": "x"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    with http_server("--stress-tools", tmp=tmp_path_factory.mktemp("server")) as s:
        yield s


def _echo(_rng: Any) -> Call:
    return ECHO


def _connections_to(pid: int, port: int) -> int:
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for c in conns if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


async def _with_pool(url: str, revision: str, count: int, body: Any) -> Any:
    async with HttpTarget(url, revision=revision) as target:  # type: ignore[arg-type]
        recorder = Recorder()
        pool = SessionPool(target)
        workers = WorkerPool(count)
        try:
            await workers.start(target.client_params(), recorder.t0_wall)
            return await body(recorder, pool, workers)
        finally:
            await workers.close()
            await pool.close()


@pytest.mark.parametrize("revision", ["2026-07-28", "2025-11-25"])
def test_a_closed_step_is_dealt_over_the_processes_and_merged(server: HttpServer, revision: str) -> None:
    """7 callers over 3 processes (3 + 2 + 2): each worker holds its own connections to the server while the
    step runs, and the merged step counts every call once, as one step of 7 callers."""
    import random

    seen: dict[int, int] = {}

    async def body(recorder: Recorder, pool: SessionPool, workers: WorkerPool) -> Any:
        assert workers.processes == 3 and len(set(workers.pids)) == 2 and os.getpid() not in workers.pids
        step = recorder.step("tsunami", 7, concurrency=7)
        calls = closed_calls(7, _echo, random.Random(1))

        async def watch() -> None:
            await asyncio.sleep(0.7)
            for pid in workers.pids:
                seen[pid] = await asyncio.to_thread(_connections_to, pid, server.port)

        watcher = asyncio.create_task(watch())
        await workers.closed(recorder, step, pool, calls, 1.5, 10.0)
        await watcher
        return recorder, step, workers.failures

    recorder, step, failures = asyncio.run(_with_pool(server.url, revision, 3, body))
    assert failures == []
    assert seen and all(n == 2 for n in seen.values()), seen  # each worker: its 2 callers' connections
    assert (step.level, step.concurrency) == (7, 7)
    counts = step.outcome_counts()
    assert counts["ok"] == step.calls > 1000, counts  # every call answered ok (a 2-core machine does >1k/s)
    rows = recorder.series.rows()
    assert sum(r["achieved"] for r in rows) == step.calls  # the time series holds each call exactly once
    assert sum(r["offered"] for r in rows) == step.calls
    assert 1.4 < step.duration < 3.0


def test_an_open_step_interleaves_one_schedule(server: HttpServer) -> None:
    """300 calls/s for 1 s over 3 processes: exactly the 300 scheduled calls, no slot sent twice or lost."""
    import random

    async def body(recorder: Recorder, pool: SessionPool, workers: WorkerPool) -> Any:
        step = recorder.step("rate", 300.0, model="open")
        calls = open_calls(300.0, 1.0, _echo, random.Random(1))
        await workers.open(recorder, step, pool, calls, 300.0, 1.0, 10.0)
        return step, workers.failures

    step, failures = asyncio.run(_with_pool(server.url, "auto", 3, body))
    assert failures == []
    assert step.calls == step.outcome_counts()["ok"] == 300
    assert (step.level, step.offered_rate, step.concurrency) == (300.0, 300.0, None)
    # Interleaved, the calls of the three processes never bunch: from their intended times no call waited long.
    assert step.histogram().percentile(99.0) < 500_000


def test_a_worker_that_dies_is_left_out_and_the_others_take_its_share(server: HttpServer) -> None:
    import random

    async def body(recorder: Recorder, pool: SessionPool, workers: WorkerPool) -> Any:
        victim = workers.pids[0]
        os.kill(victim, signal.SIGKILL)
        await asyncio.to_thread(psutil.Process(victim).wait, 5)
        first = recorder.step("tsunami", 6, concurrency=6)
        await workers.closed(recorder, first, pool, closed_calls(6, _echo, random.Random(1)), 0.5, 10.0)
        after = workers.processes, list(workers.pids)
        second = recorder.step("tsunami", 4, concurrency=4)
        await workers.closed(recorder, second, pool, closed_calls(4, _echo, random.Random(2)), 0.5, 10.0)
        return first, second, after, list(workers.failures), victim

    first, second, (processes, pids), failures, victim = asyncio.run(_with_pool(server.url, "auto", 3, body))
    assert len(failures) == 1 and failures[0].worker == 1 and failures[0].phase == "tsunami", failures
    assert processes == 2 and victim not in pids
    # The dead worker's callers of the first step were lost (its share was sent before the death was known);
    # the step is still one of 6 callers, and all its answers are good.
    assert first.concurrency == 6 and first.outcome_counts()["ok"] == first.calls > 0
    assert second.concurrency == 4 and second.outcome_counts()["ok"] == second.calls > 0


def test_close_stops_every_worker(server: HttpServer) -> None:
    pids: list[int] = []

    async def body(recorder: Recorder, pool: SessionPool, workers: WorkerPool) -> None:
        pids.extend(workers.pids)

    asyncio.run(_with_pool(server.url, "auto", 3, body))
    assert len(pids) == 2
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_worker_answers_every_line_and_stops_on_eof() -> None:
    """Garbage, an unknown op and a step before init each get a clear refusal; end of input stops it cleanly."""
    lines = [b"not json", b'{"op": "dance"}', b'{"op": "closed", "phase": "x", "index": 0}', b'{"op": "init"}']
    proc = subprocess.run(
        [sys.executable, "-m", "bemcp.stress.workerproc"],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        cwd=ROOT,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    answers = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert len(answers) == len(lines)
    assert all(a["ok"] is False and a["error"] for a in answers), answers
    assert "unknown op 'dance'" in answers[1]["error"]
    assert answers[2]["error"] == "not initialised"
    assert "KeyError" in answers[3]["error"]


def test_cli_with_workers_writes_a_consistent_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = stress("--phases", "rate", "--workers", "2", "--out", str(out), timeout=120)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = check_outputs(out, proc)
    assert report["run"]["workers"] == 2
    steps = report["phases"]["rate"]["steps"]
    # The fixed ladder, every step's offered schedule sent in full between the two processes.
    assert [s["offered_rate"] for s in steps][:3] == [50.0, 100.0, 200.0]
    sent = [(s["offered_rate"], s["calls"]) for s in steps]
    assert all(calls == int(rate * 1.5) for rate, calls in sent), sent
    assert "load from 2 processes" in proc.stderr


def test_workers_share_a_session_with_a_server_no_one_here_wrote(tmp_path: Path) -> None:
    """The official SDK's MCPServer on 2025-11-25: the worker joins the tester's MCP session and every call of
    every step is answered ok."""
    from tests.stress.sdk_app import running_http

    out = tmp_path / "out"
    with running_http() as url:
        proc = stress(
            "--target", url, "--phases", "rate", "--revision", "2025-11-25", "--workers", "2", "--out", str(out),
            timeout=120,
        )  # fmt: skip
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = check_outputs(out, proc)
    assert report["target"]["revision"] == "2025-11-25" and report["run"]["workers"] == 2
    steps = report["phases"]["rate"]["steps"]
    assert steps and all(s["outcomes"]["ok"] == s["calls"] > 0 for s in steps), [s["outcomes"] for s in steps]
    assert not [f for f in report["findings"] if "worker" in f["message"].lower()]
