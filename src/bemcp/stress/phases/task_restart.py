"""`--chaos-restart` for the tasks phase: SIGKILL the embedded server's child mid-work, wait for the supervisor
to bring it back, and check that every task created before still answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import psutil

from bemcp.stress.client import ClientError, http_get, is_stateless
from bemcp.stress.model import Finding
from bemcp.stress.phases.base import PhaseContext
from bemcp.stress.phases.task_engine import (
    BACK_TIMEOUT_S,
    EngineMark,
    TaskEngine,
    TaskPlan,
    count_tasks,
    new_tasks,
    result_text,
)
from bemcp.stress.targets import EmbeddedTarget, HttpTarget


async def target_health(ctx: PhaseContext) -> dict[str, Any] | None:
    """BE-MCP's server_health (its structuredContent), when the target has it."""
    if ctx.discovery.listed("server_health") is None:
        return None
    session = ctx.target.session()
    try:
        msg = await session.request("tools/call", {"name": "server_health", "arguments": {}}, timeout=5.0)
    except ClientError:
        return None
    finally:
        await session.close()
    result = msg.get("result")
    structured = result.get("structuredContent") if isinstance(result, dict) else None
    return structured if isinstance(structured, dict) else None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


async def server_max_tasks(ctx: PhaseContext) -> int | None:
    """The server's own limit of unfinished tasks, when its health says (BE-MCP: `tasks.max_tasks`)."""
    health = await target_health(ctx)
    tasks = health.get("tasks") if health is not None else None
    return _positive_int(tasks.get("max_tasks")) if isinstance(tasks, dict) else None


async def server_pid(ctx: PhaseContext) -> int | None:
    """The serving process: server_health's pid, else the supervisor's one child."""
    health = await target_health(ctx)
    pid = _positive_int(health.get("pid")) if health is not None else None
    if pid is not None:
        return pid
    parent = ctx.target.pid
    if parent is None:
        return None
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(parent).children()
        if len(children) == 1:
            return int(children[0].pid)
    return None


async def _back(ctx: PhaseContext, old_pid: int, timeout: float) -> int | None:
    """Wait for the supervisor to bring the server back: /healthz answers and the pid has changed."""
    target = ctx.target
    assert isinstance(target, HttpTarget)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(ClientError):
            answer = await http_get(target.endpoint, "/healthz", timeout=1.0)
            if answer.status == 200:
                pid = await server_pid(ctx)
                if pid is not None and pid != old_pid:
                    return pid
        await asyncio.sleep(0.1)
    return None


def restart_empty(reason: str) -> dict[str, Any]:
    return {"performed": False, "reason": reason, "tasks": 0, "lost": 0, "lost_reasons": {}}


async def chaos_restart(
    ctx: PhaseContext, engine: TaskEngine, plan: TaskPlan, best: int | None, notes: list[str]
) -> dict[str, Any]:
    """Create a round of tasks, SIGKILL the server child while they run, and follow every one to its end."""
    target = ctx.target
    p = ctx.profile
    if not isinstance(target, EmbeddedTarget) or "--supervise" not in target.serve_args:
        reason = "--chaos-restart needs the embedded target, run with --supervise"
        notes.append(f"chaos restart not performed: {reason}")
        return restart_empty(reason)
    if not is_stateless(target.revision or ""):
        reason = "on 2025-11-25 a task belongs to its MCP session, which a restart ends"
        notes.append(f"chaos restart not performed: {reason}")
        return restart_empty(reason)
    old_pid = await server_pid(ctx)
    if old_pid is None:
        reason = "the server's pid could not be found (server_health, or the supervisor's child)"
        notes.append(f"chaos restart not performed: {reason}")
        return restart_empty(reason)
    n = p.tasks_restart_n if best is None else min(p.tasks_restart_n, max(best, p.tasks_start))
    quick = new_tasks(ctx, plan, max(1, n // 4), "r0", 0.0, cancels=False)
    slow = new_tasks(ctx, plan, n - len(quick), "r1", p.tasks_restart_seconds, cancels=True)
    for t in slow:  # cancelled early: the cancel must outlive the restart too
        if t.cancel_after is not None:
            t.cancel_after = round(min(t.cancel_after, 0.2), 3)
    mark = EngineMark(engine)
    started = time.monotonic()
    ctx.say(f"  tasks     chaos restart: {n} tasks, then SIGKILL of the server (pid {old_pid})")
    await engine.create(quick + slow)
    # Let the quick ones finish (their results must survive the kill) and the slow ones get going.
    await engine.until(lambda: all(t.end is not None or t.task_id is None for t in quick), time.monotonic() + 10.0)
    await asyncio.sleep(0.3)
    before = [t for t in quick + slow if t.end is not None]
    snapshot = {id(t): (t.end, t.result) for t in before}
    running = sum(1 for t in slow if t.end is None and t.task_id is not None)
    killed_at = time.monotonic()
    try:
        os.kill(old_pid, signal.SIGKILL)
    except OSError as e:
        reason = f"the kill failed: {e}"
        notes.append(f"chaos restart not performed: {reason}")
        await engine.settle(time.monotonic() + p.tasks_deadline_s)
        return restart_empty(reason)
    new_pid = await _back(ctx, old_pid, BACK_TIMEOUT_S)
    back_s = round(time.monotonic() - killed_at, 3) if new_pid is not None else None
    await engine.settle(time.monotonic() + p.tasks_restart_seconds + p.tasks_deadline_s)
    # What had ended before the kill must still say so after it.
    rechecked = 0
    for t in before:
        if t.task_id is None or t.end == "unresolved":
            continue
        _, state = await engine.client.get(t.task_id)
        engine.requests["tasks/get"] += 1
        rechecked += 1
        end, result = snapshot[id(t)]
        changed = state is None or state.status != end
        if not changed and end == "completed" and engine.client.modern:
            changed = result_text(state.result if state is not None else None) != result
        if changed:
            t.lost = "lost_after_restart"
    tasks_ = quick + slow
    counts = count_tasks(tasks_)
    since = mark.since(engine)
    out: dict[str, Any] = {
        "performed": True,
        "reason": "the server child was SIGKILLed while tasks ran; its supervisor restarted it",
        "tasks": n,
        "pid_before": old_pid,
        "pid_after": new_pid,
        "back_after_s": back_s,
        "ended_before_kill": len(before),
        "running_at_kill": running,
        "rechecked": rechecked,
        **{k: counts[k] for k in ("created", "completed", "failed", "failed_restarted", "cancelled", "unresolved")},
        "lost": counts["lost"],
        "lost_reasons": counts["lost_reasons"],
        "answers": since["answers"],
        "request_errors": since["request_errors"],
        "complete_ms": counts["complete_ms"],
        "duration_s": round(time.monotonic() - started, 6),
    }
    ctx.say(
        f"  tasks     chaos restart: back after {back_s if back_s is not None else '—'} s (pid {new_pid}); "
        f"{out['completed']} completed, {out['failed_restarted']} failed (restart), {out['cancelled']} cancelled, "
        f"{out['lost']} lost"
    )
    if new_pid is None:
        ctx.findings.append(
            Finding(
                "critical",
                "tasks",
                f"The supervised server did not come back within {BACK_TIMEOUT_S:g} s of its SIGKILL.",
                {"pid": old_pid},
            )
        )
    return out
