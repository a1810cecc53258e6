"""Avalanche: allocations of growing size, to past the server's memory budget.

Expected of a protected server: clean refusals past the budget (a tool
error or an overload answer, never a crash or a hang), a live server, and
RSS back down afterwards.
"""

from __future__ import annotations

import asyncio
import time

from bemcp.stress.model import Finding
from bemcp.stress.phases.base import PhaseContext, PhaseOutcome

MiB = 1024 * 1024


def _latest_rss(ctx: PhaseContext) -> int | None:
    for s in reversed(ctx.sampler.target_samples):
        if s.rss_bytes is not None:
            return s.rss_bytes
    return None


def _budget(ctx: PhaseContext) -> int | None:
    for s in reversed(ctx.sampler.target_samples):
        if s.memory_budget_bytes:
            return s.memory_budget_bytes
    return None


async def avalanche(ctx: PhaseContext) -> PhaseOutcome:
    workload = ctx.discovery.workload
    if workload is None or not workload.has("allocate_memory"):
        return PhaseOutcome(
            "skipped",
            "MB",
            {"largest_accepted_mb": None, "rejected_above_mb": None, "rss_after_bytes": None},
            ["the target has no allocate_memory tool (BE-MCP's --stress-tools)"],
        )
    p = ctx.profile
    await ctx.sampler.sample()
    budget = _budget(ctx)
    ceiling = p.avalanche_max_mb if budget is None else min(p.avalanche_max_mb, 2 * budget / MiB)
    rss_before = _latest_rss(ctx)
    sizes: list[float] = []
    size = p.avalanche_start_mb
    while size <= ceiling:
        sizes.append(size)
        size *= 2
    if budget is not None and (not sizes or sizes[-1] * MiB <= budget):
        sizes.append(round(budget / MiB * 1.25, 1))  # one step surely past the budget
    accepted: float | None = None
    refused: float | None = None
    peak = rss_before or 0
    status = "completed"
    session = ctx.pool.take()
    try:
        for mb in sizes:
            call = workload.allocate_memory(mb, hold_seconds=0.3)
            step = ctx.recorder.step("avalanche", mb, model="closed", concurrency=1)
            mark = ctx.mark()
            result = await session.call_tool(call.name, call.arguments, timeout=p.call_timeout_s + 30)
            step.record(result)
            ctx.finish_step(step, mark)
            await ctx.sampler.sample()
            peak = max(peak, _latest_rss(ctx) or 0)
            if result.outcome == "ok":
                accepted = mb if accepted is None else max(accepted, mb)
            elif result.outcome in ("tool_error", "overload"):
                refused = mb if refused is None else min(refused, mb)
            else:
                ctx.findings.append(
                    Finding(
                        "critical",
                        "avalanche",
                        f"An allocation of {mb:g} MB ended as {result.outcome}, not as a clean refusal.",
                        {"mb": mb, "detail": result.detail},
                    )
                )
            if not await ctx.alive("avalanche"):
                status = "aborted"
                break
            if refused is not None and result.outcome != "ok":
                break  # refused once: larger sizes tell nothing new
    finally:
        ctx.pool.give(session)
    await asyncio.sleep(1.0)  # let the allocator give memory back before judging
    await ctx.sampler.sample()
    rss_after = _latest_rss(ctx)
    alive = status == "completed"
    if budget is not None and refused is None and status == "completed":
        ctx.findings.append(
            Finding(
                "warning", "avalanche", "No allocation was refused, even past the budget.", {"budget_bytes": budget}
            )
        )
    notes = [f"budget {budget / MiB:.1f} MiB" if budget else "the target reports no memory budget"]
    ctx.memo["avalanche_done_at"] = time.monotonic()
    return PhaseOutcome(
        status,
        "MB",
        {
            "largest_accepted_mb": accepted,
            "rejected_above_mb": refused,
            "rss_before_bytes": rss_before,
            "rss_peak_bytes": peak or None,
            "rss_after_bytes": rss_after,
            "alive_after": alive,
        },
        notes,
    )
