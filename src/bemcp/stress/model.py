"""The data every part of the stress tester shares: one call's result, a step's outcome, a report phase."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Outcome = Literal[
    "ok",  # a result without isError
    "tool_error",  # a result with isError: true (the server answered; the tool failed)
    "overload",  # the documented overload error (-32050 / HTTP 503), or any 503/429 from another server
    "protocol_error",  # any other JSON-RPC error answer
    "timeout",  # no answer within the call timeout (the tester gave up)
    "transport_error",  # connection refused/reset, malformed HTTP, EOF on stdio, unparseable answer
]
OUTCOMES: tuple[Outcome, ...] = ("ok", "tool_error", "overload", "protocol_error", "timeout", "transport_error")
# Outcomes that count against the error budget. A tool_error is the server working as designed
# (the tool said no), and an overload is a clean, documented refusal: both are reported separately.
ERROR_OUTCOMES: frozenset[str] = frozenset({"protocol_error", "timeout", "transport_error"})


@dataclass(slots=True)
class CallResult:
    """One operation as the load generator saw it. Times are `time.monotonic()` seconds."""

    kind: str  # the operation: a tool name, "rpc:<method>", or "chaos:malformed", "chaos:disconnect", ...
    intended: float  # when it should have been sent (open model); equals `start` in the closed model
    start: float  # when it was sent
    end: float  # when its answer (or failure) arrived
    outcome: Outcome
    detail: str | None = None  # e.g. the overload reason, the JSON-RPC error code, the exception

    @property
    def latency(self) -> float:
        """Seconds from the intended send time: coordinated-omission safe."""
        return self.end - self.intended

    @property
    def service_time(self) -> float:
        return self.end - self.start


class Session(Protocol):
    """One client connection to the target (a keep-alive HTTP connection, or the stdio pipe)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], *, timeout: float, intended: float | None = None
    ) -> CallResult: ...

    async def call_method(
        self, method: str, params: dict[str, Any] | None, *, kind: str, timeout: float, intended: float | None = None
    ) -> CallResult:
        """Any request as one timed, classified call filed under `kind` (load on protocol methods: `ping`,
        `tools/list`, when no tool may be called)."""
        ...

    async def request(self, method: str, params: dict[str, Any] | None, *, timeout: float) -> dict[str, Any]:
        """A raw JSON-RPC request; returns the whole response message (raises on transport failure)."""
        ...

    async def send_raw(self, payload: bytes, *, kind: str, timeout: float) -> CallResult:
        """Chaos: send bytes as one message (malformed JSON, an oversized body) and classify the answer."""
        ...

    async def call_and_disconnect(self, name: str, arguments: dict[str, Any], *, after: float) -> CallResult:
        """Chaos: start a call and drop the connection `after` seconds later (the session is then dead)."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class StepOutcome:
    """What the escalation policy sees of one load step."""

    level: float  # concurrency (closed model) or offered rate in calls/s (open model)
    calls: int
    error_rate: float  # ERROR_OUTCOMES / calls
    overload_rate: float
    p99_ms: float
    throughput: float  # achieved ok calls/s
    client_bound: bool = False


@dataclass(slots=True)
class Thresholds:
    slo_p99_ms: float = 1000.0
    error_budget: float = 0.01  # fraction of calls that may fail (ERROR_OUTCOMES)


@dataclass(slots=True)
class Finding:
    severity: Literal["info", "warning", "critical"]
    phase: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
