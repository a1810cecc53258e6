"""Soak: a fixed closed-model load for a duration; the target's RSS slope gives a leak verdict."""

from __future__ import annotations

import time

from bemcp.stress.model import Finding
from bemcp.stress.phases.base import PhaseContext, PhaseOutcome

MiB = 1024 * 1024
_SLICE_S = 5.0  # the soak is recorded as slices so the report shows its stability over time


def leak_verdict(slope: float | None, duration: float, samples: int, rss: int | None) -> str:
    """`leak` when RSS grows steadily by more than 1 MiB/min and 10% over the soak, `possible_leak` for half
    that; too short (under 20 s) or too few samples cannot tell."""
    if slope is None or samples < 5 or duration < 20:
        return "inconclusive"
    grown = slope * duration
    relative = grown / rss if rss else 0.0
    if slope * 60 > MiB and relative > 0.10:
        return "leak"
    if slope * 60 > MiB / 2 and relative > 0.05:
        return "possible_leak"
    return "no_leak"


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
    slope = ctx.sampler.rss_slope(start, end)
    samples = [s for s in ctx.sampler.target_samples if start <= s.t <= end and s.rss_bytes is not None]
    rss = samples[-1].rss_bytes if samples else None
    verdict = leak_verdict(slope, end - start, len(samples), rss)
    if verdict in ("leak", "possible_leak") and slope is not None:
        ctx.findings.append(
            Finding(
                "critical" if verdict == "leak" else "warning",
                "soak",
                f"Target RSS grew by {slope * 60 / MiB:.1f} MiB/min under a steady load.",
                {"slope_bytes_per_s": slope},
            )
        )
    return PhaseOutcome(
        status,
        "concurrency",
        {"rss_slope_bytes_per_s": slope, "leak_verdict": verdict, "rss_samples": len(samples)},
        [f"{level} callers for {p.soak_s:g} s"],
    )
