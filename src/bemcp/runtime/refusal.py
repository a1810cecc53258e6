"""`Refusal`: the runtime will not run a call now, and says why and when to try again.

A refusal is never silent: the protocol answers it as the documented overload
error and an HTTP transport adds 503 with `Retry-After`. The runtime raises it;
it knows nothing of JSON-RPC codes or status lines.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class RefusalReason(StrEnum):
    """Why a call was refused: the `data.reason` a client sees."""

    CONCURRENCY_LIMIT = "concurrency_limit"  # every slot taken and the wait queue full
    QUEUE_TIMEOUT = "queue_timeout"  # waited in the queue and no slot freed in time
    DRAINING = "draining"  # shutting down: no new calls
    MEMORY_PRESSURE = "memory_pressure"  # memory at high (writes) or critical (everything)
    WORKERS_EXHAUSTED = "workers_exhausted"  # every sync worker held by an abandoned call
    LISTENER_LIMIT = "listener_limit"  # too many subscriptions/listen streams open
    TASK_LIMIT = "task_limit"  # --max-tasks unfinished tasks already


def _message(reason: str, limit: int, retry_after_ms: int) -> str:
    retry = f"retry after {retry_after_ms} ms"
    if reason == RefusalReason.CONCURRENCY_LIMIT:
        return f"Server busy: concurrency limit {limit} reached and the wait queue is full; {retry}"
    if reason == RefusalReason.QUEUE_TIMEOUT:
        return f"Server busy: concurrency limit {limit} reached and no slot freed within the queue timeout; {retry}"
    if reason == RefusalReason.DRAINING:
        return f"Server is draining and accepts no new calls; {retry}"
    return f"Server busy ({reason}); {retry}"


class Refusal(Exception):
    """A call refused before (or instead of) running: its reason, the retry hint and the load it met.

    `limit`, `in_flight` and `queued` describe the limit that refused it;
    `extra` adds reason-specific figures to the answer's data.
    """

    def __init__(
        self,
        reason: RefusalReason,
        retry_after_ms: int,
        limit: int,
        in_flight: int,
        queued: int,
        *,
        message: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.reason = reason
        self.retry_after_ms = retry_after_ms
        self.limit = limit
        self.in_flight = in_flight
        self.queued = queued
        self.message = message or _message(reason, limit, retry_after_ms)
        self.extra = extra
        super().__init__(self.message)

    def data(self) -> dict[str, Any]:
        """The figures a client is told: reason, retry_after_ms, limit, in_flight, queued (and `extra`)."""
        out: dict[str, Any] = {
            "reason": str(self.reason),
            "retry_after_ms": self.retry_after_ms,
            "limit": self.limit,
            "in_flight": self.in_flight,
            "queued": self.queued,
        }
        if self.extra:
            out.update(self.extra)
        return out
