"""The whole-run summary, computed from the steps and the time series so that its numbers are backed by them.

Definitions (the consistency checks hold the summary to them):
- peak_throughput: the highest ok calls/s in one time-series bucket;
- sustained_throughput: the highest ok calls/s a step held over its whole duration;
- average_throughput: every ok call divided by the time under load (the sum of step durations).
The seed report printed a "sustained" rate three times its own peak; with these definitions peak ≥ sustained ≥
average follows from the data (up to bucket alignment, see checks.py), so a violation means a bug, not noise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bemcp.stress.model import ERROR_OUTCOMES, OUTCOMES

from .schema import PHASE_NAMES


def phase_items(report: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The phases that ran, in the canonical order (the order the runner runs them is not guaranteed in JSON)."""
    phases = report.get("phases") or {}
    ordered = [n for n in PHASE_NAMES if n in phases] + [n for n in phases if n not in PHASE_NAMES]
    for name in ordered:
        phase = phases[name]
        if isinstance(phase, dict):
            yield name, phase


def iter_steps(report: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(phase name, index, step) for every step of every phase."""
    for name, phase in phase_items(report):
        for i, step in enumerate(phase.get("steps") or []):
            if isinstance(step, dict):
                yield name, i, step


def step_errors(step: Mapping[str, Any]) -> int:
    """Calls that count against the error budget: protocol errors, timeouts and transport errors."""
    outcomes = step.get("outcomes") or {}
    return sum(int(outcomes.get(o, 0)) for o in ERROR_OUTCOMES)


def step_error_rate(step: Mapping[str, Any]) -> float:
    calls = int(step.get("calls") or 0)
    return step_errors(step) / calls if calls else 0.0


def bucket_rate(report: Mapping[str, Any], count: float) -> float:
    interval = float((report.get("run") or {}).get("timeseries_interval_s") or 1.0)
    return count / interval if interval > 0 else 0.0


def build_summary(
    report: Mapping[str, Any], latency_ms: Mapping[str, float] | None = None, latency_hdr: str | None = None
) -> dict[str, Any]:
    """The `summary` section. `latency_ms` and `latency_hdr`: whole-run percentiles and the HDR encoding of the
    merged histograms, when the runner has them (they cannot be derived from per-step percentiles)."""
    outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
    total_calls = 0
    time_under_load = 0.0
    sustained = 0.0
    for _, _, step in iter_steps(report):
        total_calls += int(step.get("calls", 0))
        time_under_load += float(step.get("duration_s", 0.0))
        sustained = max(sustained, float(step.get("throughput", 0.0)))
        for o in OUTCOMES:
            outcomes[o] += int((step.get("outcomes") or {}).get(o, 0))
    errors = sum(outcomes[o] for o in ERROR_OUTCOMES)
    buckets = [int(b.get("achieved", 0)) for b in report.get("timeseries") or []]
    peak = bucket_rate(report, max(buckets)) if buckets else sustained
    rss = [int(s["rss_bytes"]) for s in report.get("target_samples") or [] if s.get("rss_bytes") is not None]
    return {
        "total_calls": total_calls,
        "outcomes": outcomes,
        "ok": outcomes["ok"],
        "errors": errors,
        "error_rate": errors / total_calls if total_calls else 0.0,
        "time_under_load_s": time_under_load,
        "peak_throughput": peak,
        "sustained_throughput": sustained,
        "average_throughput": outcomes["ok"] / time_under_load if time_under_load > 0 else 0.0,
        "latency_ms": dict(latency_ms) if latency_ms is not None else None,
        "latency_hdr": latency_hdr,
        "peak_target_rss_bytes": max(rss) if rss else None,
    }
