"""Admission: fast path, FIFO queue, refusals, draining, cancellation safety and counters."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from bemcp.protocol import codes, refusals
from bemcp.protocol.refusals import refusal_error
from bemcp.runtime.admission import (
    RETRY_AFTER_MAX_MS,
    RETRY_AFTER_MIN_MS,
    Admission,
    Token,
)
from bemcp.runtime.limits import FixedLimit
from bemcp.runtime.refusal import Refusal, RefusalReason

T = TypeVar("T")
MS = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class Adjustable:
    """A limit the test sets by hand, recording every sample it is taught."""

    def __init__(self, limit: int, grow_to: int | None = None) -> None:
        self.value = limit
        self.grow_to = grow_to
        self.samples: list[tuple[int, int, int, bool]] = []

    @property
    def limit(self) -> int:
        return self.value

    def on_sample(self, now_ns: int, rtt_ns: int, in_flight: int, dropped: bool) -> None:
        self.samples.append((now_ns, rtt_ns, in_flight, dropped))
        if self.grow_to is not None:
            self.value = self.grow_to


class Broken(Adjustable):
    def on_sample(self, now_ns: int, rtt_ns: int, in_flight: int, dropped: bool) -> None:
        raise RuntimeError("algorithm bug")


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must finish (or raise) without ever suspending."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise AssertionError("the coroutine suspended")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def queue_up(admission: Admission, n: int, order: list[int] | None = None) -> list[asyncio.Task[Token]]:
    async def waiter(i: int) -> Token:
        token = await admission.acquire()
        if order is not None:
            order.append(i)
        return token

    tasks = [asyncio.create_task(waiter(i)) for i in range(n)]
    await settle()
    assert admission.queued == n
    return tasks


def attempts(admission: Admission) -> int:
    snap = admission.snapshot()
    return snap.admitted + sum(snap.rejected.values()) + snap.cancelled + snap.queued


# --- fast path --------------------------------------------------------------------------------------------


async def test_fast_path_admits_without_suspending() -> None:
    clock = FakeClock()
    admission = Admission(FixedLimit(2), clock=clock)
    first = run_now(admission.acquire())
    second = run_now(admission.acquire())
    assert (admission.in_flight, admission.queued, admission.admitted, admission.peak_in_flight) == (2, 0, 2, 2)
    first.release()
    second.release()
    assert admission.in_flight == 0
    assert first.released and second.released


async def test_fast_lane_is_one_counter_while_a_fixed_limit_has_room_and_nobody_waits() -> None:
    admission = Admission(FixedLimit(2))
    assert admission.lane == 2
    assert admission.enter() and admission.enter()
    assert not admission.enter()  # full: the caller falls back to acquire() and queues
    assert (admission.in_flight, admission.admitted, admission.peak_in_flight) == (2, 2, 2)
    (waiter,) = await queue_up(admission, 1)
    assert admission.lane == 0  # someone queues: arrivals must queue behind it
    admission.leave()  # the freed slot goes to the waiter, not to the next enter()
    await settle()
    assert waiter.done() and admission.in_flight == 2
    assert admission.lane == 2 and not admission.enter()  # the queue is empty again, but the slots are full
    waiter.result().release()
    admission.leave()
    assert admission.in_flight == 0 and admission.enter()
    admission.leave()
    snap = admission.snapshot()
    assert (snap.admitted, snap.in_flight, snap.queued, snap.peak_in_flight) == (4, 0, 0, 2)


async def test_fast_lane_reopens_after_a_queue_timeout_and_a_cancelled_waiter() -> None:
    admission = Admission(FixedLimit(1), queue_timeout=0.01)
    assert admission.enter()
    (expires,) = await queue_up(admission, 1)
    with pytest.raises(Refusal, match="queue timeout"):
        await expires
    assert admission.lane == 1
    (cancelled,) = await queue_up(admission, 1)
    cancelled.cancel()
    await settle()
    assert admission.lane == 1 and admission.queued == 0
    admission.leave()
    assert admission.in_flight == 0 and admission.enter()


async def test_fast_lane_is_closed_while_draining_and_under_an_adaptive_limit() -> None:
    from bemcp.runtime.limits import make_limit

    admission = Admission(FixedLimit(4))
    assert admission.enter()
    admission.set_draining(True)
    assert admission.lane == 0 and not admission.enter()
    admission.leave()  # a call admitted before the drain still gives its slot back
    assert admission.in_flight == 0
    admission.set_draining(False)
    assert admission.lane == 4
    adaptive = Admission(make_limit("adaptive", 100, 1000))
    assert adaptive.lane == 0 and not adaptive.enter()  # every call is timed with a Token for the algorithm


async def test_try_acquire_takes_free_slots_only() -> None:
    admission = Admission(FixedLimit(1))
    token = admission.try_acquire()
    assert token is not None
    assert admission.try_acquire() is None
    (task,) = await queue_up(admission, 1)
    token.release()  # goes to the waiter, not to whoever tries next
    assert admission.try_acquire() is None
    (await task).release()
    admission.set_draining(True)
    assert admission.try_acquire() is None
    snap = admission.snapshot()
    assert (snap.admitted, sum(snap.rejected.values()), snap.in_flight) == (2, 0, 0)


async def test_release_is_idempotent_and_checks_the_outcome() -> None:
    admission = Admission(FixedLimit(2))
    token = await admission.acquire()
    with pytest.raises(ValueError):
        token.release("bogus")  # type: ignore[arg-type]
    assert not token.released and admission.in_flight == 1
    token.release()
    token.release()
    assert admission.in_flight == 0


async def test_release_teaches_the_algorithm_success_and_drops_only() -> None:
    clock = FakeClock()
    algorithm = Adjustable(5)
    admission = Admission(algorithm, clock=clock)
    clock.now = 100 * MS
    a = run_now(admission.acquire())
    b = run_now(admission.acquire())
    c = run_now(admission.acquire())
    clock.now = 130 * MS
    a.release("success")
    b.release("dropped")
    c.release("ignore")
    assert algorithm.samples == [(130 * MS, 30 * MS, 1, False), (130 * MS, 30 * MS, 2, True)]
    assert admission.snapshot().avg_call_ms == pytest.approx(30.0)


# --- the queue --------------------------------------------------------------------------------------------


async def test_queued_callers_are_granted_in_fifo_order() -> None:
    admission = Admission(FixedLimit(1))
    holder = await admission.acquire()
    order: list[int] = []
    tasks = await queue_up(admission, 4, order)
    holder.release()
    for _ in range(4):
        await settle()
        running = [t for t in tasks if t.done() and not t.result().released]
        assert len(running) == 1 and admission.in_flight == 1
        running[0].result().release()
    await settle()
    assert order == [0, 1, 2, 3]
    assert (admission.in_flight, admission.queued, admission.admitted) == (0, 0, 5)


async def test_full_queue_refuses_at_once() -> None:
    admission = Admission(FixedLimit(1), queue_size=2, queue_timeout=10.0)
    holder = await admission.acquire()
    tasks = await queue_up(admission, 2)
    with pytest.raises(Refusal) as refused:
        run_now(admission.acquire())  # raised without suspending once: no timer, no wait
    err = refused.value
    assert (err.reason, err.limit, err.in_flight, err.queued) == ("concurrency_limit", 1, 1, 2)
    assert RETRY_AFTER_MIN_MS <= err.retry_after_ms <= RETRY_AFTER_MAX_MS
    assert refusal_error(err)["code"] == codes.OVERLOADED
    assert err.data() == {
        "reason": "concurrency_limit",
        "retry_after_ms": err.retry_after_ms,
        "limit": 1,
        "in_flight": 1,
        "queued": 2,
    }
    assert refusal_error(err) == {"code": codes.OVERLOADED, "message": err.message, "data": err.data()}
    answer = refusals.refused(7, err)
    assert answer == {"jsonrpc": "2.0", "id": 7, "error": refusal_error(err)}
    assert answer.retry_after_ms == err.retry_after_ms and answer.retry_after_s >= 1
    assert "concurrency limit 1 reached and the wait queue is full" in err.message
    assert f"retry after {err.retry_after_ms} ms" in err.message
    holder.release()
    for task in tasks:
        (await task).release()
    assert admission.rejected["concurrency_limit"] == 1
    assert attempts(admission) == 4


async def test_no_queue_means_refuse_at_the_limit() -> None:
    admission = Admission(FixedLimit(1), queue_size=0)
    holder = run_now(admission.acquire())
    with pytest.raises(Refusal, match="wait queue is full"):
        run_now(admission.acquire())
    holder.release()
    run_now(admission.acquire()).release()


async def test_queue_timeout_refuses_a_waiter() -> None:
    loop = asyncio.get_running_loop()
    admission = Admission(FixedLimit(1), queue_timeout=0.05)
    holder = await admission.acquire()
    started = loop.time()
    with pytest.raises(Refusal) as refused:
        await admission.acquire()
    assert loop.time() - started >= 0.05
    assert refused.value.reason == "queue_timeout"
    assert "no slot freed within the queue timeout" in refused.value.message
    assert (admission.in_flight, admission.queued) == (1, 0)
    holder.release()
    assert admission.in_flight == 0
    assert admission.rejected == {"concurrency_limit": 0, "queue_timeout": 1, "draining": 0}


async def test_a_waiter_granted_before_its_timeout_keeps_the_slot() -> None:
    admission = Admission(FixedLimit(1), queue_timeout=0.05)
    holder = await admission.acquire()
    (task,) = await queue_up(admission, 1)
    holder.release()
    token = await task
    await asyncio.sleep(0.08)  # past the timeout: the cancelled timer must not fire
    assert not token.released and admission.in_flight == 1
    token.release()
    assert admission.rejected["queue_timeout"] == 0


# --- draining ---------------------------------------------------------------------------------------------


async def test_draining_refuses_new_and_queued_callers() -> None:
    admission = Admission(FixedLimit(1))
    holder = await admission.acquire()
    tasks = await queue_up(admission, 3)
    admission.set_draining(True)
    for task in tasks:
        with pytest.raises(Refusal) as refused:
            await task
        assert refused.value.reason == "draining"
        assert refused.value.retry_after_ms == RETRY_AFTER_MAX_MS
    assert admission.queued == 0
    with pytest.raises(Refusal, match="draining"):
        run_now(admission.acquire())
    holder.release()  # calls already admitted finish normally
    with pytest.raises(Refusal):
        run_now(admission.acquire())  # a free slot changes nothing while draining
    assert admission.in_flight == 0 and admission.draining
    admission.set_draining(False)
    run_now(admission.acquire()).release()
    assert admission.rejected["draining"] == 5
    assert attempts(admission) == 7


# --- cancellation -----------------------------------------------------------------------------------------


async def test_cancelled_waiter_leaks_nothing() -> None:
    admission = Admission(FixedLimit(1))
    holder = await admission.acquire()
    tasks = await queue_up(admission, 3)
    tasks[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert (admission.in_flight, admission.queued, admission.cancelled) == (1, 2, 1)
    holder.release()
    (await tasks[0]).release()
    (await tasks[2]).release()
    assert (admission.in_flight, admission.queued) == (0, 0)
    assert attempts(admission) == 4


async def test_cancel_under_wait_for_leaks_nothing() -> None:
    admission = Admission(FixedLimit(1), queue_timeout=None)
    holder = await admission.acquire()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(admission.acquire(), 0.01)
    assert (admission.in_flight, admission.queued, admission.cancelled) == (1, 0, 1)
    holder.release()
    assert admission.in_flight == 0


async def test_waiter_cancelled_as_it_is_granted_hands_the_slot_on() -> None:
    admission = Admission(FixedLimit(1))
    holder = await admission.acquire()
    first, second = await queue_up(admission, 2)
    holder.release()  # grants `first`, which has not run yet...
    assert admission.in_flight == 1 and admission.queued == 1
    first.cancel()  # ...and is cancelled in the same tick
    with pytest.raises(asyncio.CancelledError):
        await first
    token = await second
    assert (admission.in_flight, admission.queued, admission.cancelled) == (1, 0, 1)
    token.release()
    assert admission.in_flight == 0
    assert attempts(admission) == 3


async def test_cancelled_waiter_then_timeout_leaves_counts_clean() -> None:
    admission = Admission(FixedLimit(1), queue_timeout=0.02)
    holder = await admission.acquire()
    tasks = await queue_up(admission, 2)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[1], Refusal) and results[1].reason == "queue_timeout"
    holder.release()
    assert (admission.in_flight, admission.queued) == (0, 0)


# --- a burst ----------------------------------------------------------------------------------------------


async def test_burst_of_ten_times_the_limit() -> None:
    admission = Admission(FixedLimit(10), queue_size=30, queue_timeout=2.0)
    outcomes: list[str] = []

    async def call() -> None:
        try:
            token = await admission.acquire()
        except Refusal as refused:
            outcomes.append(refused.reason)
            return
        try:
            assert admission.in_flight <= 10
            await asyncio.sleep(0.005)
        finally:
            token.release()
        outcomes.append("ok")

    await asyncio.gather(*(call() for _ in range(100)))
    assert len(outcomes) == 100
    assert set(outcomes) <= {"ok", "concurrency_limit", "queue_timeout"}
    # All 100 arrive in one tick: 10 run, 30 queue and 60 are refused at once.
    assert outcomes.count("concurrency_limit") == 60
    assert (admission.in_flight, admission.queued) == (0, 0)
    snap = admission.snapshot()
    assert snap.admitted == outcomes.count("ok")
    assert snap.admitted + sum(snap.rejected.values()) == 100
    assert snap.peak_in_flight == 10


# --- a changing limit -------------------------------------------------------------------------------------


async def test_limit_growth_on_release_wakes_waiters() -> None:
    algorithm = Adjustable(1, grow_to=4)
    admission = Admission(algorithm)
    holder = await admission.acquire()
    tasks = await queue_up(admission, 3)
    holder.release()  # teaches the algorithm, which grows to 4
    tokens = [await t for t in tasks]
    assert (admission.limit, admission.in_flight, admission.queued) == (4, 3, 0)
    for token in tokens:
        token.release()


async def test_wake_applies_a_limit_changed_from_outside() -> None:
    algorithm = Adjustable(1)
    admission = Admission(algorithm)
    holder = await admission.acquire()
    tasks = await queue_up(admission, 3)
    algorithm.value = 3
    admission.wake()
    await settle()
    assert [t.done() for t in tasks] == [True, True, False]
    assert (admission.in_flight, admission.queued) == (3, 1)
    holder.release()
    last = await tasks[2]
    for token in [tasks[0].result(), tasks[1].result(), last]:
        token.release()
    assert admission.in_flight == 0


async def test_a_shrunk_limit_admits_nobody_until_in_flight_falls_below_it() -> None:
    algorithm = Adjustable(3)
    admission = Admission(algorithm)
    tokens = [run_now(admission.acquire()) for _ in range(3)]
    algorithm.value = 1
    admission.wake()
    (task,) = await queue_up(admission, 1)
    tokens[0].release()
    tokens[1].release()
    await settle()
    assert not task.done() and admission.in_flight == 1
    tokens[2].release()
    (await task).release()
    assert admission.in_flight == 0


async def test_a_failing_algorithm_still_frees_the_slot() -> None:
    admission = Admission(Broken(1))
    holder = await admission.acquire()
    (task,) = await queue_up(admission, 1)
    with pytest.raises(RuntimeError):
        holder.release()
    assert admission.in_flight == 1  # the waiter holds the freed slot
    (await task).release("ignore")
    assert admission.in_flight == 0


# --- retry-after and counters -----------------------------------------------------------------------------


async def test_retry_after_follows_call_duration_and_queue_length() -> None:
    clock = FakeClock()
    admission = Admission(FixedLimit(2), queue_size=3, queue_timeout=0.5, clock=clock)
    # Before any call finished, a call is assumed to take one queue timeout.
    assert admission.retry_after_ms() == 500 * 1 // 2
    a = run_now(admission.acquire())
    b = run_now(admission.acquire())
    clock.now += 200 * MS
    a.release()
    b.release()
    holders = [run_now(admission.acquire()) for _ in range(2)]
    tasks = await queue_up(admission, 3)
    with pytest.raises(Refusal) as refused:
        run_now(admission.acquire())
    # 200 ms calls on 2 slots: the 3 queued plus this caller drain in 400 ms.
    assert refused.value.retry_after_ms == 400
    assert admission.retry_after_ms("draining") == RETRY_AFTER_MAX_MS
    for token in holders:
        token.release()
    for task in tasks:
        (await task).release()


async def test_retry_after_is_bounded() -> None:
    clock = FakeClock()
    admission = Admission(FixedLimit(1000), clock=clock)
    token = run_now(admission.acquire())
    clock.now += 1 * MS
    token.release()
    assert admission.retry_after_ms() == RETRY_AFTER_MIN_MS
    slow = Admission(FixedLimit(1), clock=clock)
    token = run_now(slow.acquire())
    clock.now += 60_000 * MS
    token.release()
    assert slow.retry_after_ms() == RETRY_AFTER_MAX_MS


async def test_snapshot_counters_add_up() -> None:
    admission = Admission(FixedLimit(2), queue_size=2, queue_timeout=0.02)
    held = [await admission.acquire() for _ in range(2)]
    waiting = [asyncio.create_task(admission.acquire()) for _ in range(2)]
    await settle()
    for _ in range(3):
        with pytest.raises(Refusal):
            await admission.acquire()
    waiting[0].cancel()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[1], Refusal)
    for token in held:
        token.release()
    snap = admission.snapshot()
    assert snap.admitted == 2
    assert snap.rejected == {"concurrency_limit": 3, "queue_timeout": 1, "draining": 0}
    assert snap.cancelled == 1
    assert snap.admitted + sum(snap.rejected.values()) + snap.cancelled == 7
    assert (snap.in_flight, snap.queued, snap.peak_in_flight, snap.limit, snap.draining) == (0, 0, 2, 2, False)


# --- lending: a call that waits for its client gives its slot up ------------------------------------------


async def test_a_lent_slot_admits_a_queued_caller_and_is_taken_back_before_the_queue() -> None:
    clock = FakeClock()
    algorithm = Adjustable(1)
    admission = Admission(algorithm, clock=clock)
    asking = run_now(admission.acquire())
    (first, second) = await queue_up(admission, 2)
    clock.now = 10 * MS
    admission.lend(asking)  # the caller waits for its client: its slot goes to the first in the queue
    await settle()
    assert first.done() and not second.done()
    assert (admission.in_flight, admission.lent, admission.snapshot().lent) == (1, 1, 1)
    clock.now = 5_000 * MS  # the client took its time to answer
    back = asyncio.create_task(admission.reclaim(asking))
    await settle()
    assert not back.done()  # no free slot: it waits, ahead of `second`, which queued first
    (await first).release()
    await settle()
    assert back.done() and not second.done()
    assert (admission.in_flight, admission.lent, admission.queued) == (1, 0, 1)
    clock.now = 5_020 * MS
    asking.release()
    # The call ran 10 ms before it lent its slot and 20 ms after: the client's think time is not the call's.
    assert algorithm.samples[-1][1] == 30 * MS
    (await second).release()
    snap = admission.snapshot()
    assert (snap.in_flight, snap.queued, snap.lent, snap.admitted) == (0, 0, 0, 3)


async def test_a_reclaim_with_a_free_slot_does_not_suspend_and_counts_the_peak() -> None:
    admission = Admission(FixedLimit(2))
    token = run_now(admission.acquire())
    admission.lend(token)
    assert admission.in_flight == 0 and admission.lane == 2
    assert admission.enter() and admission.enter()  # the lent slot is free for the fast lane too
    admission.leave()
    run_now(admission.reclaim(token))
    assert (admission.in_flight, admission.lent, admission.peak_in_flight) == (2, 0, 2)
    token.release()
    admission.leave()
    assert admission.in_flight == 0


async def test_a_waiting_reclaimer_closes_the_fast_lane_and_is_never_refused() -> None:
    admission = Admission(FixedLimit(1), queue_size=0)
    token = run_now(admission.acquire())
    admission.lend(token)
    assert admission.enter()  # someone else takes the lent slot
    back = asyncio.create_task(admission.reclaim(token))
    await settle()
    assert not back.done() and admission.lane == 0
    with pytest.raises(Refusal):  # a new call is refused (no queue), the reclaimer waits on
        await admission.acquire()
    admission.leave()
    await back
    assert (admission.in_flight, admission.lent) == (1, 0)
    token.release()
    assert admission.in_flight == 0 and admission.lane == 1


async def test_a_reclaimer_cancelled_while_it_waits_takes_its_slot_back_anyway() -> None:
    """A task cancelled while it waits for its slot back still runs its cleanup, then gives the slot back: the
    counts stay whole (one over the limit for that moment)."""
    admission = Admission(FixedLimit(1))
    token = run_now(admission.acquire())
    admission.lend(token)
    other = run_now(admission.acquire())
    back = asyncio.create_task(admission.reclaim(token))
    await settle()
    back.cancel()
    with pytest.raises(asyncio.CancelledError):
        await back
    assert (admission.in_flight, admission.lent) == (2, 0)
    token.release()
    other.release()
    assert admission.in_flight == 0 and admission.lane == 1 and admission.enter()
    admission.leave()


async def test_reclaim_now_takes_the_slot_back_past_the_limit() -> None:
    admission = Admission(FixedLimit(1))
    token = run_now(admission.acquire())
    admission.lend(token)
    other = run_now(admission.acquire())
    admission.reclaim_now(token)  # the call is ending (timed out): it gives the slot back in a moment
    assert (admission.in_flight, admission.lent, admission.peak_in_flight) == (2, 0, 2)
    token.release()
    other.release()
    assert admission.in_flight == 0


def test_overloaded_carries_other_reasons() -> None:
    err = Refusal(RefusalReason.MEMORY_PRESSURE, 250, 100, 100, 0)
    assert refusal_error(err)["code"] == codes.OVERLOADED
    assert err.message == "Server busy (memory_pressure); retry after 250 ms"
    assert refusal_error(err)["data"] == err.data()


def test_admission_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        Admission(FixedLimit(1), queue_size=-1)
    with pytest.raises(ValueError):
        Admission(FixedLimit(1), queue_timeout=-0.5)
