"""Rate: the open model. Constant-arrival-rate steps; latency from the intended send time.

Unlike a closed model, a stalled server cannot slow the arrivals down, so a
pause shows in the latency of every call that should have been sent during
it (coordinated-omission safe). The saturation point is the first offered
rate whose achieved rate falls short (below 95%, over the step less its
median latency) or whose p99 passes the SLO.
"""

from __future__ import annotations

import dataclasses

from bemcp.stress.controller import StepJudge
from bemcp.stress.model import Finding, StepOutcome
from bemcp.stress.phases.base import PhaseContext, PhaseOutcome
from bemcp.stress.recorder import StepRecorder

_LADDER = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)  # calls/s when no tsunami ran first


def judged_outcome(step: StepRecorder, send_s: float) -> StepOutcome:
    """The step as the saturation judge sees it: ok answers per second over the step less its median latency
    (but at least the sending window), rather than over the whole step.

    The whole step ends with the last answer, so a server that keeps up with any rate would still look short by
    `latency / (step + latency)` (a 100 ms tool on a 1.5 s step: 94%, "saturated" at the lowest rate). A server
    that falls behind still falls short: its backlog stretches the step by far more than its median latency.
    """
    o = step.outcome()
    window = max(step.duration - step.histogram().percentile(50.0) / 1e6, send_s)
    return dataclasses.replace(o, throughput=step.outcome_counts()["ok"] / window)


async def rate(ctx: PhaseContext) -> PhaseOutcome:
    p = ctx.profile
    base = float(ctx.memo.get("sustained_throughput") or 0.0)
    rates = [round(base * f, 1) for f in p.rate_fractions] if base > 0 else list(_LADDER)
    rates = [r for r in rates if r > 0]
    judge = StepJudge(ctx.thresholds, overload_budget=ctx.thresholds.error_budget, min_achieved_ratio=0.95)
    make_call = ctx.load_call()
    saturation: float | None = None
    max_good: float | None = None
    behind: list[float] = []
    status = "completed"
    for offered in rates:
        step = await ctx.open("rate", offered, p.rate_step_s, make_call)
        if step.sender_behind:
            behind.append(offered)
        outcome = judged_outcome(step, p.rate_step_s)
        if judge.good(outcome):
            if saturation is None:
                max_good = offered
        elif saturation is None:
            saturation = offered
        if not await ctx.alive("rate"):
            status = "aborted"
            break
        if saturation is not None and offered >= saturation * 1.5:
            break  # well past saturation: more steps only pile up load
    notes = [
        f"rates are fractions of the tsunami's sustained {base:,.0f} ok/s"
        if base > 0
        else "no tsunami ran first: a fixed ladder of rates"
    ]
    if behind:
        shown = ", ".join(f"{r:,.0f}" for r in behind)
        notes.append(f"the sender fell behind its schedule at {shown} calls/s: less than the offered rate was sent")
        ctx.findings.append(
            Finding(
                "warning",
                "rate",
                f"The load generator fell behind its schedule at {shown} calls/s, so less than the offered rate "
                "reached the target; a failure there may be the tester's limit, not the target's (try --workers).",
                {"rates": behind},
            )
        )
    results = {"saturation_rate": saturation, "max_good_rate": max_good, "sender_behind_rates": behind}
    return PhaseOutcome(status, "calls/s", results, notes)
