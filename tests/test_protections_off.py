"""`--protections off`, the baseline every cost figure is measured against, through real servers.

What it turns off (src/bemcp/runtime/runtime.py, `RuntimeConfig.protections`): shedding and admission on the
call path, the memory sampler, the watchdog, the call path's metric work (the latency histogram, the shed
counts) and the task log. Each is shown against a control: the same flags with protections on, where the same
calls are refused, shed, recorded or logged. What stays: every request is answered exactly once, by its own
answer; the task registry (in flight, completed); and call deadlines (`--call-timeout`), which belong to the call
rather than to a protection. The flag is for benchmarks only, so `bemcp serve --help` does not show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from tests.procs import BEMCP, ROOT, HttpServer, StdioServer, _env, http_server
from tests.test_protection import (
    Conn,
    Reply,
    call,
    call_request,
    get,
    health,
    metrics,
    result_of,
    text_of,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
OVERLOADED = -32050
CALL_TIMEOUT = -32051
CALLS = 30  # concurrent calls against a limit of 1 with no queue
CALL_HISTOGRAM = 'bemcp_call_duration_seconds_count{method="tools/call"}'


@contextmanager
def serve(protections: str, *flags: str, tmp: Path) -> Iterator[HttpServer]:
    tmp.mkdir(parents=True, exist_ok=True)
    with http_server("--stress-tools", "--protections", protections, *flags, tmp=tmp) as srv:
        yield srv


async def concurrent_calls(port: int, tool: str, args: dict[str, Any], n: int) -> list[Reply]:
    """`n` calls at once, each on its own connection with its own id; every reply is checked against its id."""

    async def one(i: int) -> Reply:
        conn = await Conn.open(port)
        try:
            reply = await asyncio.wait_for(conn.request(call_request(port, i, tool, args)), 30)
        finally:
            await conn.close()
        assert reply.json()["id"] == i, reply.body
        return reply

    return list(await asyncio.gather(*(one(i) for i in range(n))))


# -- admission -------------------------------------------------------------------------------


async def test_no_admission_refusal_at_a_limit_that_refuses(tmp_path: Path) -> None:
    limit = ("--max-concurrency", "1", "--queue-size", "0")
    with serve("on", *limit, tmp=tmp_path / "on") as on:
        # The control: it refuses (2 s sleeps, so every call arrives while the first holds the one slot).
        replies = await concurrent_calls(on.port, "sleep", {"seconds": 2.0}, CALLS)
        assert sorted(r.status for r in replies) == [200] + [503] * (CALLS - 1)
        refused = [r.json()["error"] for r in replies if r.status == 503]
        assert {e["data"]["reason"] for e in refused} == {"concurrency_limit"}

    with serve("off", *limit, tmp=tmp_path / "off") as off:
        port = off.port
        probes = 0  # server_health is a call too: the registry counts each once it has answered

        async def probe() -> dict[str, Any]:
            nonlocal probes
            h = await health(port)
            probes += 1
            return h

        calls = asyncio.create_task(concurrent_calls(port, "sleep", {"seconds": 2.0}, CALLS))
        # The task registry still counts every call in flight, all of them at once past the "limit".
        busy = await wait_until(probe, lambda h: h["in_flight"] == CALLS, 10, f"{CALLS} in flight")
        assert busy["queued"] == 0
        replies = await calls
        assert [r.status for r in replies] == [200] * CALLS
        assert all(text_of(result_of(r)) == "slept 2.0s" for r in replies)
        done = await health(port)
        assert done["in_flight"] == 0
        assert done["completed"] == {"ok": CALLS + probes}
        m = await metrics(port)
        assert m['bemcp_calls_completed_total{outcome="ok"}'] == CALLS + probes + 1
        assert m["bemcp_admitted_total"] == 0  # admission never saw them
        assert sum(v for k, v in m.items() if k.startswith("bemcp_rejected_total")) == 0


# -- memory ----------------------------------------------------------------------------------


async def test_no_memory_shedding_and_no_sampler(tmp_path: Path) -> None:
    # A 40 MiB limit is a 32 MiB budget, below an idle server's RSS: critical from the first sample on.
    tiny = ("--memory-limit-mb", "40")
    with serve("on", *tiny, tmp=tmp_path / "on") as on:  # the control; stopped well inside the 10 s emergency
        reply = await call(on.port, "echo", {"text": "shed"})
        assert reply.status == 503
        assert reply.json()["error"]["data"]["reason"] == "memory_pressure"

    with serve("off", *tiny, tmp=tmp_path / "off") as off:
        port = off.port
        for tool, args in (("echo", {"text": "served"}), ("io_write", {"kilobytes": 4})):  # a read and a write
            assert result_of(await call(port, tool, args)).get("isError") is not True
        assert (await metrics(port)).get('bemcp_calls_shed_total{reason="memory_pressure"}', 0) == 0

    # No sampler: the memory figures stay those of the one sample taken at start, whatever the process does.
    with serve("off", "--memory-limit-mb", "1024", tmp=tmp_path / "sampler") as off:
        port = off.port
        before = (await health(port))["memory"]
        proc = psutil.Process(off.proc.pid)
        holder = asyncio.create_task(call(port, "allocate_memory", {"megabytes": 64, "hold_seconds": 1.5}))
        real: list[int] = []
        seen: list[dict[str, Any]] = []
        while not holder.done():  # 1.5 s held: three sampling periods at normal, had a sampler been running
            real.append(proc.memory_info().rss)
            seen.append((await health(port))["memory"])
            await asyncio.sleep(0.05)
        assert result_of(await holder).get("isError") is not True
        assert max(real) >= before["rss_bytes"] + 60 * MiB  # the pages really were resident
        assert {(m["rss_bytes"], m["usage_bytes"]) for m in seen} == {(before["rss_bytes"], before["usage_bytes"])}


async def test_readiness_ignores_the_unsampled_memory_level(tmp_path: Path) -> None:
    with serve("off", "--memory-limit-mb", "40", tmp=tmp_path) as off:
        assert result_of(await call(off.port, "echo", {"text": "served"}))
        ready = await get(off.port, "/readyz")
        assert ready.status == 200, ready.body
        assert (await metrics(off.port))["bemcp_ready"] == 1


# -- the watchdog ----------------------------------------------------------------------------


async def test_no_watchdog_events_and_no_emergency_exit(tmp_path: Path) -> None:
    # A 1 s block is a stall for 0.6 s past the threshold, several watchdog checks (every 0.25 s) long, and
    # below the emergency; a 3 s block passes the emergency threshold by as much.
    thresholds = ("--stall-threshold", "0.3", "--emergency-threshold", "2")
    stall, stuck = 1000, 3000
    with serve("on", *thresholds, tmp=tmp_path / "on") as on:  # the control
        assert result_of(await call(on.port, "block_event_loop", {"milliseconds": stall}))
        assert (await health(on.port))["watchdog"]["events"].get("loop_stall", 0) >= 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):  # it may exit before answering
            await call(on.port, "block_event_loop", {"milliseconds": stuck})
        assert on.proc.wait(20) == 75  # stuck past --emergency-threshold: the emergency exit

    with serve("off", *thresholds, tmp=tmp_path / "off") as off:
        port = off.port
        for ms in (stall, stuck):
            assert text_of(result_of(await call(port, "block_event_loop", {"milliseconds": ms}))).endswith(f"{ms} ms")
        h = await health(port)
        assert h["watchdog"]["events"] == {}
        assert h["watchdog"]["max_loop_lag_ms"] == 0  # no heartbeat is running to measure it
        assert not any(k.startswith("bemcp_watchdog_events_total") for k in await metrics(port))
        assert off.alive()


# -- metrics and the task log ----------------------------------------------------------------


async def test_no_call_timing_and_no_task_log(tmp_path: Path) -> None:
    echoes = 5
    counted: dict[str, dict[str, float]] = {}
    logged: dict[str, list[dict[str, Any]]] = {}
    for mode in ("on", "off"):
        log = tmp_path / f"tasks-{mode}.jsonl"
        with serve(mode, "--log-file", str(log), tmp=tmp_path) as srv:
            for i in range(echoes):
                assert text_of(result_of(await call(srv.port, "echo", {"text": str(i)}))) == str(i)
            counted[mode] = await metrics(srv.port)
        lines = log.read_text().splitlines() if log.exists() else []
        logged[mode] = [r for r in map(orjson.loads, lines) if r.get("msg") in ("task started", "task finished")]

    assert counted["on"][CALL_HISTOGRAM] == echoes  # the control
    assert counted["on"]["bemcp_admitted_total"] == echoes
    assert len(logged["on"]) == 2 * echoes
    assert counted["off"].get(CALL_HISTOGRAM, 0) == 0
    assert counted["off"]["bemcp_admitted_total"] == 0
    assert counted["off"]['bemcp_calls_completed_total{outcome="ok"}'] == echoes  # the registry still counts
    assert logged["off"] == []


# -- what stays: one answer per request, deadlines --------------------------------------------


def test_every_stdio_request_is_answered_exactly_once(tmp_path: Path) -> None:
    """A burst of every kind of request, sent at once past a limit of 1: one right answer each, nothing else."""
    flags = ("--stress-tools", "--protections", "off", "--max-concurrency", "1", "--queue-size", "0")
    expect: dict[int, str] = {}
    requests: list[dict[str, Any]] = []

    def add(kind: str, method: str, params: dict[str, Any]) -> None:
        expect[len(requests)] = kind
        requests.append({"jsonrpc": "2.0", "id": len(requests), "method": method, "params": params})

    for _ in range(20):
        add("slept", "tools/call", {"name": "sleep", "arguments": {"seconds": 0.3}})
    for _ in range(5):
        add("echo", "tools/call", {"name": "echo", "arguments": {"text": "hi"}})
        add("tool_error", "tools/call", {"name": "fail", "arguments": {"mode": "raise"}})
        add("bad_args", "tools/call", {"name": "sleep", "arguments": {"seconds": "soon"}})
        add("unknown_tool", "tools/call", {"name": "nope", "arguments": {}})
        add("unknown_method", "tools/nope", {})
        add("ping", "ping", {})
    for _ in range(3):
        add("deadline", "tools/call", {"name": "hang", "arguments": {}})

    with StdioServer(*flags, "--call-timeout", "1") as srv:
        srv.initialize()
        srv.send_raw(b"".join(orjson.dumps(r) + b"\n" for r in requests))
        replies = [srv.recv() for _ in requests]
        last = srv.request({"jsonrpc": "2.0", "id": "last", "method": "ping"})
    assert sorted(r["id"] for r in replies) == list(range(len(requests)))  # each once, none extra
    assert last == {"jsonrpc": "2.0", "id": "last", "result": {}}
    for reply in replies:
        kind = expect[reply["id"]]
        result, error = reply.get("result"), reply.get("error")
        if kind == "slept":
            assert result is not None and text_of(result) == "slept 0.3s", reply
        elif kind == "echo":
            assert result is not None and text_of(result) == "hi", reply
        elif kind in ("tool_error", "bad_args"):
            assert result is not None and result["isError"] is True, reply
        elif kind == "unknown_tool":
            assert error is not None and error["code"] == -32602, reply
        elif kind == "unknown_method":
            assert error is not None and error["code"] == -32601, reply
        elif kind == "ping":
            assert result == {}, reply
        else:  # the deadline stays: it belongs to the call, not to a protection
            assert error is not None and error["code"] == CALL_TIMEOUT and error["data"]["reason"] == "deadline", reply


# -- a flag for benchmarks only -------------------------------------------------------------


def test_the_flag_is_hidden_from_help_yet_accepted(tmp_path: Path) -> None:
    shown = subprocess.run([BEMCP, "serve", "--help"], capture_output=True, text=True, env=_env(), cwd=ROOT, check=True)
    assert "--protections" not in shown.stdout
    assert "--max-concurrency" in shown.stdout  # the protection flags that are meant for users are there
    with http_server("--protections", "off", tmp=tmp_path) as srv:
        deadline = time.monotonic() + 10
        while "protections OFF (benchmarks only)" not in srv.log.read_text():
            assert time.monotonic() < deadline, srv.log.read_text()
            time.sleep(0.05)
    bad = subprocess.run(
        [BEMCP, "serve", "--protections", "maybe"], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=30
    )
    assert bad.returncode == 2
    assert "--protections must be true or false, not 'maybe'" in bad.stderr
