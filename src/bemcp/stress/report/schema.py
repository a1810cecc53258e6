"""The report.json schema (version 1): one spec tree drives both the validator and `docs/report-schema.md`.

There is no `jsonschema` package here, and a hand-written tree of small spec objects is shorter than a JSON Schema
plus an interpreter for it. Each spec carries its meaning, so the field reference in the docs is generated from the
same tree the validator walks and the two cannot drift apart (a test checks the doc is current).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bemcp.stress.model import OUTCOMES

SCHEMA_VERSION = 1
PHASE_NAMES: tuple[str, ...] = ("tsunami", "avalanche", "chaos", "rate", "soak")
ERROR_KINDS: tuple[str, ...] = tuple(o for o in OUTCOMES if o != "ok")


class Spec:
    """A JSON value's expected shape and its meaning."""

    doc: str

    def type_name(self) -> str:
        raise NotImplementedError

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        raise NotImplementedError


def _got(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class Int(Spec):
    doc: str
    min: int | None = None

    def type_name(self) -> str:
        return "integer" if self.min is None else f"integer ≥ {self.min}"

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        # bool is an int subclass in Python, but `true` is not a count in JSON.
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected integer, got {_got(value)}")
        elif self.min is not None and value < self.min:
            problems.append(f"{path}: {value} is below the minimum {self.min}")


@dataclass(frozen=True, slots=True)
class Num(Spec):
    doc: str
    min: float | None = None
    max: float | None = None

    def type_name(self) -> str:
        if self.min is not None and self.max is not None:
            return f"number in [{self.min:g}, {self.max:g}]"
        return "number" if self.min is None else f"number ≥ {self.min:g}"

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            problems.append(f"{path}: expected number, got {_got(value)}")
        elif not math.isfinite(value):
            problems.append(f"{path}: {value} is not a finite number")
        elif self.min is not None and value < self.min:
            problems.append(f"{path}: {value} is below the minimum {self.min:g}")
        elif self.max is not None and value > self.max:
            problems.append(f"{path}: {value} is above the maximum {self.max:g}")


@dataclass(frozen=True, slots=True)
class Str(Spec):
    doc: str
    enum: tuple[str, ...] | None = None

    def type_name(self) -> str:
        return "string" if self.enum is None else " \\| ".join(f'`"{e}"`' for e in self.enum)

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        if not isinstance(value, str):
            problems.append(f"{path}: expected string, got {_got(value)}")
        elif self.enum is not None and value not in self.enum:
            problems.append(f"{path}: {value!r} is not one of {', '.join(self.enum)}")


@dataclass(frozen=True, slots=True)
class Bool(Spec):
    doc: str

    def type_name(self) -> str:
        return "boolean"

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        if not isinstance(value, bool):
            problems.append(f"{path}: expected boolean, got {_got(value)}")


@dataclass(frozen=True, slots=True)
class AnyValue(Spec):
    """A free-form value (server info, finding data): documented, not checked."""

    doc: str

    def type_name(self) -> str:
        return "any"

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        return


@dataclass(frozen=True, slots=True)
class OneOf(Spec):
    """A value of any of several scalar shapes, e.g. a criterion's measured value."""

    doc: str
    options: tuple[Spec, ...]

    def type_name(self) -> str:
        return " \\| ".join(o.type_name() for o in self.options)

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        for option in self.options:
            attempt: list[str] = []
            option.check(value, path, attempt)
            if not attempt:
                return
        expected = " or ".join(o.type_name() for o in self.options)
        problems.append(f"{path}: expected {expected}, got {_got(value)}")


@dataclass(frozen=True, slots=True)
class Nullable(Spec):
    inner: Spec

    @property
    def doc(self) -> str:  # type: ignore[override]
        return self.inner.doc

    def type_name(self) -> str:
        return f"{self.inner.type_name()} \\| null"

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        if value is not None:
            self.inner.check(value, path, problems)


@dataclass(frozen=True, slots=True)
class List(Spec):
    doc: str
    item: Spec

    def type_name(self) -> str:
        return "array"

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        if not isinstance(value, list):
            problems.append(f"{path}: expected array, got {_got(value)}")
            return
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]", problems)


@dataclass(frozen=True, slots=True)
class Map(Spec):
    """An object used as a dictionary: free keys (or keys from `keys`) to values of one shape."""

    doc: str
    value: Spec
    keys: tuple[str, ...] | None = None
    key_doc: str = "name"

    def type_name(self) -> str:
        return "object"

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected object, got {_got(value)}")
            return
        for key, item in value.items():
            if self.keys is not None and key not in self.keys:
                problems.append(f"{path}: unknown key {key!r} (expected one of {', '.join(self.keys)})")
                continue
            self.value.check(item, f"{path}.{key}", problems)


@dataclass(frozen=True, slots=True)
class Field:
    spec: Spec
    required: bool = True


@dataclass(frozen=True, slots=True)
class Obj(Spec):
    """An object with named fields. Unknown keys are errors unless `open`: a typo in the runner must not pass."""

    doc: str
    fields: Mapping[str, Field] = field(default_factory=dict)
    open: bool = False

    def type_name(self) -> str:
        return "object"

    def check(self, value: Any, path: str, problems: list[str]) -> None:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected object, got {_got(value)}")
            return
        for name, f in self.fields.items():
            if name in value:
                f.spec.check(value[name], f"{path}.{name}" if path else name, problems)
            elif f.required:
                problems.append(f"{path + '.' if path else ''}{name}: missing")
        if not self.open:
            for name in value:
                if name not in self.fields:
                    problems.append(f"{path + '.' if path else ''}{name}: unknown field")


def req(spec: Spec) -> Field:
    return Field(spec, True)


def opt(spec: Spec) -> Field:
    return Field(spec, False)


def _latency() -> Obj:
    ms = "milliseconds, from the intended send time (coordinated-omission safe); every outcome counts"
    return Obj(
        "Latency percentiles of the calls (HdrHistogram, 3 significant digits).",
        {
            "p50": req(Num(f"50th percentile, {ms}", min=0)),
            "p90": req(Num(f"90th percentile, {ms}", min=0)),
            "p99": req(Num(f"99th percentile, {ms}", min=0)),
            "p999": req(Num(f"99.9th percentile, {ms}", min=0)),
            "max": req(Num(f"the slowest call, {ms}", min=0)),
            "mean": req(Num(f"the mean, {ms}", min=0)),
        },
    )


def _outcomes(doc: str) -> Obj:
    meanings = {
        "ok": "a result without isError",
        "tool_error": "a result with isError: the server answered, the tool failed",
        "overload": "the documented overload refusal (-32050, HTTP 503/429): a clean rejection",
        "protocol_error": "any other JSON-RPC error, or an answer that is not the call's (another id: "
        "`wrong_id`; the wrong kind of result for the method: `wrong_result`)",
        "timeout": "no answer within the call timeout",
        "transport_error": "connection refused or reset, malformed HTTP, EOF, an unparseable answer",
    }
    return Obj(doc, {o: req(Int(f"calls that ended as {o}: {meanings[o]}", min=0)) for o in OUTCOMES})


def _kind_stats() -> Obj:
    return Obj(
        "One operation kind within a step.",
        {
            "calls": req(Int("calls of this kind", min=0)),
            "outcomes": req(_outcomes("calls of this kind by outcome; they sum to `calls`")),
            "latency_ms": req(_latency()),
        },
    )


def _step() -> Obj:
    return Obj(
        "One load step: a fixed level held for `duration_s`.",
        {
            "level": req(Num("the step's level, in the phase's `level_unit`", min=0)),
            "model": req(
                Str(
                    "closed: N callers each with one call outstanding; open: calls at a fixed arrival "
                    "rate, whatever the answers do",
                    enum=("closed", "open"),
                )
            ),
            "concurrency": req(
                Nullable(Int("closed model: the number of callers (required); open model: null", min=1))
            ),
            "offered_rate": req(
                Nullable(Num("open model: the calls/s the tester meant to send (required); closed model: null", min=0))
            ),
            "duration_s": req(Num("seconds the step ran (first send to last answer or cut-off)", min=0)),
            "calls": req(Int("calls issued in the step; each ends in exactly one outcome", min=0)),
            "outcomes": req(_outcomes("calls by outcome; they sum to `calls`")),
            "throughput": req(Num("ok calls per second: outcomes.ok / duration_s", min=0)),
            "achieved_rate": req(Num("answered calls per second, any outcome: calls / duration_s", min=0)),
            "latency_ms": req(_latency()),
            "latency_hdr": opt(
                Nullable(
                    Str(
                        "the same latencies in microseconds, in HdrHistogram's compressed V2 encoding (base64 "
                        "`HISTF…`) that any HdrHistogram library decodes; null without calls"
                    )
                )
            ),
            "client_cpu_percent": req(
                Nullable(
                    Num(
                        "the load generator's CPU in the step, % of one core (--workers: the busiest process)",
                        min=0,
                    )
                )
            ),
            "client_bound": req(
                Bool("true when client_cpu_percent ≥ 90: the tester, not the target, may have been the limit")
            ),
            "sent_late": opt(
                Nullable(
                    Int(
                        "open model: calls the sender put out more than 10 ms after their intended send time (its "
                        "own lag, not a wait for a free connection); closed model: null",
                        min=0,
                    )
                )
            ),
            "sender_behind": opt(
                Bool(
                    "open model: more than 5% of the calls were sent late, so less than the offered rate reached "
                    "the target: the tester, like a client-bound step, may have been the limit"
                )
            ),
            "kinds": opt(
                Map(
                    "per operation kind (a tool name, `rpc:<method>` for protocol-method load, or chaos:…): its "
                    "calls, outcomes and latency",
                    _kind_stats(),
                    key_doc="kind",
                )
            ),
            "details": opt(
                Map(
                    "calls by outcome detail, as `outcome:detail` (e.g. `overload:queue_timeout`, "
                    "`protocol_error:-32602`)",
                    Int("calls", min=0),
                    key_doc="outcome:detail",
                )
            ),
            "violations": opt(
                Map(
                    "what the server sent in the step that no call could carry, by kind: `unknown_id` (an "
                    "answer to an id never sent), `duplicate` (a second answer to one request), `unsolicited` "
                    "(an HTTP response with no request outstanding), `stray_output` (a stdout line that is not "
                    "JSON-RPC); none is counted as a call, so they stand beside `calls`; absent when none",
                    Int("answers (or lines)", min=1),
                    key_doc="kind",
                )
            ),
        },
    )


def _load() -> Obj:
    def counts(what: str) -> List:
        return List(
            f"every {what} the run called, most calls first",
            Obj(
                f"One {what}.",
                {
                    "name": req(Str(f"the {what}")),
                    "calls": req(Int("calls answered in the steps of every phase", min=0)),
                    "share": req(Num(f"calls / the run's {what} calls", min=0, max=1)),
                },
            ),
        )

    return Obj(
        "What carried the load: the mix the load phases (tsunami, rate, soak) called, and every tool's share.",
        {
            "source": req(
                Str(
                    "`ranked`: the best-ranked of the target's own tools (never BE-MCP's built-in server_health); "
                    "`--tool`: the tools named; `protocol`: no tool could be called, so protocol methods",
                    enum=("ranked", "--tool", "protocol"),
                )
            ),
            "note": req(Str("one line: what carried the load and why")),
            "hint": req(Nullable(Str("`protocol`: the flags that would let tools be called; else null"))),
            "mix": req(
                List(
                    "the load phases' mix",
                    Obj(
                        "One entry of the mix.",
                        {
                            "name": req(Str("a tool name, or a protocol method")),
                            "kind": req(Str("tool or protocol method", enum=("tool", "method"))),
                            "weight": req(Num("the weight given (--tool NAME=WEIGHT; 1 otherwise)", min=0)),
                            "share": req(Num("its planned share of the load's calls", min=0, max=1)),
                            "arguments": req(
                                Str(
                                    "`generated` from the inputSchema (a pool of up to 32 sets made once per tool, "
                                    "within a budget; each call draws one), `fixed` by --args, `none`",
                                    enum=("generated", "fixed", "none"),
                                )
                            ),
                        },
                    ),
                )
            ),
            "tool_calls": req(Int("tools/call requests answered in the steps (chaos disconnects aside)", min=0)),
            "tools": req(counts("tool")),
            "method_calls": req(Int("protocol-method requests answered in the steps", min=0)),
            "methods": req(counts("protocol method")),
        },
    )


def _phase_results(name: str) -> Obj:
    results: dict[str, dict[str, Field]] = {
        "tsunami": {
            "max_sustainable_concurrency": req(
                Nullable(
                    Num(
                        "the highest concurrency whose step met the SLO and the error budget; null if even the start "
                        "level did not",
                        min=0,
                    )
                )
            ),
            "first_bad_concurrency": opt(
                Nullable(
                    Num("the lowest concurrency whose step broke the SLO or the error budget; null if none did", min=0)
                )
            ),
            "stop_reason": opt(Str("why the ramp stopped (e.g. `resolution reached`, `max level`, `target died`)")),
        },
        "avalanche": {
            "largest_accepted_mb": req(Nullable(Num("the largest allocation the server accepted, MB", min=0))),
            "rejected_above_mb": req(
                Nullable(Num("the smallest allocation the server refused, MB; null if it refused none", min=0))
            ),
            "rss_before_bytes": opt(Nullable(Int("target RSS before the phase", min=0))),
            "rss_peak_bytes": opt(Nullable(Int("the highest target RSS seen during the phase", min=0))),
            "rss_after_bytes": req(Nullable(Int("target RSS after the phase settled", min=0))),
            "alive_after": opt(Bool("the target answered after the phase")),
        },
        "chaos": {
            "survived": req(Bool("the target was alive and answering at the end of the phase")),
            "answered_all": req(
                Bool("every chaos operation got an answer (no timeout on a call the server should have answered)")
            ),
            "unanswered": opt(Int("operations that got no answer", min=0)),
            "operations": opt(Map("operations sent, by kind", Int("operations", min=0), key_doc="kind")),
        },
        "rate": {
            "saturation_rate": req(
                Nullable(
                    Num(
                        "the first offered rate (calls/s) that failed: achieved fell short of offered, or p99, "
                        "errors or overloads passed the thresholds; null if no step failed",
                        min=0,
                    )
                )
            ),
            "max_good_rate": opt(
                Nullable(
                    Num(
                        "the highest rate the target kept up with: the highest offered rate, below the saturation "
                        "rate, whose step kept up within the SLO and budgets",
                        min=0,
                    )
                )
            ),
            "sender_behind_rates": opt(
                List("offered rates whose step's sender fell behind its schedule", Num("calls/s", min=0))
            ),
        },
        "soak": {
            "rss_slope_bytes_per_s": req(
                Nullable(Num("least-squares slope of target RSS over the phase, bytes/s; null without RSS samples"))
            ),
            "leak_verdict": req(
                Str(
                    "`leak`: RSS grew from every quarter of the soak to the next, at θ or more over the soak and "
                    "over its second half; `possible_leak`: it still grew at θ/2 or more over the second half, "
                    "not steadily; `no_leak`: it levelled off, shrank or grew slower; `inconclusive`: too few RSS "
                    "samples (see *The leak verdict* below)",
                    enum=("no_leak", "possible_leak", "leak", "inconclusive"),
                )
            ),
            "rss_samples": opt(Int("RSS samples the verdict was drawn from", min=0)),
            "leak_reason": opt(Str("one sentence: why the verdict")),
            "leak_threshold_bytes_per_s": opt(
                Num("θ = max(1 MiB/min, 1% of the median RSS per minute): the growth that counts as a leak", min=0)
            ),
            "rss_late_growth_bytes_per_s": opt(
                Nullable(Num("RSS growth over the soak's second half (median of its last quarter minus its second)"))
            ),
            "rss_quarter_medians_bytes": opt(
                List("the median RSS of each quarter of the soak, in order", Int("bytes", min=0))
            ),
        },
    }
    return Obj(f"Results of the {name} phase.", results[name])


PHASE_PURPOSE: dict[str, str] = {
    "tsunami": "closed-model concurrency ramp: exponential growth, then bisection to the maximum sustainable "
    "concurrency",
    "avalanche": "growing allocate_memory sizes up to past the server's memory budget",
    "chaos": "a seeded random mix of heavy, hanging, malformed, oversized and disconnected calls",
    "rate": "open model: constant-arrival-rate steps, latency from the intended send time",
    "soak": "a fixed load held for a duration; the RSS slope gives a leak verdict",
}


def _phase(name: str) -> Obj:
    return Obj(
        f"The {name} phase: {PHASE_PURPOSE[name]}.",
        {
            "status": req(
                Str(
                    "completed; aborted (stopped early, e.g. the target died); skipped (could not "
                    "run, e.g. no suitable tool)",
                    enum=("completed", "aborted", "skipped"),
                )
            ),
            "started_at": req(Str("UTC start time, ISO 8601")),
            "offset_s": req(Num("seconds from the run start to the phase start (the clock of timeseries[].t)", min=0)),
            "duration_s": req(Num("seconds the phase took", min=0)),
            "level_unit": req(Str("what a step's `level` counts: `concurrency`, `calls/s` or `MB`")),
            "steps": req(List("the load steps, in the order they ran", _step())),
            "results": req(_phase_results(name)),
            "notes": opt(List("free-text remarks on the phase (why it stopped, what was skipped)", Str("a remark"))),
        },
    )


def report_spec() -> Obj:
    """The whole report.json tree."""
    thresholds = Obj(
        "The explicit thresholds the steps and the verdict are judged by.",
        {
            "slo_p99_ms": req(Num("--slo-p99-ms: the p99 latency a good step must not pass, ms", min=0)),
            "error_budget": req(
                Num(
                    "--error-budget: the fraction of calls that may end as protocol_error, timeout or transport_error",
                    min=0,
                    max=1,
                )
            ),
        },
    )
    death = Obj(
        "One time the target was found dead.",
        {
            "t": req(Nullable(Num("seconds from the run start", min=0))),
            "phase": req(Nullable(Str("the phase running then"))),
            "detail": req(Str("what was seen (exit code, connection refused, …)")),
        },
    )
    return Obj(
        "A `bemcp stress` report.",
        {
            "schema_version": req(Int("the schema version: 1", min=1)),
            "tool": req(
                Obj(
                    "The tester that wrote the report.",
                    {
                        "name": req(Str("`bemcp stress`")),
                        "version": req(Str("the bemcp package version")),
                    },
                )
            ),
            "run": req(
                Obj(
                    "How the run was made.",
                    {
                        "id": req(Str("a unique run id")),
                        "started_at": req(Str("UTC start time, ISO 8601")),
                        "finished_at": req(Str("UTC end time, ISO 8601")),
                        "duration_s": req(Num("seconds from start to end", min=0)),
                        "seed": req(
                            Int(
                                "the random seed (argument generation, the chaos mix): the same seed repeats "
                                "the same run"
                            )
                        ),
                        "profile": req(Str("the profile: quick, standard, extreme (or custom)")),
                        "phases": req(List("the phases asked for, in order", Str("a phase name", enum=PHASE_NAMES))),
                        "command": req(Str("the command line, shell-quoted")),
                        "workers": req(Int("load-generator processes (--workers)", min=1)),
                        "timeseries_interval_s": req(Num("the width of one timeseries bucket, seconds (1)", min=0)),
                    },
                )
            ),
            "target": req(
                Obj(
                    "The server under test.",
                    {
                        "spec": req(Str("the --target value as given")),
                        "kind": req(Str("how it was reached", enum=("embedded", "http", "stdio"))),
                        "revision": req(Nullable(Str("the MCP protocol revision spoken (2026-07-28 or 2025-11-25)"))),
                        "server_info": req(
                            Nullable(AnyValue("the server's self-description (name, version, …) as it sent it"))
                        ),
                        "pid": req(Nullable(Int("the target's process id when known", min=1))),
                        "tools_discovered": req(List("every tool tools/list returned", Str("a tool name"))),
                        "tools_used": req(List("the tools the load called", Str("a tool name"))),
                        "skipped_tools": req(
                            Map(
                                "tools never called, with the reason (destructiveHint, not "
                                "readOnlyHint without --allow-writes, no valid arguments within the generation "
                                "budget)",
                                Str("the reason"),
                                key_doc="tool",
                            )
                        ),
                        "memory_budget_bytes": req(
                            Nullable(
                                Int(
                                    "the target's own memory budget (BE-MCP: from "
                                    "/metrics or server_health); null when unknown",
                                    min=0,
                                )
                            )
                        ),
                        "alive_at_end": req(Bool("the target answered at the end of the run")),
                        "deaths": req(List("every time the target was found dead during the run", death)),
                        "error": opt(
                            Str(
                                "why the run could not use the target (unreachable, not speaking MCP, no usable "
                                "tools/list): every phase is then skipped and the verdict is FAIL; absent when it "
                                "could"
                            )
                        ),
                    },
                )
            ),
            "environment": req(
                Obj(
                    "Where the run happened.",
                    {
                        "hostname": req(Str("the host name")),
                        "os": req(Str("operating system and kernel")),
                        "python": req(Str("the tester's Python version")),
                        "cpu_count": req(Nullable(Int("logical CPUs", min=1))),
                        "memory_bytes": req(Nullable(Int("physical memory", min=0))),
                        "container_limit_bytes": req(
                            Nullable(Int("the cgroup memory limit, null when unlimited", min=0))
                        ),
                    },
                )
            ),
            "thresholds": req(thresholds),
            "load": opt(_load()),
            "phases": req(Obj("The phases that ran, by name.", {n: opt(_phase(n)) for n in PHASE_NAMES})),
            "timeseries": req(
                List(
                    "One bucket per `run.timeseries_interval_s` over the whole run.",
                    Obj(
                        "One time-series bucket.",
                        {
                            "t": req(Num("bucket start, seconds from the run start", min=0)),
                            "phase": opt(Nullable(Str("the phase running then"))),
                            "offered": req(Int("calls whose intended send time fell in the bucket", min=0)),
                            "achieved": req(Int("ok answers that arrived in the bucket", min=0)),
                            "errors": req(
                                Map(
                                    "non-ok answers that arrived in the bucket, by outcome (absent = 0)",
                                    Int("calls", min=0),
                                    keys=ERROR_KINDS,
                                    key_doc="outcome",
                                )
                            ),
                            "in_flight": req(Num("calls outstanding, sampled in the bucket", min=0)),
                            "p50_ms": req(
                                Nullable(Num("median latency of the calls answered in the bucket, ms", min=0))
                            ),
                            "p99_ms": req(Nullable(Num("p99 latency of the calls answered in the bucket, ms", min=0))),
                        },
                    ),
                )
            ),
            "target_samples": req(
                List(
                    "Target-side samples over the run (every 0.5 to 1 s).",
                    Obj(
                        "One target sample; more metrics may follow (open object).",
                        {
                            "t": req(Num("seconds from the run start", min=0)),
                            "source": req(
                                Str(
                                    "where it came from (`none`: nothing could be read)",
                                    enum=("metrics", "psutil", "none"),
                                )
                            ),
                            "rss_bytes": req(Nullable(Int("resident memory", min=0))),
                            "cpu_percent": req(Nullable(Num("CPU, percent of one core", min=0))),
                            "in_flight": opt(Nullable(Num("calls running (from /metrics)", min=0))),
                            "queued": opt(Nullable(Num("calls waiting for a slot (from /metrics)", min=0))),
                            "memory_level": opt(
                                Nullable(
                                    OneOf(
                                        "BE-MCP memory level: 0 normal … 3 critical, or its name",
                                        (Int("level", min=0), Str("level name")),
                                    )
                                )
                            ),
                        },
                        open=True,
                    ),
                )
            ),
            "protection_events": req(
                Obj(
                    "What the target's protections did (BE-MCP /metrics, else the overload answers the tester saw).",
                    {
                        "source": req(
                            Str(
                                "`metrics` (the target's counters), `client` (from answers) or `none`",
                                enum=("metrics", "client", "none"),
                            )
                        ),
                        "rejected": req(
                            Map(
                                "calls refused, by reason (concurrency_limit, queue_timeout, "
                                "memory_pressure, draining, …)",
                                Int("calls", min=0),
                                key_doc="reason",
                            )
                        ),
                        "watchdog": req(
                            Map("watchdog events, by kind (stall, deadline, …)", Int("events", min=0), key_doc="kind")
                        ),
                        "memory_levels_seen": req(
                            List("memory levels the target reported, in order of first sight", Str("a level name"))
                        ),
                    },
                )
            ),
            "limits": req(
                List(
                    "The limits the run discovered.",
                    Obj(
                        "One discovered limit.",
                        {
                            "name": req(Str("what the limit is, e.g. `max sustainable concurrency`")),
                            "value": req(Nullable(Num("its value; null when the run could not find it"))),
                            "unit": req(Str("the unit of `value`")),
                            "phase": req(Str("the phase that found it")),
                            "confidence": req(
                                Str(
                                    "high: measured directly at a resolved step; medium: bracketed or "
                                    "client-bound; low: extrapolated or noisy",
                                    enum=("high", "medium", "low"),
                                )
                            ),
                            "how": req(Str("how it was found, in one sentence")),
                        },
                    ),
                )
            ),
            "findings": req(
                List(
                    "What the run noticed, worst first.",
                    Obj(
                        "One finding.",
                        {
                            "severity": req(Str("how bad", enum=("info", "warning", "critical"))),
                            "phase": req(Str("the phase (or `run`)")),
                            "message": req(Str("one sentence")),
                            "data": req(AnyValue("the numbers behind it")),
                        },
                    ),
                )
            ),
            "summary": req(
                Obj(
                    "Whole-run numbers; see the definitions below the table.",
                    {
                        "total_calls": req(Int("calls over every step of every phase", min=0)),
                        "outcomes": req(_outcomes("all step calls by outcome")),
                        "ok": req(Int("= outcomes.ok", min=0)),
                        "errors": req(
                            Int("protocol_error + timeout + transport_error (the error budget's errors)", min=0)
                        ),
                        "error_rate": req(Num("errors / total_calls (0 without calls)", min=0, max=1)),
                        "time_under_load_s": req(Num("the sum of step durations", min=0)),
                        "peak_throughput": req(Num("the highest ok calls/s in one timeseries bucket", min=0)),
                        "sustained_throughput": req(
                            Num("the highest ok calls/s a step held over its whole duration", min=0)
                        ),
                        "average_throughput": req(Num("all ok calls / time_under_load_s", min=0)),
                        "latency_ms": req(Nullable(_latency())),
                        "latency_hdr": opt(
                            Nullable(
                                Str(
                                    "the whole run's latencies (every step), µs, in HdrHistogram's compressed V2 "
                                    "encoding; null without calls"
                                )
                            )
                        ),
                        "peak_target_rss_bytes": req(Nullable(Int("the highest target RSS sampled", min=0))),
                    },
                )
            ),
            "verdict": req(
                Obj(
                    "PASS or FAIL, with every criterion and its measured value.",
                    {
                        "status": req(
                            Str(
                                "PASS only when every measured criterion passed and the consistency checks passed",
                                enum=("PASS", "FAIL"),
                            )
                        ),
                        "criteria": req(
                            List(
                                "the criteria, in a fixed order",
                                Obj(
                                    "One criterion.",
                                    {
                                        "name": req(Str("what is judged")),
                                        "threshold": req(Str("the rule, e.g. `≤ 1000 ms`")),
                                        "measured": req(
                                            Nullable(
                                                OneOf(
                                                    "the measured value; null when not measured",
                                                    (Num("a number"), Str("text"), Bool("a flag")),
                                                )
                                            )
                                        ),
                                        "unit": req(
                                            Nullable(
                                                Str(
                                                    "the unit of a numeric `measured`: `ms`, `fraction`, `bytes`, "
                                                    "`calls`, `findings`; null for text"
                                                )
                                            )
                                        ),
                                        "threshold_value": opt(
                                            Nullable(
                                                Num(
                                                    "the threshold's number in `unit` (the reports show "
                                                    "`measured` in the same display unit)"
                                                )
                                            )
                                        ),
                                        "passed": req(
                                            Nullable(
                                                Bool(
                                                    "true/false; null when it could not be measured (it then "
                                                    "neither passes nor fails the run)"
                                                )
                                            )
                                        ),
                                        "detail": req(Str("where the value comes from")),
                                    },
                                ),
                            )
                        ),
                    },
                )
            ),
            "consistency": req(
                Obj(
                    "The consistency checks run on this report.",
                    {
                        "passed": req(Bool("every check passed")),
                        "checks": req(
                            List(
                                "one entry per check",
                                Obj(
                                    "One check.",
                                    {
                                        "name": req(Str("the check")),
                                        "passed": req(Bool("it held")),
                                        "detail": req(Str("what was compared, and the first violations")),
                                    },
                                ),
                            )
                        ),
                    },
                )
            ),
        },
    )


# Filled in last by `finalize`: a report under construction may lack them.
RESULT_FIELDS: tuple[str, ...] = ("consistency", "verdict")


def _cross_field(report: Mapping[str, Any], problems: list[str]) -> None:
    """Rules a tree of shapes cannot say: which fields the step model requires, PASS needing consistency."""
    phases = report.get("phases")
    if isinstance(phases, dict):
        for name, phase in phases.items():
            steps = phase.get("steps") if isinstance(phase, dict) else None
            for i, step in enumerate(steps if isinstance(steps, list) else []):
                if not isinstance(step, dict):
                    continue
                where = f"phases.{name}.steps[{i}]"
                if step.get("model") == "closed" and step.get("concurrency") is None:
                    problems.append(f"{where}.concurrency: a closed-model step needs its concurrency")
                if step.get("model") == "open" and step.get("offered_rate") is None:
                    problems.append(f"{where}.offered_rate: an open-model step needs its offered rate")
    verdict, consistency = report.get("verdict"), report.get("consistency")
    if (
        isinstance(verdict, dict)
        and isinstance(consistency, dict)
        and verdict.get("status") == "PASS"
        and consistency.get("passed") is not True
    ):
        problems.append("verdict.status: PASS although the consistency checks failed")


def validate(report: Any, *, require_results: bool = True) -> list[str]:
    """Problems with `report` against schema version 1; an empty list means it is valid.

    `require_results=False` accepts a report that does not have its consistency and verdict yet (the checks
    themselves validate the report before those exist).
    """
    problems: list[str] = []
    if not isinstance(report, dict):
        return [f"the report must be an object, got {_got(report)}"]
    version = report.get("schema_version")
    if isinstance(version, int) and version != SCHEMA_VERSION:
        return [f"schema_version: {version} is not supported (this tester reads version {SCHEMA_VERSION})"]
    spec = report_spec()
    if not require_results:
        spec = Obj(spec.doc, {k: (opt(f.spec) if k in RESULT_FIELDS else f) for k, f in spec.fields.items()})
    spec.check(report, "", problems)
    _cross_field(report, problems)
    return problems


# ----------------------------------------------------------------------------------------------------------------
# The field reference for docs/report-schema.md


@dataclass(frozen=True, slots=True)
class DocRow:
    path: str
    type: str
    required: bool
    meaning: str


def _rows(spec: Spec, path: str, required: bool) -> Iterator[DocRow]:
    inner = spec.inner if isinstance(spec, Nullable) else spec
    if path:
        yield DocRow(path, spec.type_name(), required, spec.doc)
    if isinstance(inner, Obj):
        for name, f in inner.fields.items():
            if path == "phases":
                continue  # documented once as phases.<phase>, below
            yield from _rows(f.spec, f"{path}.{name}" if path else name, f.required)
    elif isinstance(inner, List):
        yield from _rows_of_item(inner.item, f"{path}[]")
    elif isinstance(inner, Map):
        yield from _rows_of_item(inner.value, f"{path}.<{inner.key_doc}>")


def _rows_of_item(item: Spec, path: str) -> Iterator[DocRow]:
    if isinstance(item, Obj | List | Map):
        yield from _rows(item, path, True)
    else:
        yield DocRow(path, item.type_name(), True, item.doc)


def doc_rows() -> list[DocRow]:
    """Every field of the schema, in document order, with phases written once as `phases.<phase>`."""
    rows = list(_rows(report_spec(), "", True))
    at = next(i for i, r in enumerate(rows) if r.path == "phases") + 1
    common = _phase("tsunami")
    phase_rows: list[DocRow] = [
        DocRow(
            "phases.<phase>",
            "object",
            False,
            "One phase (`tsunami`, `avalanche`, `chaos`, `rate`, `soak`); present when it ran.",
        )
    ]
    for name, f in common.fields.items():
        if name != "results":
            phase_rows.extend(_rows(f.spec, f"phases.<phase>.{name}", f.required))
    for name in PHASE_NAMES:
        phase_rows.extend(_rows(_phase_results(name), f"phases.{name}.results", True))
    return rows[:at] + phase_rows + rows[at:]


def render_field_table() -> str:
    """The markdown table of every field (embedded verbatim in docs/report-schema.md)."""
    lines = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for r in doc_rows():
        lines.append(f"| `{r.path}` | {r.type} | {'yes' if r.required else 'no'} | {r.meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate the field table of docs/report-schema.md
    print(render_field_table(), end="")
