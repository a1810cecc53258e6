"""The words both renderers share: phase titles, the key numbers, step flags and the recommendations.

Recommendations are derived from the measurements and findings only. The seed report approved itself "for
production"; this one states what was measured, where the limits are, and what was not tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import fmt
from .models import ReportData
from .summary import phase_items, step_error_rate

PHASE_TITLES: dict[str, str] = {
    "tsunami": "closed-model concurrency ramp",
    "tasks": "concurrent long-running tasks (MCP tasks)",
    "avalanche": "growing memory allocations",
    "chaos": "seeded random mix of hostile calls",
    "rate": "open-model arrival-rate steps",
    "soak": "fixed load over time",
}


def _result(report: ReportData, phase: str, key: str) -> Any:
    return ((report.get("phases") or {}).get(phase) or {}).get("results", {}).get(key)


def measured(criterion: Mapping[str, Any]) -> str:
    """A criterion's measured value, in its threshold's display unit (`0.0446 GiB` against `≤ 18.8 GiB`)."""
    return fmt.value_like(criterion["measured"], criterion.get("unit") or "", criterion.get("threshold_value"))


def _step_at(steps: list[dict[str, Any]], level: Any) -> dict[str, Any] | None:
    return next((s for s in steps if s["level"] == level), None)


def _failed_because(step: Mapping[str, Any], th: Mapping[str, Any]) -> list[str]:
    """What the rate judge saw go wrong in a step, as report readers can check it in the step table."""
    offered = step.get("offered_rate") or step["level"]
    short = step["throughput"] < 0.95 * offered
    why = [f"{fmt.rate(step['throughput'])} achieved" + (", under 95% of offered" if short else "")]
    if step["latency_ms"]["p99"] > th["slo_p99_ms"]:
        why.append(f"p99 {fmt.ms(step['latency_ms']['p99'])} > {fmt.ms(th['slo_p99_ms'])}")
    calls = step["calls"] or 1
    if step_error_rate(step) > th["error_budget"]:
        why.append(f"errors {fmt.pct(step_error_rate(step))}")
    if step["outcomes"]["overload"] / calls > th["error_budget"]:
        why.append(f"overloads {fmt.pct(step['outcomes']['overload'] / calls)}")
    if step.get("sender_behind"):
        why.append("the sender fell behind")
    return why


def headline(report: ReportData) -> list[list[str]]:
    """The first key numbers: the highest rate the target kept up with (offered and achieved), then the first
    offered rate that failed; without a rate phase, the highest closed-model load within the thresholds."""
    phases = report.get("phases") or {}
    th = report["thresholds"]
    rate = phases.get("rate") or {}
    steps = [s for s in rate.get("steps") or [] if s.get("calls")]
    if steps:
        r = rate.get("results") or {}
        good, sat = r.get("max_good_rate"), r.get("saturation_rate")
        kept = _step_at(steps, good)
        if good is None or kept is None:
            kept_text = f"none: {fmt.rate(min(s['level'] for s in steps))} offered already failed"
        else:
            kept_text = f"{fmt.rate(good)} offered ({fmt.rate(kept['throughput'])} achieved)"
        failed = _step_at(steps, sat)
        if sat is None or failed is None:
            sat_text = f"none up to {fmt.rate(max(s['level'] for s in steps))} offered"
        else:
            sat_text = f"{fmt.rate(sat)} offered ({'; '.join(_failed_because(failed, th))})"
        return [["Highest rate kept up with", kept_text], ["Saturation: first offered rate that failed", sat_text]]
    tsunami = phases.get("tsunami") or {}
    best = (tsunami.get("results") or {}).get("max_sustainable_concurrency")
    at = [s for s in tsunami.get("steps") or [] if s["level"] == best]
    if at:
        top = max(at, key=lambda s: s["throughput"])
        return [["Highest load kept up with", f"{fmt.number(best)} callers ({fmt.rate(top['throughput'])} ok)"]]
    return []


def key_numbers(report: ReportData) -> list[list[str]]:
    """[label, value] rows for the summary's key-number table (and the HTML cards), led by `headline`."""
    s = report["summary"]
    total = s["total_calls"]

    def share(n: int) -> str:
        return f"{fmt.integer(n)} ({fmt.pct(n / total)})" if total else fmt.integer(n)

    rows = headline(report)
    rows += [
        ["Total calls", fmt.integer(total)],
        ["OK", share(s["ok"])],
        ["Tool errors (the tool said no)", share(s["outcomes"]["tool_error"])],
        ["Overload refusals (clean)", share(s["outcomes"]["overload"])],
        ["Errors (protocol, timeout, transport)", share(s["errors"])],
        ["Peak throughput", fmt.rate(s["peak_throughput"])],
        ["Sustained throughput", fmt.rate(s["sustained_throughput"])],
        ["Average throughput", fmt.rate(s["average_throughput"])],
    ]
    if "tsunami" in (report.get("phases") or {}):
        rows.append(
            ["Max sustainable concurrency", fmt.number(_result(report, "tsunami", "max_sustainable_concurrency"))]
        )
    tasks = (report.get("phases") or {}).get("tasks") or {}
    if tasks.get("status") in ("completed", "aborted") and (tasks.get("results") or {}).get("steps"):
        r = tasks["results"]
        rows.append(["Max concurrent tasks (none lost)", fmt.number(r["max_concurrent_tasks"])])
        rows.append(["Lost tasks", fmt.integer(r["lost"])])
    lat = s.get("latency_ms")
    if lat:
        rows.append(
            [
                "Latency p50 / p99 / max (whole run)",
                f"{fmt.ms(lat['p50'])} / {fmt.ms(lat['p99'])} / {fmt.ms(lat['max'])}",
            ]
        )
    rows.append(["Peak target RSS", fmt.bytes_(s["peak_target_rss_bytes"])])
    return rows


def load_rows(report: ReportData) -> list[list[str]]:
    """[name, kind, weight, planned share, calls, share of calls] per entry of the load's mix, then every other
    tool the run called (chaos, avalanche); empty for reports without a `load` section."""
    load = report.get("load")
    if not load:
        return []
    counted = {(t["name"], "tool"): t for t in load["tools"]} | {(m["name"], "method"): m for m in load["methods"]}
    rows = []
    for e in load["mix"]:
        got = counted.pop((e["name"], e["kind"]), None)
        rows.append(
            [
                e["name"],
                "tool" if e["kind"] == "tool" else "protocol method",
                fmt.number(e["weight"]),
                fmt.pct(e["share"]),
                fmt.integer(got["calls"] if got else 0),
                fmt.pct(got["share"] if got else 0),
            ]
        )
    for (name, kind), got in counted.items():
        rows.append(
            [
                name,
                "tool" if kind == "tool" else "protocol method",
                "—",
                "—",
                fmt.integer(got["calls"]),
                fmt.pct(got["share"]),
            ]
        )
    return rows


TASK_TABLE_HEADER = (
    "Tasks at once",
    "Created",
    "Completed",
    "Failed",
    "Cancelled",
    "Refused",
    "Lost",
    "Asked / answered",
    "Create p50",
    "Create p99",
    "Done p50",
    "Done p99",
    "Store",
)


def _store(step: Mapping[str, Any]) -> str:
    parts = []
    before, after = step.get("store_tasks_before"), step.get("store_tasks_after")
    if before is not None and after is not None:
        parts.append(f"{fmt.integer(before)} → {fmt.integer(after)} tasks")
    before, after = step.get("store_bytes_before"), step.get("store_bytes_after")
    if before is not None and after is not None:
        parts.append(f"{fmt.bytes_(before)} → {fmt.bytes_(after)}")
    return ", ".join(parts) or fmt.NA


def task_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """One row per step of the tasks phase (`TASK_TABLE_HEADER`), then the chaos restart's when it ran."""
    rows = []
    for s in results.get("steps") or []:
        create, done = s.get("create_ms") or {}, s.get("complete_ms") or {}
        rows.append(
            [
                fmt.integer(s["level"]),
                fmt.integer(s["created"]),
                fmt.integer(s["completed"]),
                fmt.integer(s["failed"]),
                fmt.integer(s["cancelled"]),
                fmt.integer(s["refused"]),
                fmt.integer(s["lost"]),
                f"{fmt.integer(s['asked'])} / {fmt.integer(s['answers'])}",
                fmt.ms(create.get("p50")),
                fmt.ms(create.get("p99")),
                fmt.ms(done.get("p50")),
                fmt.ms(done.get("p99")),
                _store(s),
            ]
        )
    return rows


def task_lines(results: Mapping[str, Any]) -> list[str]:
    """The tasks phase's result in sentences (both renderers)."""
    r = results
    steps = r.get("steps") or []
    if not steps:
        return []
    out = [
        f"Max concurrent tasks with none lost: {fmt.number(r['max_concurrent_tasks'])}"
        + (f" (first bad step: {fmt.integer(r['first_bad_level'])})" if r.get("first_bad_level") is not None else "")
        + (f"; stopped: {r['stop_reason']}" if r.get("stop_reason") else "")
        + f". Lost tasks: {fmt.integer(r['lost'])}."
    ]
    if r.get("tool"):
        out.append(
            f"Each task: {r['tool']} over {r.get('protocol', '?')} tasks"
            + (f", {fmt.number(r['task_seconds'])} s of work" if r.get("task_seconds") is not None else "")
            + (f", {fmt.pct(r['ask_fraction'])} asking a question" if r.get("ask_fraction") is not None else "")
            + (f", {fmt.pct(r['cancel_fraction'])} cancelled" if r.get("cancel_fraction") is not None else "")
            + (
                "; every result checked against the task's own token"
                if r.get("results_checked")
                else "; results checked for a CallToolResult"
            )
            + "."
        )
    refused = sum(int(s["refused"]) for s in steps)
    if refused:
        reasons: dict[str, int] = {}
        for s in steps:
            for k, n in s["refusal_reasons"].items():
                reasons[k] = reasons.get(k, 0) + n
        out.append(
            f"{fmt.integer(refused)} creations refused (a clean overload answer, not a loss): "
            + ", ".join(f"{k} {fmt.integer(n)}" for k, n in reasons.items())
            + "."
        )
    c = r.get("chaos_restart")
    if isinstance(c, dict):
        if c.get("performed"):
            out.append(
                f"Chaos restart: the server (pid {c.get('pid_before')}) was SIGKILLed with "
                f"{fmt.integer(c.get('running_at_kill'))} of {fmt.integer(c['tasks'])} tasks running; back after "
                f"{fmt.seconds(c.get('back_after_s'))} (pid {c.get('pid_after') or 'none'}): "
                f"{fmt.integer(c.get('completed'))} completed, {fmt.integer(c.get('failed_restarted'))} failed saying "
                f"the server restarted, {fmt.integer(c.get('cancelled'))} cancelled, "
                f"{fmt.integer(c.get('rechecked'))} that had ended before the kill looked up again, "
                f"{fmt.integer(c['lost'])} lost."
            )
        else:
            out.append(f"Chaos restart not performed: {c.get('reason')}.")
    return out


def no_tool_sentence(note: str, hint: str | None) -> str:
    """What a run on protocol methods says about itself (`note`, `hint`: the load plan's)."""
    advice = f" {hint[0].upper()}{hint[1:]}." if hint else ""
    return (
        f"No tool was measured: the load ran on {note}, which exercises only the transport and the protocol "
        f"handling.{advice}"
    )


def load_sentence(report: ReportData) -> str | None:
    """One sentence on what carried the load (None without a `load` section)."""
    load = report.get("load")
    if not load:
        return None
    if load["source"] == "protocol":
        return no_tool_sentence(load["note"], load.get("hint"))
    top = load["tools"][:3]
    shares = ", ".join(f"{t['name']} {fmt.pct(t['share'])}" for t in top)
    return f"Load: {load['note']}. Of {fmt.integer(load['tool_calls'])} tool calls: {shares or 'none'}."


# Avalanche holds memory for seconds per call and chaos sends calls meant to fail: the SLO and the error budget
# say nothing about their steps, so their steps are not flagged for them.
LOAD_PHASES = frozenset({"tsunami", "rate", "soak"})


def step_flags(step: Mapping[str, Any], thresholds: Mapping[str, Any], phase: str) -> list[str]:
    """Why a step deserves a second look: over the SLO, over the error budget, short of its offered rate,
    or limited by the tester's own CPU."""
    flags = []
    if phase in LOAD_PHASES and step["latency_ms"]["p99"] > thresholds["slo_p99_ms"]:
        flags.append("p99 > SLO")
    if phase in LOAD_PHASES and step_error_rate(step) > thresholds["error_budget"]:
        flags.append("errors > budget")
    if step["model"] == "open" and step["offered_rate"] and step["throughput"] < 0.95 * step["offered_rate"]:
        flags.append("ok < offered")
    if step["client_bound"]:
        flags.append("client-bound")
    if step.get("sender_behind"):
        flags.append("sender behind")
    return flags


# Flags about the tester rather than the target: a row they mark is not a bad step of the target's.
TESTER_FLAGS = frozenset({"client-bound", "sender behind"})


def recommendations(report: ReportData) -> list[str]:
    """What a reader should do with this report, from the measured numbers only."""
    out: list[str] = []
    th = report["thresholds"]
    phases = dict(phase_items(report))
    client_bound = [s for p in phases.values() for s in p["steps"] if s["client_bound"]]
    behind = [s for p in phases.values() for s in p["steps"] if s.get("sender_behind")]
    if not report["consistency"]["passed"]:
        out.append("Fix the failed consistency checks first: until its numbers agree, this report proves nothing.")
    load = report.get("load") or {}
    if load.get("source") == "protocol":
        out.append(
            "No tool of the target was under load (protocol methods only), so nothing here speaks for its tools"
            + (f": {load['hint']}." if load.get("hint") else ".")
        )
    if "tsunami" in phases:
        best = _result(report, "tsunami", "max_sustainable_concurrency")
        bad = _result(report, "tsunami", "first_bad_concurrency")
        if best is None:
            out.append(
                f"The target missed the SLO (p99 ≤ {fmt.ms(th['slo_p99_ms'])}) or the error budget even at "
                "the start level: look at per-call cost before load."
            )
        else:
            out.append(
                f"Keep concurrency at or below {fmt.number(best)}: the highest level measured within "
                f"p99 ≤ {fmt.ms(th['slo_p99_ms'])} and {fmt.pct(th['error_budget'])} errors"
                + (f"; {fmt.number(bad)} broke them." if bad is not None else "; no tested level broke them.")
            )
    if "rate" in phases:
        sat = _result(report, "rate", "saturation_rate")
        good = _result(report, "rate", "max_good_rate")
        if sat is not None:
            out.append(
                f"Keep the arrival rate below {fmt.rate(sat)}, the first offered rate that failed"
                + (f" ({fmt.rate(good)} was the highest it kept up with)" if good is not None else "")
                + ": past it the queue (and latency) grows without bound."
            )
    if client_bound:
        out.append(
            f"{fmt.plural(len(client_bound), 'step')} {'was' if len(client_bound) == 1 else 'were'} client-bound "
            "(the tester's CPU ≥ 90%): their throughput is a "
            "lower bound for the target, not its limit. Re-run with `--workers N` or on a larger machine."
        )
    if behind:
        out.append(
            f"The sender fell behind its schedule in {fmt.plural(len(behind), 'open-model step')} (more than 5% of "
            "the calls sent over 10 ms late): less than the offered rate reached the target, so a failure there may "
            "be the tester's limit. Re-run with `--workers N`."
        )
    verdict = {c["name"]: c for c in report["verdict"]["criteria"]}
    for name, advice in (
        (
            "memory within budget",
            "The target's RSS passed its own memory budget: its memory accounting misses some allocations.",
        ),
        (
            "clean memory rejections",
            "Allocations past the budget ended in errors rather than clean refusals: check memory-pressure shedding.",
        ),
        (
            "memory released after avalanche",
            "RSS stayed high after the avalanche: memory is kept after the calls that needed it ended.",
        ),
        (
            "chaos survived, all answered",
            "Chaos left calls unanswered or killed the target: set a call timeout "
            "and check hang and disconnect handling.",
        ),
        ("no crash", "The target died during the run: see stress.log and the target's own log for the cause."),
    ):
        if name in verdict and verdict[name]["passed"] is False:
            out.append(advice)
    tasks = phases.get("tasks")
    if tasks is not None and tasks["status"] != "skipped":
        r = tasks["results"]
        if r.get("lost"):
            out.append(
                f"{fmt.integer(r['lost'])} tasks were lost (see the tasks phase): a client would never get their "
                "results. Check the task store and what a restart or a cancel does to it."
            )
        elif r.get("max_concurrent_tasks") is not None:
            out.append(
                f"Up to {fmt.number(r['max_concurrent_tasks'])} concurrent tasks ran with none lost"
                + (
                    f"; {fmt.integer(r['first_bad_level'])} did not ({r.get('stop_reason')})."
                    if r.get("first_bad_level") is not None
                    else "."
                )
            )
    leak = _result(report, "soak", "leak_verdict")
    why = _result(report, "soak", "leak_reason")
    if leak in ("leak", "possible_leak"):
        slope = _result(report, "soak", "rss_slope_bytes_per_s")
        out.append(
            f"The soak RSS grew by {fmt.bytes_(slope)}/s ({leak.replace('_', ' ')}"
            + (f": {why}" if why else "")
            + "): run the soak on its own (`--phases soak`, so memory freed by earlier phases cannot hide growth), "
            "longer (`--profile standard`), and profile the allocations."
        )
    elif leak == "inconclusive":
        out.append(
            f"The soak gave no leak verdict ({why or 'too few RSS samples'}): run `--profile standard` for a "
            "longer soak."
        )
    not_run = [p for p in PHASE_TITLES if p not in phases]
    if not_run:
        out.append(f"Not tested in this run: {', '.join(not_run)}. Nothing here speaks for them.")
    out.append(
        "These limits hold for this machine, this tool mix and this profile. Keep this report.json and run "
        "`bemcp stress compare OLD.json NEW.json` after changes to catch regressions."
    )
    return out
