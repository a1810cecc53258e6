"""Consistency checks run on every report: the numbers must agree with each other before anyone trusts them.

A report that fails any check says so (report.md, report.html) and can never be PASS. Every tolerance below is
explained where it is used; an exact rule is used wherever the numbers come from the same counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from itertools import pairwise
from typing import Any

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from bemcp.stress.model import ERROR_OUTCOMES, OUTCOMES

from . import fmt
from .models import ReportData
from .schema import ERROR_KINDS, validate
from .summary import bucket_rate, iter_steps, step_error_rate

CheckResult = dict[str, Any]

# Rates are stored as floats computed from integer counts: a relative 1e-6 absorbs float rounding only.
FLOAT_REL = 1e-6
# Step rates may be rounded by whoever writes them; 1% (plus 0.01/s for tiny rates) allows display rounding and
# nothing that changes a conclusion.
RATE_REL = 0.01
RATE_ABS = 0.01
# HdrHistogram at 3 significant digits reports a bucket's highest equivalent value, so two percentiles (or a
# percentile and the max) from the same histogram can cross by up to 0.1% of the value.
PERCENTILE_REL = 1e-3
# Little's law, closed model: N callers each keep one call outstanding, so N = λ·W in steady state. The ramp-up
# and drain at the step's edges shift the count by at most N calls out of `calls` (hence N / calls on top), and
# 25% covers the caller's own gap between an answer and its next send and timer granularity. Below, the gap can
# be larger: a caller between an answer and its next send is waiting for the tester's event loop, which is then
# busy, so the callers' mean gap is at most the share of the step the tester's CPU was busy (client_cpu_percent).
# It matters against a server that answers in a fraction of a millisecond (or fails at once).
LITTLE_BASE = 0.25
LITTLE_MIN_CALLS_PER_CALLER = 2  # fewer than 2 calls per caller: the edges are the whole step, nothing to check
# Every step call is also in the time series; 1% (at least 2) may be missing from it (an answer that arrived
# after the series was read). The series may also hold calls outside any step (discovery, health probes between
# phases): a few, so up to 5% + 100 more than the steps; more than that is a series counting something else.
SERIES_MISSING_REL = 0.01
SERIES_MISSING_ABS = 2
SERIES_EXTRA_REL = 0.05
SERIES_EXTRA_ABS = 100
# Peak (one bucket) vs sustained (one step): a bucket overlaps a step shorter than two buckets by at least half
# the step, so the best bucket shows at least min(1, D / 2i) of the step's rate; 10% more covers the rate
# varying inside the step.
PEAK_SLACK = 0.9
# Durations are measured by different clocks at slightly different points (phase setup, process start).
DURATION_ABS_S = 1.0
DURATION_REL = 0.01
MAX_LISTED = 5
SCHEMA_CHECK = "matches schema v1"


class _Violations:
    """Collects the violations of one check; the detail lists the first few and counts the rest."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def result(self, name: str, ok_detail: str) -> CheckResult:
        if not self.items:
            return {"name": name, "passed": True, "detail": ok_detail}
        shown = "; ".join(self.items[:MAX_LISTED])
        more = len(self.items) - MAX_LISTED
        return {"name": name, "passed": False, "detail": shown + (f"; and {more} more" if more > 0 else "")}


def _close(a: float, b: float, rel: float, abs_: float = 0.0) -> bool:
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def _num(x: Any) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def _f(x: float) -> str:
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:.3g}"


def _where(phase: str, i: int, step: Mapping[str, Any]) -> str:
    return f"{phase} step {i + 1} (level {_f(_num(step.get('level')))})"


def check_throughput_order(report: ReportData) -> CheckResult:
    """peak ≥ sustained ≥ average, with the bucket-alignment allowance for peak vs sustained."""
    name = "peak ≥ sustained ≥ average throughput"
    s = report["summary"]
    peak, sustained, average = (
        _num(s["peak_throughput"]),
        _num(s["sustained_throughput"]),
        _num(s["average_throughput"]),
    )
    v = _Violations()
    # The step that set `sustained` decides how much of it one bucket can be expected to show.
    best = max((step for _, _, step in iter_steps(report)), key=lambda st: _num(st["throughput"]), default=None)
    interval = float(report["run"]["timeseries_interval_s"]) or 1.0
    factor = 1.0
    if best is not None and report.get("timeseries"):
        factor = PEAK_SLACK * min(1.0, _num(best["duration_s"]) / (2 * interval))
    if peak < sustained * factor - 1e-9:
        v.add(f"peak {_f(peak)} < sustained {_f(sustained)} (x {factor:.2f} allowed for bucket alignment)")
    if sustained < average * (1 - FLOAT_REL) - 1e-9:
        v.add(f"sustained {_f(sustained)} < average {_f(average)}")
    relation = "≥" if peak >= sustained else f"≈ (within the x {factor:.2f} bucket-alignment allowance)"
    return v.result(name, f"peak {_f(peak)} {relation} sustained {_f(sustained)} ≥ average {_f(average)} ok calls/s")


def check_counts(report: ReportData) -> CheckResult:
    """Outcomes sum to calls in every step and kind; the summary totals are the sums of the steps."""
    name = "outcome counts add up"
    v = _Violations()
    totals = dict.fromkeys(OUTCOMES, 0)
    calls = 0
    duration = 0.0
    steps = 0
    for phase, i, step in iter_steps(report):
        steps += 1
        where = _where(phase, i, step)
        outcomes = step["outcomes"]
        if sum(outcomes.values()) != step["calls"]:
            v.add(f"{where}: outcomes sum to {sum(outcomes.values())}, calls = {step['calls']}")
        calls += step["calls"]
        duration += _num(step["duration_s"])
        for o in OUTCOMES:
            totals[o] += outcomes[o]
        kinds = step.get("kinds")
        if kinds:
            if sum(k["calls"] for k in kinds.values()) != step["calls"]:
                v.add(f"{where}: kinds hold {sum(k['calls'] for k in kinds.values())} calls, the step {step['calls']}")
            for o in OUTCOMES:
                if sum(k["outcomes"][o] for k in kinds.values()) != outcomes[o]:
                    v.add(f"{where}: kinds' {o} do not sum to the step's {outcomes[o]}")
            for kind, k in kinds.items():
                if sum(k["outcomes"].values()) != k["calls"]:
                    v.add(f"{where} kind {kind}: outcomes sum to {sum(k['outcomes'].values())}, calls = {k['calls']}")
        for o in OUTCOMES:
            detailed = sum(n for key, n in (step.get("details") or {}).items() if key.split(":", 1)[0] == o)
            if detailed > outcomes[o]:
                v.add(f"{where}: details count {detailed} {o}, more than the {outcomes[o]} recorded")
    s = report["summary"]
    if s["total_calls"] != calls:
        v.add(f"summary.total_calls {s['total_calls']} ≠ {calls}, the sum of the steps")
    for o in OUTCOMES:
        if s["outcomes"][o] != totals[o]:
            v.add(f"summary.outcomes.{o} {s['outcomes'][o]} ≠ {totals[o]}, the sum of the steps")
    if s["ok"] != s["outcomes"]["ok"]:
        v.add(f"summary.ok {s['ok']} ≠ summary.outcomes.ok {s['outcomes']['ok']}")
    errors = sum(s["outcomes"][o] for o in ERROR_OUTCOMES)
    if s["errors"] != errors:
        v.add(f"summary.errors {s['errors']} ≠ {errors} (protocol_error + timeout + transport_error)")
    expected_rate = s["errors"] / s["total_calls"] if s["total_calls"] else 0.0
    if not _close(_num(s["error_rate"]), expected_rate, FLOAT_REL, 1e-12):
        v.add(f"summary.error_rate {s['error_rate']} ≠ errors / total_calls = {expected_rate}")
    if not _close(_num(s["time_under_load_s"]), duration, FLOAT_REL, 1e-9):
        v.add(f"summary.time_under_load_s {_f(_num(s['time_under_load_s']))} ≠ {_f(duration)}, the step durations")
    return v.result(name, f"{steps} steps, {calls:,} calls: every outcome count sums exactly")


def check_summary_backed(report: ReportData) -> CheckResult:
    """The headline numbers are exactly what the steps and the time series show (no number from elsewhere)."""
    name = "summary backed by the data"
    v = _Violations()
    s = report["summary"]
    steps = [step for _, _, step in iter_steps(report)]
    best_step = max((_num(st["throughput"]) for st in steps), default=0.0)
    if not _close(_num(s["sustained_throughput"]), best_step, FLOAT_REL, 1e-9):
        v.add(f"sustained {_f(_num(s['sustained_throughput']))} is not the best step's {_f(best_step)}")
    buckets = [b["achieved"] for b in report["timeseries"]]
    peak = bucket_rate(report, max(buckets)) if buckets else best_step
    if not _close(_num(s["peak_throughput"]), peak, FLOAT_REL, 1e-9):
        v.add(f"peak {_f(_num(s['peak_throughput']))} is not the best bucket's {_f(peak)}")
    load = _num(s["time_under_load_s"])
    average = s["ok"] / load if load > 0 else 0.0
    if not _close(_num(s["average_throughput"]), average, FLOAT_REL, 1e-9):
        v.add(f"average {_f(_num(s['average_throughput']))} ≠ ok / time under load = {_f(average)}")
    rss = [smp["rss_bytes"] for smp in report["target_samples"] if smp.get("rss_bytes") is not None]
    if s["peak_target_rss_bytes"] != (max(rss) if rss else None):
        v.add(f"peak_target_rss_bytes {s['peak_target_rss_bytes']} is not the highest sample {max(rss, default=None)}")
    return v.result(name, "peak, sustained and average throughput and peak RSS equal what the steps and samples show")


def check_series_totals(report: ReportData) -> CheckResult:
    """The time series counts the steps' calls (plus, at most, a few calls outside any step)."""
    name = "time series matches the steps"
    v = _Violations()
    s = report["summary"]
    series = report["timeseries"]
    if not series:
        if s["total_calls"]:
            v.add(f"no time series for {s['total_calls']:,} calls")
        return v.result(name, "no calls, no time series")
    pairs = [
        ("offered", sum(b["offered"] for b in series), s["total_calls"]),
        ("achieved (ok)", sum(b["achieved"] for b in series), s["ok"]),
    ]
    for kind in ERROR_KINDS:
        pairs.append((kind, sum(b["errors"].get(kind, 0) for b in series), s["outcomes"][kind]))
    for label, got, want in pairs:
        if want - got > max(SERIES_MISSING_ABS, SERIES_MISSING_REL * want):
            v.add(f"series {label} {got:,} < steps {want:,}")
        elif got - want > SERIES_EXTRA_ABS + SERIES_EXTRA_REL * want:
            v.add(f"series {label} {got:,} far above steps {want:,}")
    extra = pairs[0][1] - pairs[0][2]
    outside = f"; {fmt.plural(extra, 'call')} outside any step (discovery, probes)" if extra > 0 else ""
    return v.result(name, f"offered, ok and every error kind match the steps{outside}")


def check_step_rates(report: ReportData) -> CheckResult:
    """throughput = ok / duration and achieved_rate = calls / duration in every step."""
    name = "step rates match counts"
    v = _Violations()
    for phase, i, step in iter_steps(report):
        d = _num(step["duration_s"])
        want_tp = step["outcomes"]["ok"] / d if d > 0 else 0.0
        want_ar = step["calls"] / d if d > 0 else 0.0
        if not _close(_num(step["throughput"]), want_tp, RATE_REL, RATE_ABS):
            v.add(f"{_where(phase, i, step)}: throughput {_f(_num(step['throughput']))} ≠ ok/duration {_f(want_tp)}")
        if not _close(_num(step["achieved_rate"]), want_ar, RATE_REL, RATE_ABS):
            v.add(
                f"{_where(phase, i, step)}: achieved_rate {_f(_num(step['achieved_rate']))} ≠ calls/duration "
                f"{_f(want_ar)}"
            )
    return v.result(name, f"throughput and achieved rate equal the counts over the duration (±{RATE_REL:.0%})")


def check_little(report: ReportData) -> CheckResult:
    """Closed steps: concurrency ≈ achieved_rate * mean latency (Little's law)."""
    name = "Little's law (closed steps)"
    v = _Violations()
    checked = skipped = 0
    for phase, i, step in iter_steps(report):
        n = step.get("concurrency")
        if step["model"] != "closed" or not n:
            continue
        calls, mean_s = step["calls"], _num(step["latency_ms"]["mean"]) / 1000
        if calls < LITTLE_MIN_CALLS_PER_CALLER * n or mean_s <= 0 or _num(step["duration_s"]) <= 0:
            skipped += 1
            continue
        checked += 1
        tol = LITTLE_BASE + n / calls
        cpu = _num(step.get("client_cpu_percent")) / 100
        tol_low = max(LITTLE_BASE, cpu if cpu == cpu else 0.0) + n / calls  # cpu == cpu: not NaN
        implied = _num(step["achieved_rate"]) * mean_s
        ratio = implied / n
        # A client-bound tester leaves gaps between an answer and the next send, so λ·W < N is expected there
        # (the step is flagged separately); λ·W > N can never be honest.
        low_ok = step["client_bound"] or ratio >= 1 - tol_low
        if not low_ok or ratio > 1 + tol:
            shown = f"±{tol:.0%}" if tol_low == tol else f"-{tol_low:.0%}/+{tol:.0%}"
            v.add(
                f"{_where(phase, i, step)}: rate * mean latency = {_f(implied)} for {n} callers "
                f"({ratio - 1:+.0%}, tolerance {shown})"
            )
    return v.result(name, f"{checked} closed steps within ±{LITTLE_BASE:.0%} + N/calls; {skipped} too short to check")


def _monotone(lat: Mapping[str, Any], where: str, v: _Violations) -> None:
    for lower, upper in pairwise(("p50", "p90", "p99", "p999", "max")):
        a, b = _num(lat[lower]), _num(lat[upper])
        if a > b * (1 + PERCENTILE_REL) + 1e-9:
            v.add(f"{where}: {lower} {_f(a)} ms > {upper} {_f(b)} ms")
    if _num(lat["mean"]) > _num(lat["max"]) * (1 + PERCENTILE_REL) + 1e-9:
        v.add(f"{where}: mean {_f(_num(lat['mean']))} ms > max {_f(_num(lat['max']))} ms")


def check_percentiles(report: ReportData) -> CheckResult:
    """p50 ≤ p90 ≤ p99 ≤ p99.9 ≤ max (and mean ≤ max) everywhere percentiles appear."""
    name = "percentiles monotone"
    v = _Violations()
    sets = 0
    for phase, i, step in iter_steps(report):
        _monotone(step["latency_ms"], _where(phase, i, step), v)
        sets += 1
        for kind, k in (step.get("kinds") or {}).items():
            _monotone(k["latency_ms"], f"{_where(phase, i, step)} kind {kind}", v)
            sets += 1
    if report["summary"].get("latency_ms"):
        _monotone(report["summary"]["latency_ms"], "summary", v)
        sets += 1
    for b in report["timeseries"]:
        if b["p50_ms"] is not None and b["p99_ms"] is not None:
            sets += 1
            if _num(b["p50_ms"]) > _num(b["p99_ms"]) * (1 + PERCENTILE_REL) + 1e-9:
                v.add(f"bucket t={_f(_num(b['t']))}: p50 {_f(_num(b['p50_ms']))} ms > p99 {_f(_num(b['p99_ms']))} ms")
    return v.result(name, f"{sets} percentile sets are ordered (±{PERCENTILE_REL:.1%} HdrHistogram rounding)")


def check_series_shape(report: ReportData) -> CheckResult:
    """Buckets and samples move forward in time, one interval apart at least, with no negative value."""
    name = "time series ordered and non-negative"
    v = _Violations()
    interval = _num(report["run"]["timeseries_interval_s"])
    last = -math.inf
    for b in report["timeseries"]:
        t = _num(b["t"])
        if t < last + interval * (1 - FLOAT_REL):
            v.add(f"bucket t={_f(t)} follows t={_f(last)} (less than one interval)")
        last = t
        counts = [b["offered"], b["achieved"], b["in_flight"], *b["errors"].values()]
        if any(_num(c) < 0 for c in counts):
            v.add(f"bucket t={_f(t)}: a negative count")
        if any(_num(b[k]) < 0 for k in ("p50_ms", "p99_ms") if b[k] is not None):
            v.add(f"bucket t={_f(t)}: a negative latency")
    last = -math.inf
    for smp in report["target_samples"]:
        t = _num(smp["t"])
        if t < last:
            v.add(f"target sample t={_f(t)} goes back in time from t={_f(last)}")
        last = t
        for key, val in smp.items():
            if isinstance(val, int | float) and not isinstance(val, bool) and val < 0:
                v.add(f"target sample t={_f(t)}: {key} is negative")
    return v.result(name, f"{len(report['timeseries'])} buckets and {len(report['target_samples'])} target samples")


def _seconds_between(a: str, b: str) -> float | None:
    try:
        return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
    except (ValueError, TypeError):
        return None


def check_durations(report: ReportData) -> CheckResult:
    """The run's duration matches its clock times; phases fit in the run and steps in their phase."""
    name = "durations add up"
    v = _Violations()
    run = report["run"]
    total = _num(run["duration_s"])
    wall = _seconds_between(run["started_at"], run["finished_at"])
    if wall is None:
        v.add("run.started_at / finished_at are not ISO 8601 times")
    elif not _close(total, wall, DURATION_REL, DURATION_ABS_S):
        v.add(f"run.duration_s {_f(total)} ≠ finished_at - started_at = {_f(wall)}")
    slack = DURATION_ABS_S + DURATION_REL * total
    for phase_name, phase in (report.get("phases") or {}).items():
        end = _num(phase["offset_s"]) + _num(phase["duration_s"])
        if end > total + slack:
            v.add(f"{phase_name} ends at {_f(end)} s, after the run's {_f(total)} s")
        in_steps = sum(_num(st["duration_s"]) for st in phase["steps"])
        if in_steps > _num(phase["duration_s"]) * (1 + DURATION_REL) + DURATION_ABS_S:
            v.add(f"{phase_name}: steps last {_f(in_steps)} s, the phase {_f(_num(phase['duration_s']))} s")
    if report["timeseries"]:
        t_end = _num(report["timeseries"][-1]["t"])
        if t_end > total + slack:
            v.add(f"the last bucket starts at {_f(t_end)} s, after the run's {_f(total)} s")
    return v.result(name, f"phases fit in the run's {_f(total)} s and steps in their phases (±{DURATION_ABS_S:g} s)")


def check_limits(report: ReportData) -> CheckResult:
    """Each phase result that names a level is the level of a step that shows it."""
    name = "limits backed by steps"
    v = _Violations()
    th = report["thresholds"]
    slo, budget = _num(th["slo_p99_ms"]), _num(th["error_budget"])

    def good(st: Mapping[str, Any]) -> bool:
        return _num(st["latency_ms"]["p99"]) <= slo and step_error_rate(st) <= budget

    phases = report.get("phases") or {}
    checked = 0

    def backed(phase: str, key: str, rule: Callable[[Mapping[str, Any]], bool], what: str) -> None:
        nonlocal checked
        value = (phases.get(phase) or {}).get("results", {}).get(key)
        if value is None:
            return
        checked += 1
        steps = [st for st in phases[phase]["steps"] if _close(_num(st["level"]), _num(value), FLOAT_REL, 1e-9)]
        if not steps:
            v.add(f"{phase}.{key} = {_f(_num(value))} is not the level of any step")
        elif not any(rule(st) for st in steps):
            v.add(f"{phase}.{key} = {_f(_num(value))}: no step at that level {what}")

    backed("tsunami", "max_sustainable_concurrency", good, "met the SLO and the error budget")
    backed("tsunami", "first_bad_concurrency", lambda st: not good(st), "broke the SLO or the error budget")

    def saturated(st: Mapping[str, Any]) -> bool:
        return not good(st) or _num(st["throughput"]) < _num(st["offered_rate"] or 0)

    backed("rate", "saturation_rate", saturated, "fell short of its offered rate or broke the thresholds")
    sat = (phases.get("rate") or {}).get("results", {}).get("saturation_rate")
    if sat is not None:
        # Saturation is the *lowest* such rate; a good step below it must not be saturated by the p99 or errors.
        # (Falling short of the offered rate is left out here: the runner may allow a margin for that.)
        early = [st for st in phases["rate"]["steps"] if _num(st["level"]) < _num(sat) and not good(st)]
        if early:
            v.add(
                f"rate.saturation_rate = {_f(_num(sat))}, but the step at {_f(_num(early[0]['level']))} calls/s "
                "already broke the SLO or the error budget"
            )
    backed("avalanche", "largest_accepted_mb", lambda st: st["outcomes"]["ok"] > 0, "was accepted")
    backed("avalanche", "rejected_above_mb", lambda st: st["outcomes"]["ok"] == 0, "was refused")
    tasks = (phases.get("tasks") or {}).get("results") or {}
    for key, want, what in (
        ("max_concurrent_tasks", True, "was good"),
        ("first_bad_level", False, "was bad (lost tasks, errors past the budget, or most creations refused)"),
    ):
        level = tasks.get(key)
        if level is None:
            continue
        checked += 1
        at = [st for st in tasks.get("steps") or [] if st["level"] == level]
        if not at:
            v.add(f"tasks.{key} = {level} is not the level of any step")
        elif not any(st["good"] is want for st in at):
            v.add(f"tasks.{key} = {level}: no step at that level {what}")
    ran = set(phases) | {"run"}
    for limit in report["limits"]:
        if limit["phase"] not in ran:
            v.add(f"limit {limit['name']!r} comes from {limit['phase']!r}, a phase that did not run")
    return v.result(name, f"{checked} phase results name the level of a step that shows them")


def check_load(report: ReportData) -> CheckResult:
    """`load` counts what the steps' kinds count: tool calls by tool, protocol-method calls by method."""
    name = "load shares match the steps"
    load = report.get("load")
    if load is None:
        return {"name": name, "passed": True, "detail": "no load section (a report from before it existed)"}
    v = _Violations()
    counted: dict[str, dict[str, int]] = {"tools": {}, "methods": {}}
    every_step_has_kinds = True
    for _, _, step in iter_steps(report):
        kinds = step.get("kinds")
        if kinds is None:
            every_step_has_kinds = every_step_has_kinds and not step.get("calls")
            continue
        for kind, stats in kinds.items():
            if kind.startswith("chaos:"):
                continue
            into = counted["methods" if kind.startswith("rpc:") else "tools"]
            key = kind.removeprefix("rpc:")
            into[key] = into.get(key, 0) + int(stats["calls"])
    for group, total_key in (("tools", "tool_calls"), ("methods", "method_calls")):
        listed = {e["name"]: int(e["calls"]) for e in load[group]}
        total = int(load[total_key])
        if sum(listed.values()) != total:
            v.add(f"load.{group} add up to {sum(listed.values())}, not load.{total_key} = {total}")
        if every_step_has_kinds and listed != counted[group]:
            v.add(f"load.{group} = {listed} but the steps' kinds count {counted[group]}")
        for e in load[group]:
            expected = e["calls"] / total if total else 0.0
            if not _close(_num(e["share"]), expected, FLOAT_REL, 1e-12):
                v.add(f"load.{group} {e['name']}: share {_f(_num(e['share']))} is not calls / {total_key}")
    planned = sum(_num(e["share"]) for e in load["mix"])
    if load["mix"] and not _close(planned, 1.0, FLOAT_REL):
        v.add(f"load.mix shares add up to {_f(planned)}, not 1")
    return v.result(
        name, f"{fmt.integer(load['tool_calls'])} tool calls and {fmt.integer(load['method_calls'])} method calls"
    )


def check_hdr(report: ReportData) -> CheckResult:
    """Every HDR-encoded histogram decodes, with the hdrh library, to the calls and percentiles shown beside it."""
    name = "HDR histograms match the percentiles"
    v = _Violations()
    pairs: list[tuple[str, Any, int, Mapping[str, Any]]] = [
        (_where(phase, i, st), st.get("latency_hdr"), int(st["calls"]), st["latency_ms"])
        for phase, i, st in iter_steps(report)
    ]
    summary = report.get("summary") or {}
    if summary.get("latency_ms") is not None:
        pairs.append(("summary", summary.get("latency_hdr"), int(summary["total_calls"]), summary["latency_ms"]))
    decoded = 0
    for where, encoded, calls, lat in pairs:
        if encoded is None:
            continue
        try:
            hist = HdrHistogram.decode(encoded)
        except Exception as e:  # any library error: the encoding is what is broken
            v.add(f"{where}: latency_hdr does not decode ({type(e).__name__})")
            continue
        decoded += 1
        if hist.get_total_count() != calls:
            v.add(f"{where}: latency_hdr holds {hist.get_total_count()} values for {calls} calls")
            continue
        for key, p in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)):
            got = hist.get_value_at_percentile(p) / 1000
            if not _close(got, _num(lat[key]), PERCENTILE_REL, 0.001):
                v.add(f"{where}: latency_hdr {key} is {_f(got)} ms, latency_ms.{key} {_f(_num(lat[key]))} ms")
    return v.result(name, f"{decoded} encoded histograms decode to their calls and percentiles")


CHECKS: tuple[Callable[[ReportData], CheckResult], ...] = (
    check_throughput_order,
    check_counts,
    check_summary_backed,
    check_series_totals,
    check_step_rates,
    check_little,
    check_percentiles,
    check_series_shape,
    check_durations,
    check_limits,
    check_load,
    check_hdr,
)


def run_checks(report: ReportData) -> dict[str, Any]:
    """The `consistency` section: {passed, checks[{name, passed, detail}]}.

    The report must already have its summary. A report that does not match the schema gets only the schema check
    (the others would read fields that are not there).
    """
    problems = validate(dict(report), require_results=False)
    schema_check: CheckResult = {
        "name": SCHEMA_CHECK,
        "passed": not problems,
        "detail": "; ".join(problems[:MAX_LISTED])
        + (f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else "")
        if problems
        else "every field has its documented type",
    }
    checks = [schema_check]
    if not problems:
        checks.extend(check(report) for check in CHECKS)
    return {"passed": all(c["passed"] for c in checks), "checks": checks}
