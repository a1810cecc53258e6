"""Admission control: the concurrency ceiling every call passes, with a bounded FIFO wait queue.

Under a fixed limit with a free slot and nobody queued, a call takes the fast
lane (`enter`/`leave`, which the call path inlines): a counter and one
comparison. Otherwise `try_acquire()` takes a free slot at once with a
`Token` (timed, so an adaptive limit can learn from it), and `acquire()`
queues the caller in FIFO order for at most `queue_timeout` seconds, or
refuses it at once when the queue is full. How many slots exist is the
`LimitAlgorithm`'s decision, fed by `Token.release`.

An admitted call that waits for its client (a task in input_required) lends
its slot (`lend`) and takes one back when it resumes (`reclaim`): reclaimers
are served before the queue and are never refused, as they were admitted.

Not thread-safe: acquire and release on the event loop that owns it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from bemcp.runtime.limits import FixedLimit, LimitAlgorithm
from bemcp.runtime.refusal import Refusal, RefusalReason

Reason = Literal["concurrency_limit", "queue_timeout", "draining"]
Outcome = Literal["success", "dropped", "ignore"]

REASONS: Final[tuple[Reason, ...]] = ("concurrency_limit", "queue_timeout", "draining")
RETRY_AFTER_MIN_MS: Final = 50
RETRY_AFTER_MAX_MS: Final = 5000


class Token:
    """One admitted call's slot; release it exactly once when the call ends.

    Outcomes: "success" and "dropped" (ended in a way that signals overload,
    such as a timeout) teach the limit algorithm; "ignore" (cancelled by the
    client, failed before doing real work) frees the slot without teaching
    it anything. Releasing again is a no-op, so `finally:` blocks are safe.
    """

    __slots__ = ("_admission", "_in_flight", "_lent_at", "_start_ns")

    def __init__(self, admission: Admission, start_ns: int, in_flight: int) -> None:
        self._admission: Admission | None = admission
        self._start_ns = start_ns
        self._in_flight = in_flight
        self._lent_at = 0

    @property
    def released(self) -> bool:
        return self._admission is None

    def release(self, outcome: Outcome = "success") -> None:
        admission = self._admission
        if admission is None:
            return
        if outcome not in ("success", "dropped", "ignore"):
            raise ValueError(f"unknown outcome {outcome!r}")
        self._admission = None
        admission._release(self._start_ns, self._in_flight, outcome)


@dataclass(frozen=True, slots=True)
class AdmissionSnapshot:
    """Counters at one moment.

    Every `acquire()` ends in exactly one of admitted, rejected or cancelled,
    or is still queued.
    """

    limit: int
    in_flight: int
    queued: int
    peak_in_flight: int
    admitted: int
    rejected: dict[str, int]
    cancelled: int
    draining: bool
    avg_call_ms: float
    lent: int = 0  # slots given up by admitted calls waiting for their client


class Admission:
    """The concurrency ceiling in front of every call.

    `limit` decides how many calls run at once; up to `queue_size` more wait
    in FIFO order for at most `queue_timeout` seconds (None: no timeout);
    `clock` is a monotonic clock in nanoseconds, used to time calls.

    Defaults: queue_size=1000, queue_timeout=1.0, clock=time.monotonic_ns.
    """

    __slots__ = (
        "_algorithm",
        "_avg_call_ns",
        "_cancelled",
        "_cap",
        "_clock",
        "_draining",
        "_fixed",
        "_queue_size",
        "_queue_timeout",
        "_reclaimers",
        "_rejected",
        "_waiters",
        "admitted",
        "call_time_ns",
        "in_flight",
        "lane",
        "lent",
        "peak_in_flight",
    )

    def __init__(
        self,
        limit: LimitAlgorithm,
        *,
        queue_size: int = 1000,
        queue_timeout: float | None = 1.0,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        if queue_timeout is not None and queue_timeout < 0:
            raise ValueError(f"queue_timeout must be >= 0 or None, got {queue_timeout}")
        self._algorithm = limit
        self._cap = limit.limit  # cached: read on every acquire, changes only in on_sample
        self._fixed = isinstance(limit, FixedLimit)
        self._queue_size = queue_size
        self._queue_timeout = queue_timeout
        self._clock = clock
        # A waiter's future resolves to None when granted a slot, or to the reason it was refused.
        # OrderedDict: FIFO pop from the front and O(1) removal of a cancelled waiter.
        self._waiters: OrderedDict[asyncio.Future[Reason | None], None] = OrderedDict()
        # Lent slots waiting to be taken back, served first (a future resolves to None when granted).
        self._reclaimers: OrderedDict[asyncio.Future[None], None] = OrderedDict()
        self.lent = 0  # slots lent by calls waiting for their client
        self._draining = False
        # Counters the fast lane (`enter`) updates in place: public so the call path can inline it.
        self.in_flight = 0
        self.peak_in_flight = 0
        self.admitted = 0
        self.lane = 0
        self._update_lane()
        self._cancelled = 0
        self._rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._avg_call_ns = 0  # EWMA over Token releases
        # The mean call duration in ns from whoever times every call (the runtime's metrics), or None.
        self.call_time_ns: Callable[[], float] | None = None

    @property
    def algorithm(self) -> LimitAlgorithm:
        return self._algorithm

    @property
    def limit(self) -> int:
        return self._cap

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def cancelled(self) -> int:
        return self._cancelled

    @property
    def rejected(self) -> dict[str, int]:
        return dict(self._rejected)

    @property
    def draining(self) -> bool:
        return self._draining

    def try_acquire(self) -> Token | None:
        """Take a free slot if there is one and nobody is queued for it; never waits or refuses.

        A None is no refusal and counts as nothing: follow it with `acquire()`.
        `try_acquire() or await acquire()` saves creating a coroutine per call.
        """
        if not self._waiters and self.in_flight < self._cap and not self._draining:
            n = self.in_flight = self.in_flight + 1
            if n > self.peak_in_flight:
                self.peak_in_flight = n
            self.admitted += 1
            return Token(self, self._clock(), n)
        return None

    def enter(self) -> bool:
        """The fast lane: take a free slot under a fixed limit when nobody waits, with no Token and no clock read.

        False: fall back to `try_acquire()`/`acquire()`. A slot taken here is
        given back with `leave()`. The call path inlines both (a function call
        is a measurable share of a call's cost); the protocol, kept in step:

            enter: if a.in_flight < a.lane: n = a.in_flight = a.in_flight + 1; a.admitted += 1;
                   if n > a.peak_in_flight: a.peak_in_flight = n
            leave: a.in_flight -= 1; if not a.lane: a.settle()

        `lane` is the limit while the lane is open (fixed limit, not draining,
        queue empty) and 0 otherwise, so one comparison decides.
        """
        if self.in_flight < self.lane:
            n = self.in_flight = self.in_flight + 1
            self.admitted += 1
            if n > self.peak_in_flight:
                self.peak_in_flight = n
            return True
        return False

    def leave(self) -> None:
        """Give back a slot taken by `enter()` (its duration is not needed: see `call_time_ns`)."""
        self.in_flight -= 1
        if not self.lane:
            self.settle()

    def settle(self) -> None:
        """After a fast-lane slot was given back while the lane is closed: serve the queue."""
        if self._waiters or self._reclaimers:
            self._grant()

    def _update_lane(self) -> None:
        closed = self._draining or self._waiters or self._reclaimers
        self.lane = self._cap if self._fixed and not closed else 0

    # -- lending ----------------------------------------------------------------

    def lend(self, token: Token | None) -> None:
        """An admitted call gives its slot up while it waits for its client; `token` is its Token, if it has one
        (its clock stops, so that the limit algorithm never learns the client's think time)."""
        if token is not None:
            token._lent_at = self._clock()
        self.lent += 1
        self.in_flight -= 1
        if self._waiters:
            self._grant()

    async def reclaim(self, token: Token | None) -> None:
        """Take a lent slot back: at once if one is free, else before anyone queued (never refused)."""
        if self.in_flight >= self._cap or self._reclaimers:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._reclaimers[fut] = None
            self.lane = 0
            try:
                await fut
            except asyncio.CancelledError:
                if not (fut.done() and not fut.cancelled()):  # not granted: the slot is taken back all the same
                    self._reclaimers.pop(fut, None)
                    self._update_lane()
                    self._took_back(token, count=True)
                else:
                    self._took_back(token, count=False)
                raise
            self._took_back(token, count=False)
            return
        self._took_back(token, count=True)

    def reclaim_now(self, token: Token | None) -> None:
        """Take a lent slot back at once, past the limit if need be: for a call that is ending (cancelled, timed
        out), which gives it back in a moment."""
        self._took_back(token, count=True)

    def _took_back(self, token: Token | None, *, count: bool) -> None:
        if count:
            n = self.in_flight = self.in_flight + 1
            if n > self.peak_in_flight:
                self.peak_in_flight = n
        self.lent -= 1
        if token is not None and token._lent_at:
            token._start_ns += self._clock() - token._lent_at
            token._lent_at = 0

    async def acquire(self) -> Token:
        """Take a slot, waiting in the queue if need be; raises `Refusal` when refused."""
        token = self.try_acquire()
        if token is not None:
            return token
        return await self._wait()

    async def _wait(self) -> Token:
        if self._draining:
            raise self._refuse("draining")
        if len(self._waiters) >= self._queue_size:
            raise self._refuse("concurrency_limit")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reason | None] = loop.create_future()
        self._waiters[fut] = None
        self.lane = 0  # the queue is not empty: arrivals queue behind it, in order
        # Normally a no-op; serves the queue if the limit grew without a release.
        self._grant()
        timer = None if self._queue_timeout is None else loop.call_later(self._queue_timeout, self._expire, fut)
        try:
            reason = await fut
        except asyncio.CancelledError:
            self._abandon(fut)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if reason is not None:
            raise self._refuse(reason)
        self.admitted += 1
        return Token(self, self._clock(), self.in_flight)

    def _grant(self) -> None:
        reclaimers = self._reclaimers
        while reclaimers and self.in_flight < self._cap:
            back, _ = reclaimers.popitem(last=False)
            if back.done():
                continue
            n = self.in_flight = self.in_flight + 1
            if n > self.peak_in_flight:
                self.peak_in_flight = n
            back.set_result(None)
        waiters = self._waiters
        while waiters and self.in_flight < self._cap:
            fut, _ = waiters.popitem(last=False)
            if fut.done():  # cancelled; its task has not run its cleanup yet
                continue
            n = self.in_flight = self.in_flight + 1
            if n > self.peak_in_flight:
                self.peak_in_flight = n
            fut.set_result(None)
        if not waiters and not reclaimers:
            self._update_lane()

    def _expire(self, fut: asyncio.Future[Reason | None]) -> None:
        if not fut.done():
            self._waiters.pop(fut, None)
            fut.set_result("queue_timeout")
            if not self._waiters:
                self._update_lane()

    def _abandon(self, fut: asyncio.Future[Reason | None]) -> None:
        self._cancelled += 1
        if fut.done() and not fut.cancelled() and fut.result() is None:
            # Granted a slot in the same tick the caller was cancelled: the slot
            # is ours to give back, or the next waiter would wait for nothing.
            self.in_flight -= 1
            self._grant()
        else:
            self._waiters.pop(fut, None)
            if not self._waiters:
                self._update_lane()

    def _release(self, start_ns: int, in_flight: int, outcome: Outcome) -> None:
        now = self._clock()
        rtt = now - start_ns
        avg = self._avg_call_ns
        self._avg_call_ns = rtt if avg == 0 else avg + ((rtt - avg) >> 4)
        self.in_flight -= 1
        if outcome == "ignore" or self._fixed:  # a fixed limit learns nothing from samples
            if self._waiters or self._reclaimers:
                self._grant()
            return
        try:
            self._algorithm.on_sample(now, rtt, in_flight, outcome == "dropped")
        finally:
            # Even if the algorithm raised, the slot is free and waiters must hear of it.
            self._cap = self._algorithm.limit
            if self._waiters or self._reclaimers:
                self._grant()

    def _refuse(self, reason: Reason) -> Refusal:
        self._rejected[reason] += 1
        retry = self.retry_after_ms(reason)
        return Refusal(RefusalReason(reason), retry, self._cap, self.in_flight, len(self._waiters))

    def _mean_call_ns(self) -> float:
        # Calls on the fast path are not timed here: a fixed limit learns nothing from them, and
        # the runtime times every call anyway (its latency histogram), so it supplies the mean.
        if self.call_time_ns is not None and (self._fixed or not self._avg_call_ns):
            return self.call_time_ns() or float(self._avg_call_ns)
        return float(self._avg_call_ns)

    def retry_after_ms(self, reason: Reason = "concurrency_limit") -> int:
        """When a refused caller should try again, in [RETRY_AFTER_MIN_MS, RETRY_AFTER_MAX_MS].

        A slot frees about every `avg_call / limit`, so the queue ahead plus
        the caller drains in `avg_call * (queued + 1) / limit`. Before any call
        has finished, a call is assumed to last one queue timeout (or 1 s).
        A draining server is not coming back soon: the maximum.
        """
        if reason == "draining":
            return RETRY_AFTER_MAX_MS
        avg_ns = self._mean_call_ns() or (self._queue_timeout or 1.0) * 1e9
        ms = avg_ns * (len(self._waiters) + 1) / (max(self._cap, 1) * 1e6)
        return int(min(RETRY_AFTER_MAX_MS, max(RETRY_AFTER_MIN_MS, ms)))

    def set_draining(self, draining: bool = True) -> None:
        """Refuse new and queued callers with `draining` (calls already admitted run on), or stop doing so."""
        self._draining = draining
        if draining:
            waiters = self._waiters
            while waiters:
                fut, _ = waiters.popitem(last=False)
                if not fut.done():
                    fut.set_result("draining")
        self._update_lane()

    def wake(self) -> None:
        """Re-read the algorithm's limit and admit waiters it now has room for.

        Releases do this by themselves; call it after changing the limit any
        other way (a configuration reload, say).
        """
        self._cap = self._algorithm.limit
        self._grant()  # also reopens the lane at the new limit once nobody waits

    def snapshot(self) -> AdmissionSnapshot:
        return AdmissionSnapshot(
            limit=self._cap,
            in_flight=self.in_flight,
            queued=len(self._waiters),
            peak_in_flight=self.peak_in_flight,
            admitted=self.admitted,
            rejected=dict(self._rejected),
            cancelled=self._cancelled,
            draining=self._draining,
            avg_call_ms=self._mean_call_ns() / 1e6,
            lent=self.lent,
        )

    def __repr__(self) -> str:
        return f"Admission(limit={self._cap}, in_flight={self.in_flight}, queued={len(self._waiters)})"
