"""The call registry: every tools/call, resources/read and prompts/get in flight is a tracked call.

A call ends when it is answered. Work that outlives its answer (a task that ignored its cancellation, a sync
thread that cannot be interrupted) is *abandoned*: the call's record moves from `inflight` to `abandoned` and
stays there, holding the call's admission slot through `on_release`, until that work really ends.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from bemcp.errors import BemcpError
from bemcp.runtime.cancel import CancelReason

T = TypeVar("T")
log = logging.getLogger("bemcp.runtime")


@dataclass(frozen=True, slots=True)
class Abandoned:
    calls: int  # answered calls whose work still runs
    total: int  # ever
    tools: tuple[str, ...]  # their names, each once, sorted


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    in_flight: int  # calls running (essential calls skip admission but are counted here)
    completed: dict[str, int]  # calls ended, by outcome
    abandoned: Abandoned
    subtasks: int


@dataclass(slots=True)
class CallRecord:
    id: int
    method: str
    name: str
    started: float  # time.monotonic()
    deadline: float | None
    task: asyncio.Task[Any] | None  # the task running the call's work
    state: str = "running"
    cancel: Callable[[CancelReason], bool] | None = None  # cancels the call, recording why
    holds: int = 0  # pieces of the call's work still running that ignored their cancellation
    on_release: Callable[[], None] | None = None  # run when an abandoned call's last hold ends (its slot)


class DeadlineExceeded(BemcpError):
    """The call's deadline passed: its work was cancelled (and, if it ignored that, abandoned)."""


class _Deadline:
    """One call's deadline: `expire` (a loop timer) cancels the work, `wake` (the work's done callback) resumes
    the call. The call awaits `waiter`, never the work itself, so it can always be cancelled and answered."""

    __slots__ = ("expired", "waiter", "work")

    def __init__(self, work: asyncio.Task[Any], waiter: asyncio.Future[None]) -> None:
        self.work = work
        self.waiter = waiter
        self.expired = False

    def expire(self) -> None:
        if not self.work.done():
            self.expired = True
            self.work.cancel()

    def wake(self, _: object) -> None:
        if not self.waiter.done():
            self.waiter.set_result(None)


class CallRegistry:
    """Registry of in-flight calls, of abandoned ones, and of their outcomes."""

    def __init__(self, grace: float = 1.0) -> None:
        self._ids = itertools.count(1)
        self.inflight: dict[int, CallRecord] = {}
        self.abandoned: dict[int, CallRecord] = {}  # answered calls whose work still runs
        self.abandoned_total = 0  # calls ever abandoned
        self.completed: Counter[str] = Counter()
        self.grace = grace  # how long cancelled work may take to end before it is abandoned
        self.subtasks = 0  # live sub-tasks that calls spawned (counted by whoever spawns them)
        self._idle_waiters: list[tuple[asyncio.Future[None], bool]] = []  # (waiter, also for abandoned work)

    def begin(
        self,
        method: str,
        name: str,
        timeout: float | None,
        cancel: Callable[[CancelReason], bool] | None = None,
        task: asyncio.Task[Any] | None = None,
    ) -> CallRecord:
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        rec = CallRecord(next(self._ids), method, name, now, deadline, task or asyncio.current_task(), cancel=cancel)
        self.inflight[rec.id] = rec
        return rec

    def end(self, rec: CallRecord, outcome: str) -> None:
        """The call is answered (or will never be): out of `inflight`, into `abandoned` while work holds it."""
        rec.state = outcome
        self.inflight.pop(rec.id, None)
        self.completed[outcome] += 1
        if rec.holds:
            self.abandoned[rec.id] = rec
            log.warning(
                "%s %s answered (%s) while its work still runs: abandoned, it keeps its slot until it ends",
                rec.method,
                rec.name,
                outcome,
            )
        elif self._idle_waiters:
            self._wake_idle()

    # -- abandoned work ----------------------------------------------------------

    def hold(self, rec: CallRecord) -> None:
        """A piece of `rec`'s work ignored its cancellation; `release(rec)` once it ends."""
        if not rec.holds:
            self.abandoned_total += 1
        rec.holds += 1

    def release(self, rec: CallRecord) -> None:
        rec.holds -= 1
        if rec.holds or self.abandoned.pop(rec.id, None) is None:
            return  # more work still runs, or the call is not answered yet (`end` then finds no hold)
        log.warning(
            "abandoned %s %s ended %.1fs after it started", rec.method, rec.name, time.monotonic() - rec.started
        )
        if rec.on_release is not None:
            rec.on_release()
        if self._idle_waiters:
            self._wake_idle()

    def find(self, task: asyncio.Task[Any] | None) -> CallRecord | None:
        """The call whose work `task` runs (a scan: only asked when work is abandoned)."""
        if task is None:
            return None
        for rec in (*self.inflight.values(), *self.abandoned.values()):
            if rec.task is task:
                return rec
        return None

    def abandon_task(self, rec: CallRecord, work: asyncio.Task[Any]) -> None:
        self.hold(rec)
        work.add_done_callback(functools.partial(self._abandoned_task_done, rec))

    def _abandoned_task_done(self, rec: CallRecord, task: asyncio.Task[Any]) -> None:
        _consume(task)
        self.release(rec)

    async def run_with_deadline(self, rec: CallRecord, timeout: float, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run `work` in a task of its own and await its result for at most `timeout` seconds.

        At the deadline the work is cancelled and the call waits for it to end; then raises
        `DeadlineExceeded`, whatever the work returned. The call can be cancelled at any point (the watchdog
        does so at the deadline plus its grace, for work that ignores its cancellation): the work is cancelled
        too, given `grace` seconds to end if it has not had them, and abandoned if it still runs.
        """
        outer = rec.task
        loop = outer.get_loop() if outer is not None else asyncio.get_running_loop()
        task = loop.create_task(work())
        rec.task = task  # where a sync thread that outlives the call finds it (Runtime.run_sync)
        deadline = _Deadline(task, loop.create_future())
        task.add_done_callback(deadline.wake)
        timer = loop.call_later(timeout, deadline.expire)
        try:
            await deadline.waiter
        except asyncio.CancelledError:
            timer.cancel()
            try:
                if not task.done():
                    task.cancel()
                    if not deadline.expired:  # expired: it has had its grace already
                        await asyncio.wait((task,), timeout=self.grace)
            finally:
                if task.done():
                    _consume(task)
                else:
                    self.abandon_task(rec, task)
            raise
        timer.cancel()
        if deadline.expired:
            _consume(task)
            raise DeadlineExceeded
        return task.result()

    # -- idleness ------------------------------------------------------------------

    def _idle(self, abandoned: bool) -> bool:
        return not self.inflight and not (abandoned and self.abandoned)

    def _wake_idle(self) -> None:
        waiting = []
        for fut, abandoned in self._idle_waiters:
            if fut.done():
                continue
            if self._idle(abandoned):
                fut.set_result(None)
            else:
                waiting.append((fut, abandoned))
        self._idle_waiters = waiting

    async def wait_idle(self, timeout: float, *, abandoned: bool = False) -> bool:
        """Wait until no call is in flight (and, with `abandoned`, no abandoned work runs); False if `timeout`
        passed first."""
        if self._idle(abandoned):
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.append((fut, abandoned))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        return True

    @property
    def in_flight(self) -> int:
        return len(self.inflight)

    def snapshot(self) -> RegistrySnapshot:
        abandoned = list(self.abandoned.values())  # copied first: a sync thread's end may remove one
        return RegistrySnapshot(
            in_flight=len(self.inflight),
            completed=dict(self.completed),
            abandoned=Abandoned(len(abandoned), self.abandoned_total, tuple(sorted({r.name for r in abandoned}))),
            subtasks=self.subtasks,
        )


def _consume(task: asyncio.Task[Any]) -> None:
    """Mark a finished task's outcome as seen (nobody awaits an abandoned task, and asyncio logs any exception
    that no one retrieved)."""
    if not task.cancelled():
        task.exception()
