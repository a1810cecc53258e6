"""Deadlines that hold, through a real `bemcp serve`: work that ignores its cancellation is answered all the same.

The tools come from `tests.apps.stuck`: `swallow` catches every cancellation and runs on, `block` holds a worker
thread (which Python cannot interrupt), `wait` is well-behaved async work. Each ends by itself after the seconds
it is given, so the tests can also watch abandoned work end and give back what it held.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.procs import HttpServer, http_server
from tests.test_protection import CALL_TIMEOUT, OVERLOADED, Reply, call, health, metrics, result_of, wait_until
from tests.test_shutdown import Stdio

pytestmark = pytest.mark.timeout(90)

STUCK = "tests.apps.stuck:app"
WORK_S = 8.0  # how long the misbehaving work runs: far beyond the 1 s deadlines, so it is still running when answered


def error_of(reply: Reply) -> dict[str, Any]:
    msg = reply.json()
    assert "error" in msg, (reply.status, msg)
    err: dict[str, Any] = msg["error"]
    return err


async def finished(srv: HttpServer) -> dict[str, int]:
    """How many `block` and `swallow` calls have really ended, as the app itself counts them."""
    counts: dict[str, int] = result_of(await call(srv.port, "finished"))["structuredContent"]
    return counts


async def abandoned_now(srv: HttpServer) -> dict[str, Any]:
    h = await health(srv.port)
    return {**h["abandoned"], "sync": h["sync_threads"]["abandoned"]}


async def test_work_that_swallows_its_cancellation_is_answered_by_the_watchdog_and_counted(tmp_path: Path) -> None:
    with http_server("--app", STUCK, "--call-timeout", "1", tmp=tmp_path) as srv:
        reply = await call(srv.port, "swallow", {"seconds": WORK_S}, timeout=WORK_S + 20)
        # Answered while the work still runs: the app has not seen it end.
        assert (await finished(srv))["swallow"] == 0
        err = error_of(reply)
        assert err["code"] == CALL_TIMEOUT
        assert err["data"] == {"reason": "watchdog", "timeout_s": 1.0, "abandoned": True}
        assert "ignored its cancellation" in err["message"]

        h = await health(srv.port)
        assert h["abandoned"] == {"calls": 1, "total": 1, "tools": ["swallow"]}
        assert h["in_flight"] == 0  # answered: no longer in flight
        assert h["completed"]["timeout"] == 1
        assert h["watchdog"]["events"]["deadline_cancel"] >= 1  # the backstop answered it
        m = await metrics(srv.port)
        assert m["bemcp_abandoned_calls"] == 1
        assert m["bemcp_calls_abandoned_total"] == 1
        assert m['bemcp_watchdog_events_total{kind="deadline_cancel"}'] >= 1

        # When the work really ends, it is no longer counted (the total stays).
        await wait_until(lambda: finished(srv), lambda f: f["swallow"] == 1, WORK_S + 20, "the swallowed work to end")
        after = await wait_until(lambda: abandoned_now(srv), lambda a: a["calls"] == 0, 10, "abandoned calls to be 0")
        assert after == {"calls": 0, "total": 1, "tools": [], "sync": 0}
        assert (await metrics(srv.port))["bemcp_abandoned_calls"] == 0


@pytest.mark.parametrize("tool", ["swallow", "block"])
async def test_abandoned_work_keeps_its_admission_slot_until_it_really_ends(tool: str, tmp_path: Path) -> None:
    args = ("--app", STUCK, "--call-timeout", "1", "--max-concurrency", "1", "--queue-size", "0")
    with http_server(*args, tmp=tmp_path) as srv:
        err = error_of(await call(srv.port, tool, {"seconds": WORK_S}, timeout=WORK_S + 20))
        assert err["code"] == CALL_TIMEOUT

        # The answered call's work still holds the only slot: a new call is refused, not run beside it.
        refused = await call(srv.port, "echo", {"text": "hi"})
        assert refused.status == 503
        over = error_of(refused)
        assert over["code"] == OVERLOADED
        assert over["data"]["reason"] == "concurrency_limit"
        assert over["data"]["in_flight"] == 1
        assert err["data"]["abandoned"] is True
        assert err["data"]["reason"] == ("watchdog" if tool == "swallow" else "deadline")
        assert (await health(srv.port))["abandoned"]["tools"] == [tool]

        # Once the work ends, the slot comes back.
        await wait_until(lambda: abandoned_now(srv), lambda a: a["calls"] == 0, WORK_S + 20, "the work to end")
        assert result_of(await call(srv.port, "echo", {"text": "hi"}))["structuredContent"] == {"result": "hi"}
        assert (await finished(srv))[tool] == 1


async def test_stuck_sync_threads_are_abandoned_and_then_sync_calls_are_refused_at_once(tmp_path: Path) -> None:
    with http_server("--app", STUCK, "--call-timeout", "1", "--sync-workers", "2", tmp=tmp_path) as srv:
        stuck = await asyncio.gather(*(call(srv.port, "block", {"seconds": WORK_S}, timeout=30) for _ in range(2)))
        h = await health(srv.port)
        assert h["sync_threads"] == {"workers": 2, "running": 2, "abandoned": 2}
        assert h["abandoned"]["calls"] == 2
        for reply in stuck:
            err = error_of(reply)
            assert err["code"] == CALL_TIMEOUT
            assert err["data"] == {"reason": "deadline", "timeout_s": 1.0, "abandoned": True}
        m = await metrics(srv.port)
        assert m["bemcp_sync_threads_running"] == 2
        assert m["bemcp_sync_threads_abandoned"] == 2

        # Every worker is held by abandoned work: a sync call is refused at once instead of waiting out its
        # deadline behind them (an overload, never a timeout), and async tools are still served.
        refused = await call(srv.port, "block", {"seconds": 0.01})
        assert refused.status == 503
        assert int(refused.headers["retry-after"]) >= 1
        over = error_of(refused)
        assert over["code"] == OVERLOADED
        assert over["data"] == {
            "reason": "workers_exhausted",
            "retry_after_ms": 1000,
            "limit": 2,
            "in_flight": 2,
            "queued": 0,
        }
        assert (await finished(srv))["block"] == 0  # the refused call never reached the tool
        assert result_of(await call(srv.port, "wait", {"seconds": 0}))["structuredContent"] == {"result": "waited 0s"}
        m = await metrics(srv.port)
        assert m['bemcp_rejected_total{reason="workers_exhausted"}'] == 1
        assert m['bemcp_calls_completed_total{outcome="refused"}'] == 1
        assert (await health(srv.port))["rejected"]["workers_exhausted"] == 1

        # The threads end by themselves; the workers serve again.
        await wait_until(lambda: abandoned_now(srv), lambda a: a["sync"] == 0 and a["calls"] == 0, 30, "threads back")
        done = result_of(await call(srv.port, "block", {"seconds": 0.01}))
        assert done["structuredContent"] == {"result": "blocked 0.01s"}
        assert (await health(srv.port))["sync_threads"] == {"workers": 2, "running": 0, "abandoned": 0}


async def test_work_that_obeys_is_answered_at_its_deadline_and_not_abandoned(tmp_path: Path) -> None:
    with http_server("--app", STUCK, "--call-timeout", "1", tmp=tmp_path) as srv:
        err = error_of(await call(srv.port, "wait", {"seconds": 30}))
        assert err["code"] == CALL_TIMEOUT
        assert err["data"] == {"reason": "deadline", "timeout_s": 1.0}
        # A call that finishes in time is untouched by the deadline.
        assert result_of(await call(srv.port, "wait", {"seconds": 0.05}))["structuredContent"] == {
            "result": "waited 0.05s"
        }
        h = await health(srv.port)
        assert h["abandoned"] == {"calls": 0, "total": 0, "tools": []}
        assert h["watchdog"]["events"].get("deadline_cancel", 0) == 0
        assert h["completed"]["timeout"] == 1


# -- sync calls cancelled by the client (stdio) --------------------------------------------------


def cancel(srv: Stdio, req_id: int) -> None:
    srv.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": req_id}})


def finished_over(srv: Stdio) -> dict[str, int]:
    counts: dict[str, int] = srv.answer(srv.call("finished", {}))["result"]["structuredContent"]
    return counts


def test_a_sync_call_cancelled_by_the_client_leaves_its_thread_abandoned_holding_its_slot() -> None:
    srv = Stdio("--max-concurrency", "1", "--queue-size", "0")
    try:
        srv.initialize()
        stuck = srv.call("block", {"seconds": 3})
        srv.running(1)
        cancel(srv, stuck)
        # No answer to a cancelled request; its thread runs on, abandoned, and keeps the only slot.
        h = srv.until_health(lambda h: h["sync_threads"]["abandoned"] == 1, "the thread to be abandoned")
        assert h["in_flight"] == 0 and h["abandoned"]["tools"] == ["block"]
        refused = srv.answer(srv.call("echo", {"text": "hi"}))["error"]
        assert refused["code"] == OVERLOADED and refused["data"]["reason"] == "concurrency_limit"
        srv.until_health(lambda h: h["abandoned"]["calls"] == 0, "the thread to end")
        assert srv.answer(srv.call("echo", {"text": "hi"}))["result"]["structuredContent"] == {"result": "hi"}
        assert all(msg.get("id") != stuck for msg in srv.messages())  # never answered
    finally:
        srv.close()


def test_a_sync_call_cancelled_while_it_waits_for_a_worker_never_runs() -> None:
    srv = Stdio("--sync-workers", "1")
    try:
        srv.initialize()
        first = srv.call("block", {"seconds": 1})
        srv.running(1)
        queued = srv.call("block", {"seconds": 0.01})
        srv.running(2)
        cancel(srv, queued)
        assert srv.answer(first)["result"]["structuredContent"] == {"result": "blocked 1s"}
        # The one worker takes jobs in order: once a later call is answered, the cancelled one was skipped.
        assert srv.answer(srv.call("block", {"seconds": 0.01}))["result"]["structuredContent"] == {
            "result": "blocked 0.01s"
        }
        assert finished_over(srv)["block"] == 2
        assert srv.health()["abandoned"]["total"] == 0
    finally:
        srv.close()
