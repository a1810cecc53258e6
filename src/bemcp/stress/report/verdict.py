"""PASS or FAIL from explicit thresholds, each criterion listed with its measured value.

The phases push the target past its limits on purpose, so the SLO and the error budget are judged at the load the
run found sustainable (the "operating steps"), not at the overload steps that found the limit:
- tsunami: the steps up to the maximum sustainable concurrency; if there is none, the lowest (start) level —
  a server that misses the SLO even there fails;
- rate: the steps below the saturation rate (all of them if it never saturated; else the lowest);
- soak: every step (it holds a fixed, moderate load).
Avalanche and chaos deliberately send calls that should fail; they are judged by their own criteria (clean
rejections, memory released, survived and answered everything); the tasks phase by one: no task lost. A
criterion that could not be measured is listed with passed = null and neither passes nor fails the run; a report
whose consistency checks failed is FAIL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import fmt
from .checks import SCHEMA_CHECK, run_checks
from .models import ReportData
from .summary import phase_items, step_error_rate, step_errors

Criterion = dict[str, Any]

# Python returns large buffers to the OS when they are freed; what stays is allocator slack. 64 MiB or 20% of the
# RSS before the phase, whichever is larger, separates that slack from memory the server kept.
RELEASE_SLACK_BYTES = 64 * 1024 * 1024
RELEASE_SLACK_REL = 0.2


def _criterion(
    name: str,
    threshold: str,
    measured: Any,
    passed: bool | None,
    detail: str,
    unit: str | None = None,
    limit: float | None = None,
) -> Criterion:
    """`limit`: the threshold's number in `unit`, so renderers show `measured` in the threshold's display unit."""
    return {
        "name": name,
        "threshold": threshold,
        "measured": measured,
        "unit": unit,
        "threshold_value": limit,
        "passed": passed,
        "detail": detail,
    }


def operating_steps(report: ReportData) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(phase, step) for the steps the SLO and the error budget are judged on, and a description of each phase's
    share."""
    chosen: list[tuple[str, dict[str, Any]]] = []
    where: list[str] = []
    for name, phase in phase_items(report):
        steps = [s for s in phase.get("steps") or [] if s.get("calls")]
        if not steps or name not in ("tsunami", "rate", "soak"):
            continue
        results = phase.get("results") or {}
        lowest = min(s["level"] for s in steps)
        if name == "tsunami":
            limit = results.get("max_sustainable_concurrency")
            picked = [s for s in steps if s["level"] <= limit] if limit is not None else []
            picked = picked or [s for s in steps if s["level"] == lowest]
            where.append(
                f"tsunami ≤ {fmt.number(limit)} callers"
                if limit is not None
                else f"tsunami start level {fmt.number(lowest)}"
            )
        elif name == "rate":
            sat = results.get("saturation_rate")
            picked = [s for s in steps if sat is None or s["level"] < sat]
            picked = picked or [s for s in steps if s["level"] == lowest]
            where.append("rate, all steps (never saturated)" if sat is None else f"rate < {fmt.number(sat)} calls/s")
        else:
            picked = steps
            where.append("soak")
        chosen.extend((name, s) for s in picked)
    return chosen, where


def _slo_and_budget(report: ReportData) -> list[Criterion]:
    th = report["thresholds"]
    slo, budget = th["slo_p99_ms"], th["error_budget"]
    pairs, where = operating_steps(report)
    if not pairs:
        none = "not measured: no tsunami, rate or soak step ran"
        return [
            _criterion("p99 latency at sustainable load", f"≤ {fmt.ms(slo)}", None, None, none, "ms", slo),
            _criterion("error rate at sustainable load", f"≤ {fmt.pct(budget)}", None, None, none, "fraction", budget),
        ]
    # The worst step, not an average: a good phase must not dilute a bad step (the controller judges steps too).
    worst = max(pairs, key=lambda ps: float(ps[1]["latency_ms"]["p99"]))
    worst_p99 = float(worst[1]["latency_ms"]["p99"])
    erring = max(pairs, key=lambda ps: step_error_rate(ps[1]))
    rate = step_error_rate(erring[1])
    over = f"{len(pairs)} steps: {', '.join(where)}"
    return [
        _criterion(
            "p99 latency at sustainable load",
            f"≤ {fmt.ms(slo)}",
            worst_p99,
            worst_p99 <= slo,
            f"worst step {_name(worst)} of {over}",
            "ms",
            slo,
        ),
        _criterion(
            "error rate at sustainable load",
            f"≤ {fmt.pct(budget)}",
            rate,
            rate <= budget,
            f"worst step {_name(erring)}: {step_errors(erring[1]):,} protocol errors, timeouts and transport "
            f"errors in {int(erring[1]['calls']):,} calls; of {over}",
            "fraction",
            budget,
        ),
    ]


def _name(phase_step: tuple[str, Mapping[str, Any]]) -> str:
    phase, step = phase_step
    unit = "calls/s" if step["model"] == "open" else "callers"
    return f"{phase} at {fmt.number(step['level'])} {unit}"


def _no_crash(report: ReportData) -> Criterion:
    target = report["target"]
    deaths = target.get("deaths") or []
    alive = bool(target.get("alive_at_end"))
    if not deaths and alive:
        measured = "alive, never died"
    else:
        seen = "; ".join(f"{d.get('phase') or 'run'} at {fmt.seconds(d.get('t'))}: {d.get('detail')}" for d in deaths)
        measured = (
            f"died {len(deaths)} time{'s' if len(deaths) != 1 else ''}"
            + (f" ({seen})" if seen else "")
            + ("" if alive else ", dead at the end")
        )
    return _criterion(
        "no crash",
        "alive at the end, never died",
        measured,
        alive and not deaths,
        "the tester checked the target after every phase and at the end",
    )


def _memory_budget(report: ReportData) -> Criterion:
    budget = report["target"].get("memory_budget_bytes")
    peak = report["summary"].get("peak_target_rss_bytes")
    threshold = f"≤ {fmt.bytes_(budget)}" if budget is not None else "≤ the target's memory budget"
    if budget is None or peak is None:
        missing = "the target's memory budget" if budget is None else "target RSS samples"
        return _criterion("memory within budget", threshold, peak, None, f"not measured: no {missing}", "bytes", budget)
    return _criterion(
        "memory within budget",
        threshold,
        peak,
        peak <= budget,
        f"peak target RSS {fmt.bytes_(peak)} of a {fmt.bytes_(budget)} budget",
        "bytes",
        budget,
    )


def _avalanche(phase: Mapping[str, Any]) -> list[Criterion]:
    results = phase.get("results") or {}
    errors = sum(step_errors(s) for s in phase.get("steps") or [])
    out = [
        _criterion(
            "clean memory rejections",
            "0 errors (refusals must be overload or tool errors)",
            errors,
            errors == 0,
            "protocol errors, timeouts and transport errors in the avalanche phase",
            "calls",
            0,
        )
    ]
    before, after = results.get("rss_before_bytes"), results.get("rss_after_bytes")
    threshold = f"after ≤ before + max({fmt.bytes_(RELEASE_SLACK_BYTES)}, {RELEASE_SLACK_REL:.0%})"
    if before is None or after is None:
        out.append(
            _criterion(
                "memory released after avalanche",
                threshold,
                after,
                None,
                "not measured: no RSS before and after the phase",
                "bytes",
            )
        )
    else:
        allowed = before + max(RELEASE_SLACK_BYTES, RELEASE_SLACK_REL * before)
        out.append(
            _criterion(
                "memory released after avalanche",
                threshold,
                after,
                after <= allowed,
                f"RSS {fmt.bytes_(before)} before, {fmt.bytes_(after)} after (allowed {fmt.bytes_(allowed)})",
                "bytes",
                allowed,
            )
        )
    return out


def _chaos(phase: Mapping[str, Any]) -> Criterion:
    results = phase.get("results") or {}
    survived, answered = bool(results.get("survived")), bool(results.get("answered_all"))
    unanswered = results.get("unanswered")
    measured = (
        ("survived" if survived else "did not survive")
        + ", "
        + (
            "answered everything"
            if answered
            else f"{fmt.integer(unanswered)} unanswered"
            if unanswered is not None
            else "left calls unanswered"
        )
    )
    return _criterion(
        "chaos survived, all answered",
        "survived and answered every call",
        measured,
        survived and answered,
        "the seeded chaos mix: malformed, oversized, hanging, disconnected calls",
    )


def _soak(phase: Mapping[str, Any]) -> Criterion:
    results = phase.get("results") or {}
    verdict = results.get("leak_verdict", "inconclusive")
    slope = results.get("rss_slope_bytes_per_s")
    detail = f"RSS slope {fmt.bytes_(slope)}/s" if slope is not None else "no RSS slope"
    passed = None if verdict == "inconclusive" else verdict != "leak"
    return _criterion("no memory leak in soak", "leak verdict is not `leak`", verdict, passed, detail)


def _tasks(phase: Mapping[str, Any]) -> Criterion:
    results = phase.get("results") or {}
    if phase.get("status") == "skipped" or not results.get("steps"):
        why = "; ".join(phase.get("notes") or []) or "no step ran"
        return _criterion("no lost tasks", "0 lost", None, None, f"not measured: {why}", "tasks", 0)
    lost = int(results.get("lost", 0))
    steps = results["steps"]
    created = sum(int(s["created"]) for s in steps)
    detail = f"{created:,} tasks created over {len(steps)} steps up to {max(int(s['level']) for s in steps):,} at once"
    restart = results.get("chaos_restart")
    if isinstance(restart, dict) and restart.get("performed"):
        detail += f", and {int(restart.get('created', 0)):,} across a SIGKILL of the server (--chaos-restart)"
    reasons = {k: n for s in steps for k, n in s["lost_reasons"].items()}
    if isinstance(restart, dict):
        for k, n in (restart.get("lost_reasons") or {}).items():
            reasons[k] = reasons.get(k, 0) + n
    if reasons:
        detail += "; lost: " + ", ".join(f"{k} {n:,}" for k, n in sorted(reasons.items()))
    return _criterion("no lost tasks", "0 lost", lost, lost == 0, detail, "tasks", 0)


def task_calls(report: ReportData) -> int:
    """Requests of the tasks phase: they carry load, but are counted in its results, not in steps."""
    results = ((report.get("phases") or {}).get("tasks") or {}).get("results") or {}
    calls = results.get("calls", 0)
    return int(calls) if isinstance(calls, int) and not isinstance(calls, bool) else 0


def build_verdict(report: ReportData) -> dict[str, Any]:
    """The `verdict` section: {status: PASS|FAIL, criteria[{name, threshold, measured, passed, detail}]}.

    Uses report["consistency"] when present, else runs the checks; needs report["summary"].
    """
    consistency = report.get("consistency") or run_checks(report)
    schema = consistency["checks"][0] if consistency["checks"] else None
    if schema is not None and schema["name"] == SCHEMA_CHECK and not schema["passed"]:
        # Off-schema, the other criteria would read fields that are not there: the report fails on this alone.
        return {
            "status": "FAIL",
            "criteria": [
                _criterion("report consistency", "matches schema v1", "does not", False, schema["detail"], None)
            ],
        }
    total = int(report["summary"]["total_calls"])
    tasks = task_calls(report)
    # Without a single call every other criterion is vacuously true: that must not read as PASS.
    where = "calls over every step" + (f", and {tasks:,} requests of the tasks phase" if tasks else "")
    criteria = [_criterion("load applied", "> 0 calls", total + tasks, total + tasks > 0, where, "calls", 0)]
    criteria += _slo_and_budget(report)
    criteria.append(_no_crash(report))
    criteria.append(_memory_budget(report))
    phases = dict(phase_items(report))
    if "tasks" in phases:
        criteria.append(_tasks(phases["tasks"]))
    if "avalanche" in phases:
        criteria.extend(_avalanche(phases["avalanche"]))
    if "chaos" in phases:
        criteria.append(_chaos(phases["chaos"]))
    if "soak" in phases:
        criteria.append(_soak(phases["soak"]))
    critical = [f for f in report.get("findings") or [] if f.get("severity") == "critical"]
    criteria.append(
        _criterion(
            "no critical findings",
            "0",
            len(critical),
            not critical,
            "; ".join(f["message"] for f in critical[:3]) or "no finding is critical",
            "findings",
            0,
        )
    )
    checks = consistency["checks"]
    failed = [c["name"] for c in checks if not c["passed"]]
    criteria.append(
        _criterion(
            "report consistency",
            "every check passes",
            f"{len(checks) - len(failed)}/{len(checks)} checks passed",
            bool(consistency["passed"]),
            "failed: " + ", ".join(failed) if failed else "see the consistency section",
        )
    )
    measured = [c["passed"] for c in criteria if c["passed"] is not None]
    status = "PASS" if measured and all(measured) and consistency["passed"] else "FAIL"
    return {"status": status, "criteria": criteria}
