"""`--limit adaptive` and `--limit vegas` against a real server whose latency changes mid-run.

A closed loop of `CLIENTS` keep-alive connections calls tests/apps/latency.py's `work`, which sleeps for the
latency the test last set (with `set_latency`, which skips admission, so it never waits behind the load). At
`BASE_S` the limit sits at `--max-concurrency`; when the test raises the latency tenfold the limit
(`bemcp_concurrency_limit` in /metrics) must fall, and once the latency is back it must climb back to the
ceiling. Both algorithms time a call from admission to release (the wait in the queue is not counted), so the
sleep is the latency they see, whatever the machine's load; the test asserts direction and recovery with
generous deadlines, never speeds.

How fast they react (src/bemcp/runtime/limits.py; one sample per window of at least 10 calls spanning two
mean RTTs, so about 1 s per window at `SLOW_S`): Gradient2 sees a gradient clamped at 0.5 and loses
0.2 * (limit / 2 - sqrt(limit)) per window, 0.8 at 16, so it is down to `FALLEN` after about 5 windows; Vegas
estimates a queue of about 15 and sheds half the excess, 4.5, in its first window. Back at `BASE_S` both grow
by a slot or more per 0.1 s window.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.procs import http_server
from tests.test_protection import Conn, call, call_request, metrics, result_of, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLIENTS = 16  # the ceiling too: every slot the limit allows is used, so both algorithms keep learning
BASE_S = 0.05  # 320 calls/s at the ceiling: light enough for a busy 2-core machine
SLOW_S = 0.5
FALLEN = CLIENTS * 3 // 4  # "the limit fell": at most 12 of 16
WARMUP_CALLS = 600  # well past the 10 windows of Gradient2's warm-up mean of the long RTT


@dataclass
class Load:
    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)  # answers that were not the success of their own request


async def set_latency(port: int, seconds: float) -> None:
    assert result_of(await call(port, "set_latency", {"seconds": seconds})).get("isError") is not True


async def client(port: int, n: int, stop: asyncio.Event, load: Load) -> None:
    conn = await Conn.open(port)
    try:
        i = 0
        while not stop.is_set():
            i += 1
            req_id = f"{n}-{i}"
            reply = await asyncio.wait_for(conn.request(call_request(port, req_id, "work")), 60)
            load.answered += 1
            load.statuses[reply.status] += 1
            msg = reply.json()
            if reply.status != 200 or msg.get("id") != req_id or msg.get("result", {}).get("isError"):
                load.wrong.append(f"{req_id}: {reply.status} {msg}")
    finally:
        await conn.close()


async def limit_of(port: int, history: list[tuple[float, int]], t0: float) -> int:
    """The limit now, also noted in `history` (seconds since t0, limit) each time it changes."""
    value = int((await metrics(port))["bemcp_concurrency_limit"])
    if not history or history[-1][1] != value:
        history.append((round(time.monotonic() - t0, 1), value))
    return value


@pytest.mark.parametrize("kind", ["adaptive", "vegas"])
async def test_limit_falls_when_latency_rises_and_recovers_after(kind: str, tmp_path: Path) -> None:
    flags = ("--limit", kind, "--max-concurrency", str(CLIENTS), "--queue-size", "1000", "--queue-timeout-ms", "120000")
    with http_server(*flags, app="tests.apps.latency:app", tmp=tmp_path) as srv:
        port = srv.port
        await set_latency(port, BASE_S)
        stop = asyncio.Event()
        load = Load()
        clients = [asyncio.create_task(client(port, n, stop, load)) for n in range(CLIENTS)]
        history: list[tuple[float, int]] = []
        t0 = time.monotonic()
        try:
            await wait_until(
                lambda: metrics(port),
                lambda m: m["bemcp_admitted_total"] >= WARMUP_CALLS and m["bemcp_concurrency_limit"] == CLIENTS,
                90,
                f"{WARMUP_CALLS} calls at {BASE_S}s with the limit at its ceiling {CLIENTS}",
            )
            raised = time.monotonic()
            await set_latency(port, SLOW_S)
            fallen = await wait_until(
                lambda: limit_of(port, history, t0), lambda v: v <= FALLEN, 120, f"{kind} limit at most {FALLEN}"
            )
            fell_s = time.monotonic() - raised
            lowered = time.monotonic()
            await set_latency(port, BASE_S)
            await wait_until(
                lambda: limit_of(port, history, t0), lambda v: v == CLIENTS, 120, f"{kind} limit back at {CLIENTS}"
            )
            recovered_s = time.monotonic() - lowered
        finally:
            stop.set()
            await asyncio.gather(*clients)
        print(
            f"\n{kind}: limit {CLIENTS} -> {fallen} {fell_s:.1f}s after latency {BASE_S}s -> {SLOW_S}s, back to "
            f"{CLIENTS} {recovered_s:.1f}s after it returned; {load.answered} calls; limit changes (s, limit) {history}"
        )
        # Every call was answered once, by its own success: a smaller limit queues calls, it never refuses them.
        assert load.wrong == []
        assert load.statuses == Counter({200: load.answered})
        m = await metrics(port)
        assert m["bemcp_admitted_total"] == load.answered
        assert m['bemcp_calls_completed_total{outcome="ok"}'] == load.answered + 3  # and the 3 set_latency calls
        assert m["bemcp_in_flight"] == 0
        assert m["bemcp_queued"] == 0
        assert sum(v for k, v in m.items() if k.startswith("bemcp_rejected_total")) == 0
