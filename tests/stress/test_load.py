"""The load steps against real servers: protocol-method calls for targets with no callable tool, and an open
step that notices when its own sender falls behind the schedule."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from bemcp.stress.client import LEGACY, MODERN
from bemcp.stress.discovery import Call, method_call
from bemcp.stress.load import SENDER_LATE_S, SessionPool, closed_step, open_step
from bemcp.stress.recorder import Recorder
from bemcp.stress.targets import HttpTarget, StdioTarget, Target
from tests.procs import ROOT, http_server

BEMCP_STDIO = [sys.executable, "-m", "bemcp", "serve", "--transport", "stdio", "--app", "tests.stress.user_app:writes"]


async def _closed(target: Target, calls: list[Call], seconds: float = 0.5) -> Recorder:
    pool = SessionPool(target)
    recorder = Recorder()
    try:
        step = recorder.step("tsunami", 2)
        await closed_step(pool, step, [calls, calls], seconds, 5.0)
        step.finish()
    finally:
        await pool.close()
    return recorder


async def test_protocol_methods_load_a_handshake_era_server_over_stdio() -> None:
    async with StdioTarget(BEMCP_STDIO, cwd=ROOT, revision=LEGACY) as target:
        step = (await _closed(target, [method_call("ping"), method_call("tools/list")])).steps[0]
    assert step.kinds == ["rpc:ping", "rpc:tools/list"]
    for kind in step.kinds:
        counts = step.outcome_counts(kind)
        assert counts["ok"] == sum(counts.values()) > 10, (kind, counts)


async def test_protocol_methods_on_2026_07_28_and_why_ping_is_not_one_of_them(tmp_path: Path) -> None:
    with http_server(app="tests.stress.user_app:writes", tmp=tmp_path) as server:
        async with HttpTarget(server.url) as target:
            assert target.revision == MODERN
            modern = (await _closed(target, [method_call("tools/list"), method_call("server/discover")])).steps[0]
            gone = (await _closed(target, [method_call("ping")], seconds=0.2)).steps[0]
    for kind in ("rpc:tools/list", "rpc:server/discover"):
        counts = modern.outcome_counts(kind)
        assert counts["ok"] == sum(counts.values()) > 10, (kind, counts)
    assert gone.outcome_counts("rpc:ping")["protocol_error"] == gone.calls > 0  # -32601: removed in 2026-07-28
    assert gone.details == {("protocol_error", "-32601"): gone.calls}


async def test_an_open_step_counts_the_calls_its_sender_put_out_late(tmp_path: Path) -> None:
    """The tester's own event loop is blocked for 250 ms in a 1 s step at 400 calls/s: about 100 calls leave late
    (and their latency shows it, counted from the intended send time); an undisturbed step sends on time."""
    rate, seconds, block = 400.0, 1.0, 0.25
    echo = Call("echo", {"text": "x"})
    with http_server(app="tests.stress.pause_app:fast", tmp=tmp_path) as server:
        async with HttpTarget(server.url) as target:
            pool = SessionPool(target)
            recorder = Recorder()
            try:
                calm = recorder.step("rate", rate, model="open")
                await open_step(pool, calm, [echo], rate, seconds, 5.0)
                calm.finish()

                async def stall() -> None:
                    await asyncio.sleep(0.3)
                    time.sleep(block)  # noqa: ASYNC251 - the point: the tester's own loop stops

                blocked = recorder.step("rate", rate, model="open")
                await asyncio.gather(open_step(pool, blocked, [echo], rate, seconds, 5.0), stall())
                blocked.finish()
            finally:
                await pool.close()
    assert calm.calls == blocked.calls == int(rate * seconds)
    expected_late = (block - SENDER_LATE_S) * rate
    assert blocked.sent_late is not None and blocked.sent_late >= 0.8 * expected_late, blocked.sent_late
    assert blocked.sender_behind
    assert calm.sent_late is not None and calm.sent_late < blocked.sent_late / 2, (calm.sent_late, blocked.sent_late)
    assert blocked.histogram().percentile(99.0) >= (block * 0.8) * 1e6  # the late calls' wait is in their latency
