"""The report.json models (schema version 1): the source of the validator, the published JSON Schema
(docs/report.schema.json) and the field reference of docs/report-schema.md.

The phases and their steps are in `models_phases`; this module holds the rest of the report and `Report` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import MISSING, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .models_phases import (
    LATENCY_DOC,
    Closed,
    ErrorKind,
    Latency,
    Open,
    Outcomes,
    Phase,
    PhaseName,
    Phases,
    Step,
    field_rule,
)

SCHEMA_VERSION = 1

# A report as the renderers read it: the JSON object, before or after validation.
ReportData: TypeAlias = Mapping[str, Any]


class ToolInfo(Closed):
    """The tester that wrote the report."""

    name: str = Field(description="`bemcp stress`")
    version: str = Field(description="the bemcp package version")


class Run(Closed):
    """How the run was made."""

    id: str = Field(description="a unique run id")
    started_at: str = Field(description="UTC start time, ISO 8601")
    finished_at: str = Field(description="UTC end time, ISO 8601")
    duration_s: float = Field(ge=0, description="seconds from start to end")
    seed: int = Field(
        description="the random seed (argument generation, the chaos mix): the same seed repeats the same run"
    )
    profile: str = Field(description="the profile: quick, standard, extreme (or custom)")
    phases: list[Annotated[PhaseName, Field(description="a phase name")]] = Field(
        description="the phases asked for, in order"
    )
    command: str = Field(description="the command line, shell-quoted")
    workers: int = Field(ge=1, description="load-generator processes (--workers)")
    timeseries_interval_s: float = Field(ge=0, description="the width of one timeseries bucket, seconds (1)")


class Death(Closed):
    """One time the target was found dead."""

    t: float | None = Field(ge=0, description="seconds from the run start")
    phase: str | None = Field(description="the phase running then")
    detail: str = Field(description="what was seen (exit code, connection refused, …)")


class Target(Closed):
    """The server under test."""

    spec: str = Field(description="the --target value as given")
    kind: Literal["embedded", "http", "stdio"] = Field(description="how it was reached")
    revision: str | None = Field(description="the MCP protocol revision spoken (2026-07-28 or 2025-11-25)")
    server_info: Any | None = Field(description="the server's self-description (name, version, …) as it sent it")
    pid: int | None = Field(ge=1, description="the target's process id when known")
    tools_discovered: list[Annotated[str, Field(description="a tool name")]] = Field(
        description="every tool tools/list returned"
    )
    tools_used: list[Annotated[str, Field(description="a tool name")]] = Field(description="the tools the load called")
    skipped_tools: dict[Annotated[str, Field(description="tool")], Annotated[str, Field(description="the reason")]] = (
        Field(
            description="tools never called, with the reason (destructiveHint, not readOnlyHint without "
            "--allow-writes, no valid arguments within the generation budget)"
        )
    )
    memory_budget_bytes: int | None = Field(
        ge=0,
        description="the target's own memory budget (BE-MCP: from /metrics or server_health); null when unknown",
    )
    alive_at_end: bool = Field(description="the target answered at the end of the run")
    deaths: list[Death] = Field(description="every time the target was found dead during the run")
    error: str | MISSING = Field(
        MISSING,
        description="why the run could not use the target (unreachable, not speaking MCP, no usable tools/list): "
        "every phase is then skipped and the verdict is FAIL; absent when it could",
    )


class Environment(Closed):
    """Where the run happened."""

    hostname: str = Field(description="the host name")
    os: str = Field(description="operating system and kernel")
    python: str = Field(description="the tester's Python version")
    cpu_count: int | None = Field(ge=1, description="logical CPUs")
    memory_bytes: int | None = Field(ge=0, description="physical memory")
    container_limit_bytes: int | None = Field(ge=0, description="the cgroup memory limit, null when unlimited")


class Thresholds(Closed):
    """The explicit thresholds the steps and the verdict are judged by."""

    slo_p99_ms: float = Field(ge=0, description="--slo-p99-ms: the p99 latency a good step must not pass, ms")
    error_budget: float = Field(
        ge=0,
        le=1,
        description="--error-budget: the fraction of calls that may end as protocol_error, timeout or transport_error",
    )


class MixEntry(Closed):
    """One entry of the mix."""

    name: str = Field(description="a tool name, or a protocol method")
    kind: Literal["tool", "method"] = Field(description="tool or protocol method")
    weight: float = Field(ge=0, description="the weight given (--tool NAME=WEIGHT; 1 otherwise)")
    share: float = Field(ge=0, le=1, description="its planned share of the load's calls")
    arguments: Literal["generated", "fixed", "none"] = Field(
        description="`generated` from the inputSchema (a pool of up to 32 sets made once per tool, within a budget; "
        "each call draws one), `fixed` by --args, `none`"
    )


_ANSWERED = "calls answered in the steps of every phase"


class ToolCount(Closed):
    """One tool."""

    name: str = Field(description="the tool")
    calls: int = Field(ge=0, description=_ANSWERED)
    share: float = Field(ge=0, le=1, description="calls / the run's tool calls")


class MethodCount(Closed):
    """One protocol method."""

    name: str = Field(description="the protocol method")
    calls: int = Field(ge=0, description=_ANSWERED)
    share: float = Field(ge=0, le=1, description="calls / the run's protocol method calls")


class Load(Closed):
    """What carried the load: the mix the load phases (tsunami, rate, soak) called, and every tool's share."""

    source: Literal["ranked", "--tool", "protocol"] = Field(
        description="`ranked`: the best-ranked of the target's own tools (never BE-MCP's built-in server_health); "
        "`--tool`: the tools named; `protocol`: no tool could be called, so protocol methods"
    )
    note: str = Field(description="one line: what carried the load and why")
    hint: str | None = Field(description="`protocol`: the flags that would let tools be called; else null")
    mix: list[MixEntry] = Field(description="the load phases' mix")
    tool_calls: int = Field(ge=0, description="tools/call requests answered in the steps (chaos disconnects aside)")
    tools: list[ToolCount] = Field(description="every tool the run called, most calls first")
    method_calls: int = Field(ge=0, description="protocol-method requests answered in the steps")
    methods: list[MethodCount] = Field(description="every protocol method the run called, most calls first")


class Bucket(Closed):
    """One time-series bucket."""

    t: float = Field(ge=0, description="bucket start, seconds from the run start")
    phase: str | MISSING | None = Field(MISSING, description="the phase running then")
    offered: int = Field(ge=0, description="calls whose intended send time fell in the bucket")
    achieved: int = Field(ge=0, description="ok answers that arrived in the bucket")
    errors: dict[
        Annotated[ErrorKind, Field(description="outcome")], Annotated[int, Field(ge=0, description="calls")]
    ] = Field(description="non-ok answers that arrived in the bucket, by outcome (absent = 0)")
    in_flight: float = Field(ge=0, description="calls outstanding, sampled in the bucket")
    p50_ms: float | None = Field(ge=0, description="median latency of the calls answered in the bucket, ms")
    p99_ms: float | None = Field(ge=0, description="p99 latency of the calls answered in the bucket, ms")


class TargetSample(Open):
    """One target sample; more metrics may follow (open object)."""

    t: float = Field(ge=0, description="seconds from the run start")
    source: Literal["metrics", "psutil", "none"] = Field(
        description="where it came from (`none`: nothing could be read)"
    )
    rss_bytes: int | None = Field(ge=0, description="resident memory")
    cpu_percent: float | None = Field(ge=0, description="CPU, percent of one core")
    in_flight: float | MISSING | None = Field(MISSING, ge=0, description="calls running (from /metrics)")
    queued: float | MISSING | None = Field(MISSING, ge=0, description="calls waiting for a slot (from /metrics)")
    memory_level: Annotated[int, Field(ge=0)] | str | MISSING | None = Field(
        MISSING, description="BE-MCP memory level: 0 normal … 3 critical, or its name"
    )


class ProtectionEvents(Closed):
    """What the target's protections did (BE-MCP /metrics, else the overload answers the tester saw)."""

    source: Literal["metrics", "client", "none"] = Field(
        description="`metrics` (the target's counters), `client` (from answers) or `none`"
    )
    rejected: dict[Annotated[str, Field(description="reason")], Annotated[int, Field(ge=0, description="calls")]] = (
        Field(description="calls refused, by reason (concurrency_limit, queue_timeout, memory_pressure, draining, …)")
    )
    watchdog: dict[Annotated[str, Field(description="kind")], Annotated[int, Field(ge=0, description="events")]] = (
        Field(description="watchdog events, by kind (stall, deadline, …)")
    )
    memory_levels_seen: list[Annotated[str, Field(description="a level name")]] = Field(
        description="memory levels the target reported, in order of first sight"
    )


class Limit(Closed):
    """One discovered limit."""

    name: str = Field(description="what the limit is, e.g. `max sustainable concurrency`")
    value: float | None = Field(description="its value; null when the run could not find it")
    unit: str = Field(description="the unit of `value`")
    phase: str = Field(description="the phase that found it")
    confidence: Literal["high", "medium", "low"] = Field(
        description="high: measured directly at a resolved step; medium: bracketed or client-bound; low: "
        "extrapolated or noisy"
    )
    how: str = Field(description="how it was found, in one sentence")


class Finding(Closed):
    """One finding."""

    severity: Literal["info", "warning", "critical"] = Field(description="how bad")
    phase: str = Field(description="the phase (or `run`)")
    message: str = Field(description="one sentence")
    data: Any = Field(description="the numbers behind it")


class Summary(Closed):
    """Whole-run numbers; see the definitions below the table."""

    total_calls: int = Field(ge=0, description="calls over every step of every phase")
    outcomes: Outcomes = Field(description="all step calls by outcome")
    ok: int = Field(ge=0, description="= outcomes.ok")
    errors: int = Field(ge=0, description="protocol_error + timeout + transport_error (the error budget's errors)")
    error_rate: float = Field(ge=0, le=1, description="errors / total_calls (0 without calls)")
    time_under_load_s: float = Field(ge=0, description="the sum of step durations")
    peak_throughput: float = Field(ge=0, description="the highest ok calls/s in one timeseries bucket")
    sustained_throughput: float = Field(ge=0, description="the highest ok calls/s a step held over its whole duration")
    average_throughput: float = Field(ge=0, description="all ok calls / time_under_load_s")
    latency_ms: Latency | None = Field(description=LATENCY_DOC)
    latency_hdr: str | MISSING | None = Field(
        MISSING,
        description="the whole run's latencies (every step), µs, in HdrHistogram's compressed V2 encoding; null "
        "without calls",
    )
    peak_target_rss_bytes: int | None = Field(ge=0, description="the highest target RSS sampled")


class Criterion(Closed):
    """One criterion."""

    name: str = Field(description="what is judged")
    threshold: str = Field(description="the rule, e.g. `≤ 1000 ms`")
    measured: float | str | bool | None = Field(description="the measured value; null when not measured")
    unit: str | None = Field(
        description="the unit of a numeric `measured`: `ms`, `fraction`, `bytes`, `calls`, `findings`, `tasks`; null "
        "for text"
    )
    threshold_value: float | MISSING | None = Field(
        MISSING,
        description="the threshold's number in `unit` (the reports show `measured` in the same display unit)",
    )
    passed: bool | None = Field(
        description="true/false; null when it could not be measured (it then neither passes nor fails the run)"
    )
    detail: str = Field(description="where the value comes from")


class Verdict(Closed):
    """PASS or FAIL, with every criterion and its measured value."""

    status: Literal["PASS", "FAIL"] = Field(
        description="PASS only when every measured criterion passed and the consistency checks passed"
    )
    criteria: list[Criterion] = Field(description="the criteria, in a fixed order")


class Check(Closed):
    """One check."""

    name: str = Field(description="the check")
    passed: bool = Field(description="it held")
    detail: str = Field(description="what was compared, and the first violations")


class Consistency(Closed):
    """The consistency checks run on this report."""

    passed: bool = Field(description="every check passed")
    checks: list[Check] = Field(description="one entry per check")


class Report(Closed):
    """A `bemcp stress` report."""

    # The JSON Schema form of the PASS rule below.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "properties": {"verdict": {"properties": {"status": {"const": "PASS"}}, "required": ["status"]}},
                "required": ["verdict", "consistency"],
            },
            "then": {"properties": {"consistency": {"properties": {"passed": {"const": True}}}}},
        }
    )

    schema_version: int = Field(ge=1, description="the schema version: 1", json_schema_extra={"const": 1})
    tool: ToolInfo = Field(description=ToolInfo.__doc__)
    run: Run = Field(description=Run.__doc__)
    target: Target = Field(description=Target.__doc__)
    environment: Environment = Field(description=Environment.__doc__)
    thresholds: Thresholds = Field(description=Thresholds.__doc__)
    load: Load | MISSING = Field(MISSING, description=Load.__doc__)
    phases: Phases = Field(description=Phases.__doc__)
    timeseries: list[Bucket] = Field(description="One bucket per `run.timeseries_interval_s` over the whole run.")
    target_samples: list[TargetSample] = Field(description="Target-side samples over the run (every 0.5 to 1 s).")
    protection_events: ProtectionEvents = Field(description=ProtectionEvents.__doc__)
    limits: list[Limit] = Field(description="The limits the run discovered.")
    findings: list[Finding] = Field(description="What the run noticed, worst first.")
    summary: Summary = Field(description=Summary.__doc__)
    verdict: Verdict = Field(description=Verdict.__doc__)
    consistency: Consistency = Field(description=Consistency.__doc__)

    @field_validator("schema_version")
    @classmethod
    def _supported(cls, version: int) -> int:
        if version != SCHEMA_VERSION:
            raise PydanticCustomError(
                "schema_version",
                "{version} is not supported (this tester reads version {supported})",
                {"version": version, "supported": SCHEMA_VERSION},
            )
        return version

    @model_validator(mode="after")
    def _pass_needs_consistency(self) -> Report:
        if self.verdict.status == "PASS" and not self.consistency.passed:
            raise field_rule("verdict.status", "PASS although the consistency checks failed")
        return self


# Filled in last by `finalize`: a report under construction may lack them.
RESULT_FIELDS: tuple[str, ...] = ("consistency", "verdict")

__all__ = [
    "SCHEMA_VERSION",
    "Bucket",
    "Check",
    "Consistency",
    "Criterion",
    "Death",
    "Environment",
    "Finding",
    "Latency",
    "Limit",
    "Load",
    "Outcomes",
    "Phase",
    "Phases",
    "ProtectionEvents",
    "Report",
    "ReportData",
    "Run",
    "Step",
    "Summary",
    "Target",
    "TargetSample",
    "Thresholds",
    "ToolInfo",
    "Verdict",
]
