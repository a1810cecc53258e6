"""The call pipeline: the one path every call takes, from any transport (and later tasks and proxied calls).

`CallPipeline.run` (the runtime's `run_call`) decides whether and how a call
runs: shedding (draining, memory), admission (the concurrency ceiling), the
call registry, the deadline, timing and the outcome. The protocol decides
what the call is (a `CallSpec`) and hands over the work and its `Cancellable`.
It gets back the work's result, or one of: `Refusal` (not run), `CutOff`
(ended by the server; answer it), `Suspended` (the work awaits input), or the
`CancelledError` of a cancellation it must answer or keep silent about.

This is the measured hot path: the fast-lane admission and the latency count
are inlined here (see `Admission.enter` and `Histogram.cells`).
"""

from __future__ import annotations

import asyncio
import functools
from bisect import bisect_left
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from time import monotonic as _monotonic
from typing import Any, Literal, Protocol

from bemcp.errors import BemcpError
from bemcp.runtime.admission import Admission, Token
from bemcp.runtime.cancel import CancelReason, CutOff
from bemcp.runtime.instruments import Counter, Histogram
from bemcp.runtime.memory import MemoryLevel, MemoryManager
from bemcp.runtime.refusal import Refusal, RefusalReason
from bemcp.runtime.registry import CallRegistry, DeadlineExceeded
from bemcp.runtime.tasklog import TaskLog

Result = dict[str, Any]

# The methods whose calls every transport runs through the pipeline (MCP's tools, resources and prompts).
TIMED_METHODS = ("tools/call", "resources/read", "prompts/get")

# How a call's outcome feeds the adaptive limit: timeouts are drops; cancels and partial calls say nothing.
_SAMPLE: dict[str, Literal["success", "dropped", "ignore"]] = {
    "ok": "success",
    "error": "success",
    "timeout": "dropped",
}


@dataclass(frozen=True, slots=True)
class CallSpec:
    """What a call is: made once per tool (or per request where the target varies), never changed.

    `timeout` is the deadline in seconds (None: none). `essential` calls (the
    health tool) skip shedding and admission, so a server under pressure can
    still say how it is.
    """

    method: str
    name: str
    timeout: float | None = None
    read_only: bool = True
    essential: bool = False


class Cancellable(Protocol):
    """How the pipeline cancels a call and learns why it was cancelled (the protocol's `Exchange`)."""

    cancel_reason: CancelReason | None
    task: asyncio.Task[Any] | None
    request_id: Any  # named in the task log
    slot: Token | None  # set when admission gave a Token (not on the fast lane): what a task lends

    def cancel(self, reason: CancelReason) -> bool: ...


class Suspended(Exception):
    """The work stopped to wait for input from the client; the call is answered with what it needs."""

    outcome = "input_required"  # as the task log and the latency series name the call's end


class CallPipeline:
    """Runs calls through the protections; one per runtime."""

    __slots__ = (
        "_adm",
        "_cells",
        "_latency",
        "_log_tasks",
        "_memory",
        "_shed",
        "_tasklog",
        "calls",
        "protect",
        "shedding",
    )

    def __init__(
        self,
        admission: Admission,
        calls: CallRegistry,
        memory: MemoryManager,
        tasklog: TaskLog,
        latency: Histogram,
        shed: Counter,
        *,
        protect: bool = True,
    ) -> None:
        self._adm = admission
        self.calls = calls
        self._memory = memory
        self._tasklog = tasklog
        self._log_tasks = tasklog.enabled
        self._latency = latency
        self._shed = shed
        # The latency series per method, held for inline counting. The methods that always come through here
        # are made up front, so that /metrics shows their zero series before the first call.
        self._cells: dict[str, list[float]] = {m: latency.cells(m) for m in TIMED_METHODS}
        self.protect = protect
        # True while a new call may have to be shed (draining, or memory at high or above): the hot
        # path reads this one flag and only then asks why.
        self.shedding = False

    def update_shedding(self) -> None:
        """Re-read the drain and memory state (on a drain, a memory level change, a start)."""
        self.shedding = self._adm.draining or self._memory.level >= MemoryLevel.HIGH

    def shed(self, read_only: bool) -> Refusal | None:
        """The memory or drain verdict for a new call, without touching admission (O(1))."""
        if self._adm.draining:
            return self.refusal(RefusalReason.DRAINING)
        if self._memory.should_shed(read_only) is not None:
            return self.refusal(RefusalReason.MEMORY_PRESSURE)
        return None

    def refusal(self, reason: RefusalReason) -> Refusal:
        adm = self._adm
        if reason is RefusalReason.MEMORY_PRESSURE:
            retry = 1000
        else:
            retry = adm.retry_after_ms("draining" if reason is RefusalReason.DRAINING else "concurrency_limit")
        return Refusal(reason, retry, adm.limit, adm.in_flight, adm.queued)

    def _series(self, method: str) -> list[float]:
        cells = self._cells[method] = self._latency.cells(method)
        return cells

    async def run(self, call: CallSpec, work: Callable[[], Coroutine[Any, Any, Result]], handle: Cancellable) -> Result:
        """Run `work` as the call `call`, cancelled through `handle`; see the module doc for how it ends."""
        protect = self.protect
        adm = self._adm
        token = None
        fast = False  # a slot from the fast lane (no Token)
        if protect and not call.essential:
            if self.shedding:
                refused = self.shed(call.read_only)
                if refused is not None:
                    self._shed.inc(refused.reason)
                    raise refused
            # `adm.enter()`, inlined (see its doc): one comparison when a slot is free.
            if adm.in_flight < adm.lane:
                n = adm.in_flight = adm.in_flight + 1
                adm.admitted += 1
                if n > adm.peak_in_flight:
                    adm.peak_in_flight = n
                fast = True
            else:
                token = handle.slot = adm.try_acquire() or await adm.acquire()
        calls = self.calls
        method, name, timeout = call.method, call.name, call.timeout
        rec = calls.begin(method, name, timeout, handle.cancel, handle.task)
        tasklog = self._tasklog
        log_tasks = self._log_tasks
        if log_tasks:
            tasklog.task_started(rec.id, method, name, handle.request_id, timeout)
        outcome = "error"
        try:
            if timeout is None:
                res = await work()
            else:
                # The work runs in a task of its own, so that the call can be answered at its deadline (or, by
                # the watchdog, at the deadline plus its grace) even when the work ignores its cancellation.
                try:
                    res = await calls.run_with_deadline(rec, timeout, work)
                except DeadlineExceeded:
                    handle.cancel_reason = CancelReason.DEADLINE  # decided: no later cancel applies
                    outcome = "timeout"
                    raise CutOff(
                        CancelReason.DEADLINE,
                        f"{method} {name} exceeded its deadline of {timeout:g}s",
                        timeout,
                        bool(rec.holds),
                    ) from None
            outcome = "error" if res.get("isError") else "ok"
            return res
        except Suspended as s:
            outcome = s.outcome
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            reason = handle.cancel_reason
            if reason is not CancelReason.WATCHDOG and reason is not CancelReason.DRAIN_TIMEOUT:
                raise
            # The server cut the call off: past its deadline's grace, its work having ignored the cancellation
            # (`watchdog`), or at the end of a drain (`drain_timeout`). Answered; the cancel is spent here.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            if reason is CancelReason.WATCHDOG:
                outcome = "timeout"
                text = f"{method} {name} exceeded its deadline of {timeout:g}s and ignored its cancellation"
            else:
                text = f"{method} {name} was cut off: the server is shutting down and its drain timed out"
            if rec.holds:
                text += "; its work still runs, abandoned"
            raise CutOff(reason, text, timeout, bool(rec.holds)) from None
        except Refusal:
            outcome = "refused"
            raise
        except BemcpError:  # a protocol error the work raised on purpose
            outcome = "protocol_error"
            raise
        finally:
            calls.end(rec, outcome)
            if protect:
                duration = _monotonic() - rec.started
                if rec.holds:  # work outlived the answer: it keeps its slot until it ends
                    if fast:
                        rec.on_release = adm.leave
                    elif token is not None:
                        rec.on_release = functools.partial(token.release, _SAMPLE.get(outcome, "ignore"))
                elif fast:  # `adm.leave()`, inlined
                    adm.in_flight -= 1
                    if not adm.lane:
                        adm.settle()
                elif token is not None:
                    token.release(_SAMPLE.get(outcome, "ignore"))
                # Counted inline (see `Histogram.cells`): a call costs no function call here, and most
                # calls land in the first bucket with one float comparison.
                lat = self._latency
                cells = self._cells.get(method) or self._series(method)
                cells[0 if duration <= lat.first else bisect_left(lat.buckets, duration)] += 1
                cells[lat.sum_at] += duration
                if log_tasks:
                    tasklog.task_finished(rec.id, method, name, outcome, duration * 1000)
