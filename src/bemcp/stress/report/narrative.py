"""The words both renderers share: phase titles, the key numbers, step flags and the recommendations.

Recommendations are derived from the measurements and findings only. The seed report approved itself "for
production"; this one states what was measured, where the limits are, and what was not tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import fmt
from .summary import phase_items, step_error_rate

Report = Mapping[str, Any]

PHASE_TITLES: dict[str, str] = {
    "tsunami": "closed-model concurrency ramp",
    "avalanche": "growing memory allocations",
    "chaos": "seeded random mix of hostile calls",
    "rate": "open-model arrival-rate steps",
    "soak": "fixed load over time",
}


def _result(report: Report, phase: str, key: str) -> Any:
    return ((report.get("phases") or {}).get(phase) or {}).get("results", {}).get(key)


def key_numbers(report: Report) -> list[list[str]]:
    """[label, value] rows for the summary's key-number table (and the HTML cards)."""
    s = report["summary"]
    total = s["total_calls"]

    def share(n: int) -> str:
        return f"{fmt.integer(n)} ({fmt.pct(n / total)})" if total else fmt.integer(n)

    rows = [
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
    if "rate" in (report.get("phases") or {}):
        sat = _result(report, "rate", "saturation_rate")
        rows.append(["Saturation rate", fmt.rate(sat) if sat is not None else "not reached"])
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
    return flags


def recommendations(report: Report) -> list[str]:
    """What a reader should do with this report, from the measured numbers only."""
    out: list[str] = []
    th = report["thresholds"]
    phases = dict(phase_items(report))
    client_bound = [s for p in phases.values() for s in p["steps"] if s["client_bound"]]
    if not report["consistency"]["passed"]:
        out.append("Fix the failed consistency checks first: until its numbers agree, this report proves nothing.")
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
        if sat is not None:
            out.append(
                f"Keep the arrival rate below {fmt.rate(sat)}: at that rate the target fell behind or "
                "passed the SLO, and the queue (and latency) grows without bound past it."
            )
    if client_bound:
        out.append(
            f"{fmt.plural(len(client_bound), 'step')} {'was' if len(client_bound) == 1 else 'were'} client-bound "
            "(the tester's CPU ≥ 90%): their throughput is a "
            "lower bound for the target, not its limit. Re-run with `--workers N` or on a larger machine."
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
    leak = _result(report, "soak", "leak_verdict")
    if leak in ("leak", "possible_leak"):
        slope = _result(report, "soak", "rss_slope_bytes_per_s")
        out.append(
            f"The soak RSS grew by {fmt.bytes_(slope)}/s ({leak.replace('_', ' ')}): run a longer soak "
            "(`--profile extreme`) and profile the allocations."
        )
    elif leak == "inconclusive":
        out.append(
            "The soak was too short (or had no RSS samples) for a leak verdict: run `--profile standard` or longer."
        )
    not_run = [p for p in PHASE_TITLES if p not in phases]
    if not_run:
        out.append(f"Not tested in this run: {', '.join(not_run)}. Nothing here speaks for them.")
    out.append(
        "These limits hold for this machine, this tool mix and this profile. Keep this report.json and run "
        "`bemcp stress compare OLD.json NEW.json` after changes to catch regressions."
    )
    return out
