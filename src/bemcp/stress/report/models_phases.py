"""The report.json models of the phases: their steps, the outcomes and latencies of calls, and each phase's results.

Every model is strict (a `true` is not a count, `"7"` is not a number) and rejects NaN and infinities; objects are
closed unless they say otherwise, so a typo in the runner cannot pass.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import MISSING, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

PhaseName = Literal["tsunami", "tasks", "avalanche", "chaos", "rate", "soak"]
ErrorKind = Literal["tool_error", "overload", "protocol_error", "timeout", "transport_error"]


class Closed(BaseModel):
    """An object whose fields are all listed: an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Open(BaseModel):
    """An object that may carry more keys than it lists (metrics scraped from the target)."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


def field_rule(field: str, message: str) -> PydanticCustomError:
    """A rule across fields, reported at `field` of the object that broke it."""
    return PydanticCustomError("field_rule", message, {"field": field})


_MS = "milliseconds, from the intended send time (coordinated-omission safe); every outcome counts"


class Latency(Closed):
    """Latency percentiles of the calls (HdrHistogram, 3 significant digits)."""

    p50: float = Field(ge=0, description=f"50th percentile, {_MS}")
    p90: float = Field(ge=0, description=f"90th percentile, {_MS}")
    p99: float = Field(ge=0, description=f"99th percentile, {_MS}")
    p999: float = Field(ge=0, description=f"99.9th percentile, {_MS}")
    max: float = Field(ge=0, description=f"the slowest call, {_MS}")
    mean: float = Field(ge=0, description=f"the mean, {_MS}")


LATENCY_DOC = Latency.__doc__ or ""


def _ended(outcome: str, meaning: str) -> str:
    return f"calls that ended as {outcome}: {meaning}"


class Outcomes(Closed):
    """Calls by outcome: each call ends in exactly one."""

    ok: int = Field(ge=0, description=_ended("ok", "a result without isError"))
    tool_error: int = Field(
        ge=0, description=_ended("tool_error", "a result with isError: the server answered, the tool failed")
    )
    overload: int = Field(
        ge=0,
        description=_ended("overload", "the documented overload refusal (-32050, HTTP 503/429): a clean rejection"),
    )
    protocol_error: int = Field(
        ge=0,
        description=_ended(
            "protocol_error",
            "any other JSON-RPC error, or an answer that is not the call's (another id: `wrong_id`; the wrong kind "
            "of result for the method: `wrong_result`)",
        ),
    )
    timeout: int = Field(ge=0, description=_ended("timeout", "no answer within the call timeout"))
    transport_error: int = Field(
        ge=0,
        description=_ended(
            "transport_error", "connection refused or reset, malformed HTTP, EOF, an unparseable answer"
        ),
    )


class KindStats(Closed):
    """One operation kind within a step."""

    calls: int = Field(ge=0, description="calls of this kind")
    outcomes: Outcomes = Field(description="calls of this kind by outcome; they sum to `calls`")
    latency_ms: Latency = Field(description=LATENCY_DOC)


def _needs(model: str, field: str) -> dict[str, Any]:
    """The JSON Schema form of a rule the step's validator checks: a `model` step must carry `field`."""
    return {
        "if": {"properties": {"model": {"const": model}}, "required": ["model"]},
        "then": {"properties": {field: {"not": {"type": "null"}}}},
    }


class Step(Closed):
    """One load step: a fixed level held for `duration_s`."""

    model_config = ConfigDict(
        json_schema_extra={"allOf": [_needs("closed", "concurrency"), _needs("open", "offered_rate")]}
    )

    level: float = Field(ge=0, description="the step's level, in the phase's `level_unit`")
    model: Literal["closed", "open"] = Field(
        description="closed: N callers each with one call outstanding; open: calls at a fixed arrival rate, "
        "whatever the answers do"
    )
    concurrency: int | None = Field(
        ge=1, description="closed model: the number of callers (required); open model: null"
    )
    offered_rate: float | None = Field(
        ge=0, description="open model: the calls/s the tester meant to send (required); closed model: null"
    )
    duration_s: float = Field(ge=0, description="seconds the step ran (first send to last answer or cut-off)")
    calls: int = Field(ge=0, description="calls issued in the step; each ends in exactly one outcome")
    outcomes: Outcomes = Field(description="calls by outcome; they sum to `calls`")
    throughput: float = Field(ge=0, description="ok calls per second: outcomes.ok / duration_s")
    achieved_rate: float = Field(ge=0, description="answered calls per second, any outcome: calls / duration_s")
    latency_ms: Latency = Field(description=LATENCY_DOC)
    latency_hdr: str | MISSING | None = Field(
        MISSING,
        description="the same latencies in microseconds, in HdrHistogram's compressed V2 encoding (base64 "
        "`HISTF…`) that any HdrHistogram library decodes; null without calls",
    )
    client_cpu_percent: float | None = Field(
        ge=0, description="the load generator's CPU in the step, % of one core (--workers: the busiest process)"
    )
    client_bound: bool = Field(
        description="true when client_cpu_percent ≥ 90: the tester, not the target, may have been the limit"
    )
    sent_late: int | MISSING | None = Field(
        MISSING,
        ge=0,
        description="open model: calls the sender put out more than 10 ms after their intended send time (its own "
        "lag, not a wait for a free connection); closed model: null",
    )
    sender_behind: bool | MISSING = Field(
        MISSING,
        description="open model: more than 5% of the calls were sent late, so less than the offered rate reached the "
        "target: the tester, like a client-bound step, may have been the limit",
    )
    kinds: dict[Annotated[str, Field(description="kind")], KindStats] | MISSING = Field(
        MISSING,
        description="per operation kind (a tool name, `rpc:<method>` for protocol-method load, or chaos:…): its "
        "calls, outcomes and latency",
    )
    details: (
        dict[Annotated[str, Field(description="outcome:detail")], Annotated[int, Field(ge=0, description="calls")]]
        | MISSING
    ) = Field(
        MISSING,
        description="calls by outcome detail, as `outcome:detail` (e.g. `overload:queue_timeout`, "
        "`protocol_error:-32602`)",
    )
    violations: (
        dict[Annotated[str, Field(description="kind")], Annotated[int, Field(ge=1, description="answers (or lines)")]]
        | MISSING
    ) = Field(
        MISSING,
        description="what the server sent in the step that no call could carry, by kind: `unknown_id` (an answer to "
        "an id never sent), `duplicate` (a second answer to one request), `unsolicited` (an HTTP response with no "
        "request outstanding), `stray_output` (a stdout line that is not JSON-RPC); none is counted as a call, so "
        "they stand beside `calls`; absent when none",
    )

    @model_validator(mode="after")
    def _model_needs_its_level(self) -> Step:
        if self.model == "closed" and self.concurrency is None:
            raise field_rule("concurrency", "a closed-model step needs its concurrency")
        if self.model == "open" and self.offered_rate is None:
            raise field_rule("offered_rate", "an open-model step needs its offered rate")
        return self


class TsunamiResults(Closed):
    """Results of the tsunami phase."""

    max_sustainable_concurrency: float | None = Field(
        ge=0,
        description="the highest concurrency whose step met the SLO and the error budget; null if even the start "
        "level did not",
    )
    first_bad_concurrency: float | MISSING | None = Field(
        MISSING,
        ge=0,
        description="the lowest concurrency whose step broke the SLO or the error budget; null if none did",
    )
    stop_reason: str | MISSING = Field(
        MISSING, description="why the ramp stopped (e.g. `resolution reached`, `max level`, `target died`)"
    )


class AvalancheResults(Closed):
    """Results of the avalanche phase."""

    largest_accepted_mb: float | None = Field(ge=0, description="the largest allocation the server accepted, MB")
    rejected_above_mb: float | None = Field(
        ge=0, description="the smallest allocation the server refused, MB; null if it refused none"
    )
    rss_before_bytes: int | MISSING | None = Field(MISSING, ge=0, description="target RSS before the phase")
    rss_peak_bytes: int | MISSING | None = Field(
        MISSING, ge=0, description="the highest target RSS seen during the phase"
    )
    rss_after_bytes: int | None = Field(ge=0, description="target RSS after the phase settled")
    alive_after: bool | MISSING = Field(MISSING, description="the target answered after the phase")


class ChaosResults(Closed):
    """Results of the chaos phase."""

    survived: bool = Field(description="the target was alive and answering at the end of the phase")
    answered_all: bool = Field(
        description="every chaos operation got an answer (no timeout on a call the server should have answered)"
    )
    unanswered: int | MISSING = Field(MISSING, ge=0, description="operations that got no answer")
    operations: (
        dict[Annotated[str, Field(description="kind")], Annotated[int, Field(ge=0, description="operations")]] | MISSING
    ) = Field(MISSING, description="operations sent, by kind")


class RateResults(Closed):
    """Results of the rate phase."""

    saturation_rate: float | None = Field(
        ge=0,
        description="the first offered rate (calls/s) that failed: achieved fell short of offered, or p99, errors or "
        "overloads passed the thresholds; null if no step failed",
    )
    max_good_rate: float | MISSING | None = Field(
        MISSING,
        ge=0,
        description="the highest rate the target kept up with: the highest offered rate, below the saturation rate, "
        "whose step kept up within the SLO and budgets",
    )
    sender_behind_rates: list[Annotated[float, Field(ge=0, description="calls/s")]] | MISSING = Field(
        MISSING, description="offered rates whose step's sender fell behind its schedule"
    )


class SoakResults(Closed):
    """Results of the soak phase."""

    rss_slope_bytes_per_s: float | None = Field(
        description="least-squares slope of target RSS over the phase, bytes/s; null without RSS samples"
    )
    leak_verdict: Literal["no_leak", "possible_leak", "leak", "inconclusive"] = Field(
        description="`leak`: RSS grew from every quarter of the soak to the next, at θ or more over the soak and over "
        "its second half; `possible_leak`: it still grew at θ/2 or more over the second half, not steadily; "
        "`no_leak`: it levelled off, shrank or grew slower; `inconclusive`: too few RSS samples (see *The leak "
        "verdict* below)"
    )
    rss_samples: int | MISSING = Field(MISSING, ge=0, description="RSS samples the verdict was drawn from")
    leak_reason: str | MISSING = Field(MISSING, description="one sentence: why the verdict")
    leak_threshold_bytes_per_s: float | MISSING = Field(
        MISSING,
        ge=0,
        description="θ = max(1 MiB/min, 1% of the median RSS per minute): the growth that counts as a leak",
    )
    rss_late_growth_bytes_per_s: float | MISSING | None = Field(
        MISSING,
        description="RSS growth over the soak's second half (median of its last quarter minus its second)",
    )
    rss_quarter_medians_bytes: list[Annotated[int, Field(ge=0, description="bytes")]] | MISSING = Field(
        MISSING, description="the median RSS of each quarter of the soak, in order"
    )


_COUNT = Annotated[int, Field(ge=0, description="tasks")]
_REASONS = "by reason"


class TaskPercentiles(Closed):
    """p50 and p99, exact (nearest rank), in milliseconds."""

    p50: float = Field(ge=0, description="the median, ms")
    p99: float = Field(ge=0, description="the 99th percentile, ms")


class TasksStep(Closed):
    """One step of the tasks phase: `level` tasks created at once and followed to their end."""

    level: int = Field(ge=1, description="the tasks asked for at once")
    duration_s: float = Field(
        ge=0, description="seconds from the first creation to the last task's end (or the deadline)"
    )
    created: int = Field(
        ge=0,
        description="creations that made a task (a CreateTaskResult with its id); every creation is one of created, "
        "refused, create_errors, sync_results, which sum to `level`",
    )
    refused: int = Field(
        ge=0, description="creations refused with the documented overload error (-32050, e.g. `task_limit`): not a loss"
    )
    refusal_reasons: dict[Annotated[str, Field(description="reason")], _COUNT] = Field(
        description=f"refusals {_REASONS} (`data.reason`: task_limit, concurrency_limit, …)"
    )
    create_errors: int = Field(ge=0, description="creations that got any other error, or no answer")
    sync_results: int = Field(ge=0, description="creations the server answered at once with a plain result (no task)")
    completed: int = Field(ge=0, description="tasks that ended completed")
    failed: int = Field(ge=0, description="tasks that ended failed")
    cancelled: int = Field(ge=0, description="tasks that ended cancelled")
    unresolved: int = Field(
        ge=0,
        description="tasks the tester never saw end: their id stopped resolving (-32602), or the deadline passed; "
        "every created task is one of completed, failed, cancelled, unresolved, which sum to `created`",
    )
    lost: int = Field(
        ge=0,
        description="tasks lost: an id that stopped resolving before its TTL, a completed result that is not the "
        "task's own (or no CallToolResult), or a task that never ended before the deadline",
    )
    lost_reasons: dict[Annotated[str, Field(description="reason")], _COUNT] = Field(
        description="lost tasks by reason: `unknown_id`, `wrong_result`, `no_result`, `never_finished`"
    )
    failed_restarted: int = Field(ge=0, description="failed tasks whose error says the server restarted")
    asked: int = Field(ge=0, description="tasks that asked for input (input_required)")
    answers: int = Field(
        ge=0,
        description="input responses the server took (`tasks/update` on 2026-07-28, answers posted on the "
        "`tasks/result` stream on 2025-11-25)",
    )
    cancels_sent: int = Field(ge=0, description="tasks the tester cancelled (`tasks/cancel`)")
    cancels_won: int = Field(
        ge=0,
        description="of those, the ones that ended cancelled (the others finished first: completed with their own "
        "result is no loss)",
    )
    unrequested_cancels: int = Field(
        ge=0, description="tasks that ended cancelled though the tester never cancelled them"
    )
    requests: dict[Annotated[str, Field(description="method")], Annotated[int, Field(ge=0, description="requests")]] = (
        Field(description="requests sent, by method (tools/call, tasks/get, tasks/update, tasks/cancel, tasks/result)")
    )
    request_errors: int = Field(
        ge=0, description="polls, updates and cancels that got no usable answer (retried: a restart, an overload)"
    )
    error_details: dict[
        Annotated[str, Field(description="outcome:detail")], Annotated[int, Field(ge=0, description="requests")]
    ] = Field(description="creation errors and request errors, as `outcome:detail`")
    create_ms: TaskPercentiles | None = Field(
        description="latency of the creations that made a task, ms; null without any"
    )
    complete_ms: TaskPercentiles | None = Field(
        description="from a creation's send to the poll that saw the task completed (so within a poll interval), ms, "
        "of the tasks completed with their own result; null without any"
    )
    store_tasks_before: int | None = Field(
        ge=0,
        description="the tasks the target says it has created since it started, before the step (BE-MCP's /metrics "
        '`bemcp_task_events_total{event="created"}`); null when it does not say',
    )
    store_tasks_after: int | None = Field(ge=0, description="the same after the step (the growth: the step's tasks)")
    store_bytes_before: int | None = Field(
        ge=0,
        description="bytes of the embedded server's task store (its SQLite files under the report folder) before "
        "the step; null for other targets",
    )
    store_bytes_after: int | None = Field(ge=0, description="the same after the step")
    unfinished_peak: int = Field(
        ge=0,
        description="the most of the step's tasks certainly unfinished at once: each was unfinished from its "
        "creation's answer to the send of the last poll that found it unfinished, and this is the most such spans "
        "that overlap (a lower bound of what the server held: a task that ended before its first poll counts for "
        "nothing)",
    )
    good: bool = Field(
        description="no task lost, create errors + failed (not for a restart) + unresolved within the error budget, "
        "and at most half of the creations refused"
    )

    @model_validator(mode="after")
    def _counts_add_up(self) -> TasksStep:
        if self.created + self.refused + self.create_errors + self.sync_results != self.level:
            raise field_rule("created", "created + refused + create_errors + sync_results must equal level")
        if self.completed + self.failed + self.cancelled + self.unresolved != self.created:
            raise field_rule("completed", "completed + failed + cancelled + unresolved must equal created")
        if sum(self.lost_reasons.values()) != self.lost:
            raise field_rule("lost", "lost must be the sum of lost_reasons")
        return self


class ChaosRestart(Closed):
    """`--chaos-restart`: the server child SIGKILLed while tasks ran, and what every task said afterwards."""

    performed: bool = Field(description="the kill happened (false: see `reason`)")
    reason: str = Field(description="what was done, or why it was not")
    tasks: int = Field(ge=0, description="tasks of the round (a quarter with no work, finished before the kill)")
    lost: int = Field(
        ge=0,
        description="tasks lost: as in a step, plus a task that had ended before the kill and no longer shows the "
        "same end (or result) after it",
    )
    lost_reasons: dict[Annotated[str, Field(description="reason")], _COUNT] = Field(
        description="lost tasks by reason (`lost_after_restart`: ended before the kill, changed or gone after it)"
    )
    pid_before: int | MISSING = Field(MISSING, ge=1, description="the server's pid that was killed")
    pid_after: int | MISSING | None = Field(
        MISSING, ge=1, description="the restarted server's pid; null if it did not come back"
    )
    back_after_s: float | MISSING | None = Field(
        MISSING, ge=0, description="seconds from the kill until the new server answered /healthz and server_health"
    )
    ended_before_kill: int | MISSING = Field(MISSING, ge=0, description="tasks that had ended before the kill")
    running_at_kill: int | MISSING = Field(MISSING, ge=0, description="tasks with work in progress at the kill")
    rechecked: int | MISSING = Field(MISSING, ge=0, description="ended-before tasks looked up again after it")
    created: int | MISSING = Field(MISSING, ge=0, description="creations that made a task")
    completed: int | MISSING = Field(MISSING, ge=0, description="tasks that ended completed")
    failed: int | MISSING = Field(MISSING, ge=0, description="tasks that ended failed")
    failed_restarted: int | MISSING = Field(
        MISSING, ge=0, description="failed tasks whose error says the server restarted (not a loss)"
    )
    cancelled: int | MISSING = Field(MISSING, ge=0, description="tasks that ended cancelled")
    unresolved: int | MISSING = Field(MISSING, ge=0, description="tasks never seen to end")
    answers: int | MISSING = Field(MISSING, ge=0, description="input responses the server took")
    request_errors: int | MISSING = Field(
        MISSING, ge=0, description="requests without a usable answer (the restart window: retried)"
    )
    complete_ms: TaskPercentiles | MISSING | None = Field(
        MISSING, description="creation to completion of the round's tasks completed with their own result, ms"
    )
    duration_s: float | MISSING = Field(MISSING, ge=0, description="seconds the round took")


class TasksResults(Closed):
    """Results of the tasks phase."""

    max_concurrent_tasks: int | None = Field(
        ge=0,
        description="the highest step (tasks at once) that was good: none lost, errors within the budget, most "
        "creations accepted; null if even the first was not (or the phase did not run)",
    )
    lost: int = Field(ge=0, description="tasks lost over every step and the chaos restart: any is a FAIL")
    steps: list[TasksStep] = Field(description="the steps, in the order they ran")
    server_max_tasks: int | MISSING | None = Field(
        MISSING,
        ge=1,
        description="the server's own limit of unfinished tasks, as its task_limit refusals (`data.limit`) or its "
        "health (BE-MCP: `tasks.max_tasks`) state it; a step's `unfinished_peak` above it is a limit not kept (a "
        "warning); null when it does not say",
    )
    tool: str | MISSING = Field(MISSING, description="the task-capable tool called (BE-MCP: `task_job`)")
    protocol: Literal["2026-07-28", "2025-11-25"] | MISSING = Field(
        MISSING,
        description="`2026-07-28`: the io.modelcontextprotocol/tasks extension (tasks/get, tasks/update, "
        "tasks/cancel); `2025-11-25`: params.task, tasks/get, tasks/result, tasks/cancel",
    )
    task_seconds: float | MISSING = Field(MISSING, ge=0, description="the work of each task_job, seconds")
    ask_fraction: float | MISSING = Field(
        MISSING,
        ge=0,
        le=1,
        description="the seeded share of tasks that ask a question (0 when they cannot be answered)",
    )
    cancel_fraction: float | MISSING = Field(
        MISSING, ge=0, le=1, description="the seeded share of tasks the tester cancels"
    )
    results_checked: bool | MISSING = Field(
        MISSING,
        description="each result was checked against the task's own token (task_job); false: only that a "
        "CallToolResult came",
    )
    first_bad_level: int | MISSING | None = Field(
        MISSING, ge=1, description="the step that stopped the ramp; null if none did"
    )
    stop_reason: str | MISSING = Field(MISSING, description="why the ramp stopped")
    calls: int | MISSING = Field(
        MISSING,
        ge=0,
        description="requests the phase sent (creations and the tasks methods); they are not steps' calls, so not in "
        "the summary or the time series",
    )
    chaos_restart: ChaosRestart | MISSING = Field(MISSING, description=ChaosRestart.__doc__)

    @model_validator(mode="after")
    def _lost_adds_up(self) -> TasksResults:
        restart = self.chaos_restart.lost if isinstance(self.chaos_restart, ChaosRestart) else 0
        if sum(s.lost for s in self.steps) + restart != self.lost:
            raise field_rule("lost", "lost must be the sum of the steps' and the chaos restart's")
        return self


ResultsT = TypeVar("ResultsT", TsunamiResults, TasksResults, AvalancheResults, ChaosResults, RateResults, SoakResults)


class Phase(Closed, Generic[ResultsT]):
    """One phase (`tsunami`, `tasks`, `avalanche`, `chaos`, `rate`, `soak`); present when it ran."""

    status: Literal["completed", "aborted", "skipped"] = Field(
        description="completed; aborted (stopped early, e.g. the target died); skipped (could not run, e.g. no "
        "suitable tool)"
    )
    started_at: str = Field(description="UTC start time, ISO 8601")
    offset_s: float = Field(
        ge=0, description="seconds from the run start to the phase start (the clock of timeseries[].t)"
    )
    duration_s: float = Field(ge=0, description="seconds the phase took")
    level_unit: str = Field(description="what a step's `level` counts: `concurrency`, `calls/s`, `MB` or `tasks`")
    steps: list[Step] = Field(
        description="the load steps, in the order they ran (the tasks phase has none: its steps are in its results)"
    )
    results: ResultsT = Field(description="what the phase found")
    notes: list[Annotated[str, Field(description="a remark")]] | MISSING = Field(
        MISSING, description="free-text remarks on the phase (why it stopped, what was skipped)"
    )


class Phases(Closed):
    """The phases that ran, by name."""

    tsunami: Phase[TsunamiResults] | MISSING = Field(
        MISSING,
        description="The tsunami phase: closed-model concurrency ramp: exponential growth, then bisection to the "
        "maximum sustainable concurrency.",
    )
    tasks: Phase[TasksResults] | MISSING = Field(
        MISSING,
        description="The tasks phase: N concurrent MCP tasks (create, poll, answer, cancel), N doubling; nothing "
        "may be lost.",
    )
    avalanche: Phase[AvalancheResults] | MISSING = Field(
        MISSING,
        description="The avalanche phase: growing allocate_memory sizes up to past the server's memory budget.",
    )
    chaos: Phase[ChaosResults] | MISSING = Field(
        MISSING,
        description="The chaos phase: a seeded random mix of heavy, hanging, malformed, oversized and disconnected "
        "calls.",
    )
    rate: Phase[RateResults] | MISSING = Field(
        MISSING,
        description="The rate phase: open model: constant-arrival-rate steps, latency from the intended send time.",
    )
    soak: Phase[SoakResults] | MISSING = Field(
        MISSING,
        description="The soak phase: a fixed load held for a duration; the RSS slope gives a leak verdict.",
    )
