"""Soak: a fixed closed-model load for a duration; the target's RSS over it gives a leak verdict (`leak`)."""

from __future__ import annotations

import time

from bemcp.stress.leak import MiB, leak_verdict
from bemcp.stress.model import Finding
from bemcp.stress.phases.base import PhaseContext, PhaseOutcome

_SLICE_S = 5.0  # the soak is recorded as slices so the report shows its stability over time


async def soak(ctx: PhaseContext) -> PhaseOutcome:
    p = ctx.profile
    best = ctx.memo.get("max_sustainable_concurrency")
    level = max(1, int((best or p.tsunami_start * 4) * p.soak_fraction))
    make_call = ctx.load_call()
    start = time.monotonic() - ctx.recorder.t0
    left = p.soak_s
    status = "completed"
    while left > 0.05:
        await ctx.closed("soak", level, min(_SLICE_S, left), make_call)
        left -= _SLICE_S
        if not await ctx.alive("soak"):
            status = "aborted"
            break
    end = time.monotonic() - ctx.recorder.t0
    points = [(s.t, s.rss_bytes) for s in ctx.sampler.target_samples if start <= s.t <= end and s.rss_bytes is not None]
    leak = leak_verdict(points)
    if leak.verdict in ("leak", "possible_leak") and leak.late_rate is not None:
        ctx.findings.append(
            Finding(
                "critical" if leak.verdict == "leak" else "warning",
                "soak",
                f"Target RSS grew by {leak.late_rate * 60 / MiB:.1f} MiB/min under a steady load"
                + (" in every quarter of the soak: a leak." if leak.verdict == "leak" else ", though not steadily."),
                {"late_bytes_per_s": leak.late_rate, "threshold_bytes_per_s": leak.threshold},
            )
        )
    results: dict[str, object] = {
        "rss_slope_bytes_per_s": leak.slope,
        "leak_verdict": leak.verdict,
        "rss_samples": leak.samples,
        "leak_reason": leak.reason,
    }
    if leak.threshold is not None:
        results["leak_threshold_bytes_per_s"] = leak.threshold
        results["rss_late_growth_bytes_per_s"] = leak.late_rate
        results["rss_quarter_medians_bytes"] = leak.quarter_medians
    return PhaseOutcome(status, "concurrency", results, [f"{level} callers for {p.soak_s:g} s"])
