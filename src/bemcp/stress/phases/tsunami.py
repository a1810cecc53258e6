"""Tsunami: a closed-model concurrency ramp that finds the maximum sustainable concurrency.

The level grows exponentially from the profile's start; at the first step
that breaks the error budget or the p99 SLO, the ExponentialBisect policy
bisects between the last good and first bad level.
"""

from __future__ import annotations

import dataclasses

from bemcp.stress.controller import ExponentialBisect, StepJudge
from bemcp.stress.model import Finding
from bemcp.stress.phases.base import PhaseContext, PhaseOutcome


async def tsunami(ctx: PhaseContext) -> PhaseOutcome:
    p = ctx.profile
    judge = StepJudge(ctx.thresholds)
    policy = ExponentialBisect(
        p.tsunami_start, factor=2.0, max_level=p.tsunami_max, resolution=p.tsunami_resolution, judge=judge
    )
    make_call = ctx.load_call()
    last = None
    status = "completed"
    best_throughput = 0.0
    client_bound = False
    while (level := policy.next(last)) is not None:
        step = await ctx.closed("tsunami", int(level), p.tsunami_step_s, make_call)
        last = step.outcome()
        if last.client_bound:
            # Keep ramping: more callers still probe the target's latency and errors. The step stays
            # flagged in the report, and the limit becomes a lower bound of medium confidence.
            client_bound = True
            last = dataclasses.replace(last, client_bound=False)
        if judge.good(last):
            best_throughput = max(best_throughput, last.throughput)
        if not await ctx.alive("tsunami"):
            status = "aborted"
            break
    result = policy.result()
    ctx.memo["sustained_throughput"] = best_throughput
    ctx.memo["max_sustainable_concurrency"] = result
    notes = [f"stopped: {policy.stop_reason}"] if policy.stop_reason else []
    if client_bound:
        notes.append("the load generator was CPU-bound: the result is a lower bound")
        ctx.findings.append(
            Finding(
                "warning",
                "tsunami",
                "The load generator, not the target, was the limit; "
                "the maximum concurrency found is a lower bound (try --workers).",
                {},
            )
        )
    if result is not None and result >= p.tsunami_max:
        notes.append(f"reached the profile's ceiling of {p.tsunami_max} callers without breaking the thresholds")
    return PhaseOutcome(
        status,
        "concurrency",
        {
            "max_sustainable_concurrency": result,
            "first_bad_concurrency": policy.bad_level,
            "stop_reason": "target died"
            if status == "aborted"
            else (policy.stop_reason or "done") + (" (client-bound steps)" if client_bound else ""),
        },
        notes,
    )
