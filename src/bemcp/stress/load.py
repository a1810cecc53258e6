"""Applying load: closed-model steps (N callers) and open-model steps (a fixed arrival rate)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import resource
import time
from collections.abc import Callable, Sequence

from bemcp.stress.discovery import Call
from bemcp.stress.model import CallResult, Session
from bemcp.stress.recorder import StepRecorder
from bemcp.stress.targets import Target

MakeCall = Callable[[random.Random], Call]
# The open model keeps sending whatever the answers do, over at most this many callers (connections);
# a call that waits for a free one still counts from its intended send time, so the wait is not hidden.
MAX_OPEN_IN_FLIGHT = 256
CALLS_PER_CALLER = 8
OPEN_CYCLE = 1024
# An open-model call that leaves the sender this long after its intended time is late: the sender fell behind
# its schedule (its own CPU, not the target: waiting for a free caller is not counted).
SENDER_LATE_S = 0.010


def raise_fd_limit() -> None:
    """Every caller holds a connection: thousands of callers need thousands of descriptors."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class SessionPool:
    """Client sessions reused across steps (one per concurrent caller)."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._free: list[Session] = []
        self._all: list[Session] = []

    def take(self) -> Session:
        if self._free:
            return self._free.pop()
        session = self._target.session()
        self._all.append(session)
        return session

    def give(self, session: Session) -> None:
        self._free.append(session)

    async def target_alive(self) -> bool:
        return await self._target.alive()

    def discard(self, session: Session) -> None:
        if session in self._all:
            self._all.remove(session)

    async def close(self) -> None:
        sessions, self._all, self._free = self._all, [], []
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


def _whole(n: int, period: int) -> int:
    return -(-n // period) * period


def closed_calls(concurrency: int, make_call: MakeCall, rng: random.Random, *, period: int = 1) -> list[list[Call]]:
    """The calls each of `concurrency` callers cycles through, drawn up front so a seed reproduces a step.

    Each caller's list is whole `period`s of `make_call` (a `mix.Mix` cycle), so it holds the mix exactly.
    """
    per_caller = _whole(CALLS_PER_CALLER, period)
    return [[make_call(rng) for _ in range(per_caller)] for _ in range(concurrency)]


def open_calls(rate: float, duration: float, make_call: MakeCall, rng: random.Random, *, period: int = 1) -> list[Call]:
    """The calls an open step cycles through, drawn up front (about OPEN_CYCLE at most, in whole `period`s)."""
    return [make_call(rng) for _ in range(_whole(max(1, min(OPEN_CYCLE, int(rate * duration))), period))]


async def closed_step(
    pool: SessionPool,
    step: StepRecorder,
    calls: Sequence[Sequence[Call]],
    duration: float,
    timeout: float,
) -> None:
    """One caller per entry of `calls`, each with one call outstanding (cycling through its calls) for
    `duration` seconds.

    A transport error makes one caller ask whether the target is still alive;
    if it is not, the step ends for every caller (a dead target fails calls in
    microseconds, which would otherwise fill the step with instant failures).
    """
    deadline = [time.monotonic() + duration]
    probing = asyncio.Lock()

    async def check_alive() -> None:
        if probing.locked():
            return
        async with probing:
            if not await pool.target_alive():
                deadline[0] = time.monotonic()

    async def caller(mine: Sequence[Call]) -> None:
        session = pool.take()
        n = 0
        try:
            while time.monotonic() < deadline[0]:
                call = mine[n % len(mine)]
                n += 1
                if call.method is None:
                    result = await session.call_tool(call.name, call.arguments, timeout=timeout)
                else:
                    result = await session.call_method(
                        call.method, call.arguments or None, kind=call.kind, timeout=timeout
                    )
                step.record(result)
                if result.outcome == "transport_error":
                    await check_alive()
        finally:
            pool.give(session)

    await asyncio.gather(*(caller(mine) for mine in calls if mine))


async def open_step(
    pool: SessionPool,
    step: StepRecorder,
    calls: Sequence[Call],
    rate: float,
    duration: float,
    timeout: float,
    *,
    stride: int = 1,
    offset: int = 0,
    start_at: float | None = None,
) -> None:
    """Calls at `rate` per second for `duration`, latency measured from each call's intended send time.

    Sends go out in small batches on a 1 ms tick (whatever is due), so the
    scheduler never starves the calls it has started; a call that waits for a
    free caller still counts from its intended time. Slots the sender itself
    put out more than SENDER_LATE_S after their time add to `step.sent_late`.

    With several processes sharing one schedule (`--workers`), each is given
    the whole `rate`, the same `start_at` (a `time.monotonic()` value: the
    clock is system-wide) and sends only every `stride`-th slot from slot
    `offset`, so their sends interleave exactly instead of bunching.
    """
    slots_total = max(1, int(rate * duration))
    if offset >= slots_total:
        return
    total = (slots_total - offset + stride - 1) // stride
    interval = stride / rate
    start = (time.monotonic() + 0.01 if start_at is None else start_at) + offset / rate
    slots = asyncio.Semaphore(MAX_OPEN_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def one(call: Call, intended: float) -> None:
        async with slots:
            session = pool.take()
            try:
                if call.method is None:
                    result = await session.call_tool(call.name, call.arguments, timeout=timeout, intended=intended)
                else:
                    result = await session.call_method(
                        call.method, call.arguments or None, kind=call.kind, timeout=timeout, intended=intended
                    )
                step.record(result)
            finally:
                pool.give(session)

    sent = 0
    late = 0
    while sent < total:
        now = time.monotonic()
        due = min(total, math.floor((now - start) / interval) + 1)
        if due > sent:
            # Slots whose time passed SENDER_LATE_S ago go out late: counted per tick, not per call.
            overdue = min(due, math.floor((now - SENDER_LATE_S - start) / interval) + 1)
            if overdue > sent:
                late += overdue - sent
        while sent < due:
            task = loop.create_task(one(calls[(offset + sent * stride) % len(calls)], start + sent * interval))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        next_due = start + sent * interval
        await asyncio.sleep(max(0.0, min(0.001, next_due - time.monotonic())))
    step.sent_late = (step.sent_late or 0) + late
    if tasks:
        await asyncio.gather(*tasks)


def failed_result(kind: str, outcome: str, detail: str) -> CallResult:
    now = time.monotonic()
    return CallResult(kind, now, now, now, outcome, detail)  # type: ignore[arg-type]
