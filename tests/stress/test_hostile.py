"""The stress tester against servers that misbehave on purpose (tests/stress/hostile_server.py, real processes over
real sockets and pipes): none of them may fool it into counting a wrong answer as a success, or freeze it.

- wrong ids (id + 1): over stdio the answer would land on another call in flight; over HTTP it is that call's
  answer, wrong. Never a success; a critical finding.
- duplicate answers, and answers to ids never sent: each call keeps its one answer; the extras are tallied.
- a result of the wrong kind for the method: a protocol error.
- a server that stops reading: calls time out ("unread" when the request is stuck on our side), nothing hangs.
- random connection closes: transport errors and a finding.
- hostile schemas (a catastrophic regex, a gigabyte minLength): the tool is skipped with the reason, the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bemcp.stress.client import MODERN, HttpClient
from bemcp.stress.discovery import MAX_TOOLS, discover
from bemcp.stress.model import CallResult
from bemcp.stress.stdio_client import StdioClient
from tests.procs import ROOT, free_port
from tests.stress.cli_run import check_outputs, no_traceback, stress

TRANSPORTS = ["http", "stdio"]


def _argv(transport: str, mode: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.stress.hostile_server", "--transport", transport, "--mode", mode, *extra]


@contextlib.contextmanager
def hostile_http(mode: str, *extra: str) -> Iterator[str]:
    """The hostile server on a free port; yields its /mcp URL once it accepts connections."""
    port = free_port()
    proc = subprocess.Popen(
        _argv("http", mode, "--port", str(port), *extra), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the hostile server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the hostile server did not start listening in 20 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@contextlib.asynccontextmanager
async def hostile_client(transport: str, mode: str, *extra: str) -> AsyncIterator[HttpClient | StdioClient]:
    """A started client of the tester's own, speaking 2026-07-28 to the hostile server."""
    if transport == "http":
        with hostile_http(mode, *extra) as url:
            client = HttpClient(url, MODERN)
            try:
                yield client
            finally:
                await client.close()
    else:
        stdio = StdioClient(_argv("stdio", mode, *extra), cwd=ROOT)
        await stdio.start()
        try:
            yield stdio
        finally:
            await stdio.kill()


async def _calls(client: HttpClient | StdioClient, n: int, *, timeout: float, text: str = "x") -> list[CallResult]:
    """`n` concurrent echo calls, each on a session of its own (HTTP: its own connection)."""
    sessions = [client.session() for _ in range(n)]
    try:
        # Bounded: a client that hung on a server would fail here, not hang the test run.
        return await asyncio.wait_for(
            asyncio.gather(*(s.call_tool("echo", {"text": text}, timeout=timeout) for s in sessions)), 60
        )
    finally:
        for s in sessions:
            await s.close()


async def _until(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.01)


def _outcomes(results: list[CallResult]) -> Counter[tuple[str, str | None]]:
    return Counter((r.outcome, r.detail) for r in results)


# -- wrong, doubled and stray answers ----------------------------------------------------------------------


async def test_stdio_answers_with_the_wrong_id_are_never_credited_to_another_call() -> None:
    """Answer k carries id k + 1. With ids handed out in order, that is the next call in flight, and it took the
    answer as its own: 99% ok. The ids are scattered, so k + 1 is no call's: every call times out instead, and
    every stray answer is tallied as an answer to an id never sent."""
    async with hostile_client("stdio", "wrong-id") as client:
        results = await _calls(client, 40, timeout=1.0)
        assert _outcomes(results) == {("timeout", None): 40}
        await _until(lambda: client.tally.counts.get("unknown_id", 0) == 40)
        assert client.tally.counts == {"unknown_id": 40}


async def test_http_answers_with_the_wrong_id_are_protocol_errors() -> None:
    async with hostile_client("http", "wrong-id") as client:
        results = await _calls(client, 40, timeout=5.0)
        assert _outcomes(results) == {("protocol_error", "wrong_id"): 40}
        assert client.tally.counts == {}  # each wrong answer is a call's own, counted there


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_duplicate_answers_are_tallied_and_each_call_counted_once(transport: str) -> None:
    async with hostile_client(transport, "duplicate") as client:
        results = await _calls(client, 30, timeout=5.0)
        assert _outcomes(results) == {("ok", None): 30}
        await _until(lambda: client.tally.counts.get("duplicate", 0) == 30)
        assert client.tally.counts == {"duplicate": 30}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_answers_to_ids_never_sent_are_tallied(transport: str) -> None:
    async with hostile_client(transport, "never-sent") as client:
        results = await _calls(client, 30, timeout=5.0)
        assert _outcomes(results) == {("ok", None): 30}  # each call's own answer came too
        await _until(lambda: client.tally.counts.get("unknown_id", 0) == 30)
        assert client.tally.counts == {"unknown_id": 30}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_result_of_another_method_is_a_protocol_error(transport: str) -> None:
    async with hostile_client(transport, "bad-result") as client:
        results = await _calls(client, 10, timeout=5.0)
        assert _outcomes(results) == {("protocol_error", "wrong_result"): 10}


async def test_a_listing_without_end_is_cut() -> None:
    """20,000 tools in one listing: discovery keeps the first 10,000 (each with its pool of arguments)."""
    async with hostile_client("http", "many-tools") as client:
        session = client.session()
        try:
            found = await discover(session, timeout=30)
        finally:
            await session.close()
    assert len(found.tools) == MAX_TOOLS and found.tools[0].name == "echo"
    assert all(t.pool for t in found.callable) and len(found.callable) == MAX_TOOLS


# -- a server that stops reading, or hangs up -------------------------------------------------------------


async def test_a_stdio_server_that_stops_reading_cannot_freeze_the_tester() -> None:
    """After 3 calls the server never reads its stdin again. 64 KiB calls fill the pipe and then the tester's
    buffer past its high-water mark, where a write waits for the pipe to drain: that wait, too, ends at the
    call's deadline (it used to wait forever). Calls whose bytes are still on our side time out as "unread"."""
    async with hostile_client("stdio", "stop-reading", "--after", "3") as client:
        first = await _calls(client, 3, timeout=5.0)
        assert _outcomes(first) == {("ok", None): 3}
        results = await _calls(client, 48, timeout=2.0, text="x" * 65536)
        outcomes = _outcomes(results)
        assert set(outcomes) <= {("timeout", None), ("timeout", "unread")}, outcomes
        assert outcomes[("timeout", "unread")] > 0, outcomes
        assert isinstance(client, StdioClient) and client.alive()  # still there: it just does not read


async def test_an_http_server_that_stops_reading_times_out_cleanly() -> None:
    """4 MiB requests to a server that stopped reading cannot all fit in the kernel's socket buffers: what is left
    on our side when the deadline comes makes the timeout "unread"."""
    async with hostile_client("http", "stop-reading", "--after", "3") as client:
        assert _outcomes(await _calls(client, 3, timeout=5.0)) == {("ok", None): 3}
        results = await _calls(client, 8, timeout=2.0, text="x" * (4 << 20))
        outcomes = _outcomes(results)
        assert set(outcomes) <= {("timeout", None), ("timeout", "unread")}, outcomes
        assert outcomes[("timeout", "unread")] > 0, outcomes


async def test_http_random_closes_are_transport_errors() -> None:
    async with hostile_client("http", "random-close") as client:
        session = client.session()
        try:
            results = [await session.call_tool("echo", {"text": "x"}, timeout=5.0) for _ in range(200)]
        finally:
            await session.close()
        outcomes = _outcomes(results)
        # A seeded 30% of 200: the server closes instead of answering, and nothing else goes wrong.
        assert set(outcomes) == {("ok", None), ("transport_error", "connection_closed")}, outcomes
        assert 30 <= outcomes[("transport_error", "connection_closed")] <= 90


# -- whole runs ----------------------------------------------------------------------------------------------


def _run(
    out: Path, target: str, *args: str, timeout: float = 180
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = stress("--profile", "quick", "--target", target, "--out", str(out), *args, timeout=timeout)
    no_traceback(proc)
    return proc, check_outputs(out, proc)


def _findings(report: dict[str, Any], severity: str) -> list[str]:
    return [f["message"] for f in report["findings"] if f["severity"] == severity]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hostile_schemas_are_skipped_with_the_reason_and_the_run_goes_on(tmp_path: Path, transport: str) -> None:
    """`evil`'s pattern (a+)+[^\\s\\S] used to hang argument generation forever inside `re` (only run_started in
    the log, no report); `huge` asks for a gigabyte string. Both are skipped, and echo carries the run (the soak:
    the shortest load phase, as arguments are generated before any phase)."""
    with contextlib.ExitStack() as stack:
        if transport == "http":
            target = stack.enter_context(hostile_http("hostile-schemas"))
        else:
            target = "stdio:" + shlex.join(_argv("stdio", "hostile-schemas"))
        _, report = _run(tmp_path, target, "--phases", "soak", timeout=120)
    skipped = report["target"]["skipped_tools"]
    assert set(skipped) == {"evil", "huge"}, skipped
    # No string matches it, which the bounded matcher says in a few steps (test_argsgen has one that runs out).
    assert skipped["evil"].startswith("cannot generate arguments") and "(a+)+" in skipped["evil"], skipped["evil"]
    assert "over 262,144 bytes" in skipped["huge"], skipped["huge"]
    assert report["target"]["tools_used"] == ["echo"]
    soak = report["phases"]["soak"]
    assert soak["status"] == "completed"
    assert sum(s["outcomes"]["ok"] for s in soak["steps"]) > 100


def test_a_run_against_wrong_ids_fails_with_a_critical_finding(tmp_path: Path) -> None:
    with hostile_http("wrong-id") as url:
        proc, report = _run(tmp_path, url, "--phases", "tsunami")
    assert proc.returncode == 1 and report["verdict"]["status"] == "FAIL"
    summary = report["summary"]
    assert summary["ok"] == 0 and summary["outcomes"]["protocol_error"] == summary["total_calls"] > 0
    assert any("answered" in m and "another request's id" in m for m in _findings(report, "critical")), report[
        "findings"
    ]


def test_a_run_against_duplicate_answers_fails_with_a_critical_finding(tmp_path: Path) -> None:
    command = "stdio:" + shlex.join(_argv("stdio", "duplicate"))
    # The soak: a closed-model load like the tsunami's, and at 8 s the shortest (the tsunami's good steps run 14 s).
    _, report = _run(tmp_path, command, "--phases", "soak")
    assert report["verdict"]["status"] == "FAIL"
    steps = report["phases"]["soak"]["steps"]
    assert all(s["outcomes"]["ok"] == s["calls"] for s in steps)  # every call has its one answer...
    duplicates = sum(s.get("violations", {}).get("duplicate", 0) for s in steps)
    assert duplicates >= sum(s["calls"] for s in steps) - 8  # ...and its second, but for a few still in the pipe
    assert any("duplicates" in m for m in _findings(report, "critical")), report["findings"]


def test_a_run_against_random_closes_has_a_finding(tmp_path: Path) -> None:
    with hostile_http("random-close") as url:
        _, report = _run(tmp_path, url, "--phases", "tsunami")
    assert report["verdict"]["status"] == "FAIL"  # 30% of the calls lost is far past the error budget
    assert any("closed" in m and "connections with a call in flight" in m for m in _findings(report, "warning"))


@pytest.mark.slow
def test_a_run_against_a_server_that_stops_reading_ends_with_a_finding(tmp_path: Path) -> None:
    """Every call after the 200th waits out the quick profile's 10 s call timeout: the run still ends, and says so.
    The soak's two slices each wait it out once (about 20 s); the tsunami's search down to one caller, three times."""
    with hostile_http("stop-reading") as url:
        _, report = _run(tmp_path, url, "--phases", "soak", timeout=240)
    assert report["verdict"]["status"] == "FAIL"
    assert report["summary"]["outcomes"]["timeout"] > 0
    assert any("no answer within the 10 s call timeout" in m for m in _findings(report, "warning")), report["findings"]
