"""Tasks: N concurrent MCP tasks (long-running work), N doubling from the profile's start to its ceiling.

Each task is a call of a task-capable tool: against BE-MCP's workload `task_job(seconds, token, ask)`, which
sleeps, asks `{"go": boolean}` when `ask`, and returns `token` (`token:<go>` when asked), so a result that is
not the task's own can be told. A seeded share of the tasks asks (answered with `tasks/update`, or on the
2025-11-25 `tasks/result` stream) and a seeded share is cancelled while it works. Every task is polled at the
server's `pollIntervalMs` by one shared poll loop (a heap of due times feeding a fixed pool of pollers), so ten
thousand tasks cost a few hundred coroutines, not ten thousand.

A task is **lost** when its id stops resolving (-32602) before its TTL, when it completes with a result that is
not what it was asked for (a cancel that raced the completion may end completed, with the right result: not a
loss), or when it never ends (still not terminal when the step's deadline passed). A refusal (-32050, e.g.
`task_limit` at `--max-tasks`) is not a loss: it is counted. Any lost task is a critical finding (the verdict
fails). The ramp stops at the first step that loses a task, breaks the error budget, or has most of its
creations refused; the highest good step is the result.

`--chaos-restart` (embedded target, run with `--supervise`): after the ramp, a last round of tasks is created,
the server child is SIGKILLed while they work, the supervisor brings it back, and every task must still answer:
completed with its own result (`task_job` is resumable, so most run again), or failed saying the server
restarted. Tasks that had ended before the kill must still show their result.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from bemcp.stress.client import LEGACY, ClientError, Endpoint, HttpClient, HttpSession, http_get, is_stateless
from bemcp.stress.discovery import WORKLOAD_TOOLS, Tool
from bemcp.stress.model import Finding
from bemcp.stress.phases.base import PhaseContext, PhaseOutcome
from bemcp.stress.phases.task_engine import (
    LEVEL_UNIT,
    TTL_MS,
    EngineMark,
    TaskEngine,
    TaskPlan,
    TaskRun,
    count_tasks,
    new_tasks,
)
from bemcp.stress.phases.task_restart import chaos_restart, server_max_tasks
from bemcp.stress.sampler import parse_prometheus
from bemcp.stress.stdio_client import StdioSession
from bemcp.stress.targets import HttpTarget
from bemcp.stress.tasks_client import TaskClient, offers_tasks


def empty_results() -> dict[str, Any]:
    return {"max_concurrent_tasks": None, "lost": 0, "steps": []}


# -- one task ------------------------------------------------------------------------------------------------------


def _plan(ctx: PhaseContext) -> TaskPlan | str:
    """What the phase calls, or why it cannot run."""
    info = ctx.target.info
    revision = ctx.target.revision or ""
    modern = is_stateless(revision)
    if info is None or not offers_tasks(info.capabilities, modern=modern):
        if modern:
            return (
                "the target does not offer tasks (server/discover's capabilities name no "
                "io.modelcontextprotocol/tasks extension)"
            )
        return "the target does not offer tasks (initialize's capabilities have no tasks.requests.tools.call)"
    capable = ctx.discovery.task_tools()
    if not capable:
        return "the target lists no task-capable tool the tester may call (execution.taskSupport)"
    can_ask = modern or isinstance(ctx.target, HttpTarget)
    workload = ctx.discovery.workload
    own = [t for t in capable if t.name not in WORKLOAD_TOOLS]
    if workload is not None and workload.has("task_job") and not own and ctx.plan.source != "--tool":

        def job(token: str, ask: bool, seconds: float) -> dict[str, Any]:
            return workload.task_job(seconds, token, ask).arguments

        return TaskPlan("task_job", job, True, can_ask)
    chosen: Tool | None = None
    if ctx.plan.source == "--tool":
        named = {t.name for t in ctx.plan.mix.tools}
        chosen = next((t for t in capable if t.name in named), None)
    chosen = chosen or capable[0]
    maker = ctx.discovery.maker(chosen)
    rng = random.Random(ctx.rng.randrange(1 << 32))

    def generated(token: str, ask: bool, seconds: float) -> dict[str, Any]:
        return dict(maker(rng).arguments)

    return TaskPlan(chosen.name, generated, False, can_ask)


async def _store_size(ctx: PhaseContext) -> tuple[int | None, int | None]:
    """The task store's size as far as the target shows it: the tasks it says it has created since it started
    (BE-MCP's /metrics `bemcp_task_events_total{event="created"}`), and bytes (the embedded server's SQLite files,
    under the state dir the tester gave it)."""
    count: int | None = None
    url = ctx.target.metrics_url
    if url is not None:
        with contextlib.suppress(ClientError, ValueError, UnicodeDecodeError):
            answer = await http_get(Endpoint.parse(url), urlsplit(url).path or "/metrics", timeout=2.0)
            if answer.status == 200:
                for m in parse_prometheus(answer.body.decode("utf-8", errors="replace")):
                    if m.name == "bemcp_task_events_total" and m.labels.get("event") == "created":
                        count = int(m.value)
                        break
    size: int | None = None
    if ctx.state_dir is not None and ctx.state_dir.is_dir():
        files = [f for f in ctx.state_dir.iterdir() if f.name.startswith("tasks.")]
        with contextlib.suppress(OSError):
            size = sum(f.stat().st_size for f in files) if files else None
    return count, size


async def _step(
    ctx: PhaseContext, engine: TaskEngine, plan: TaskPlan, level: int, label: str
) -> tuple[dict[str, Any], list[TaskRun]]:
    p = ctx.profile
    tasks_before, bytes_before = await _store_size(ctx)
    mark = EngineMark(engine)
    started = time.monotonic()
    tasks = new_tasks(ctx, plan, level, label, p.tasks_seconds, cancels=True)
    await engine.create(tasks)
    await engine.settle(time.monotonic() + p.tasks_seconds + p.tasks_deadline_s)
    duration = time.monotonic() - started
    tasks_after, bytes_after = await _store_size(ctx)
    row = {"level": level, **count_tasks(tasks), **mark.since(engine), "duration_s": round(duration, 6)}
    row.update(
        store_tasks_before=tasks_before,
        store_tasks_after=tasks_after,
        store_bytes_before=bytes_before,
        store_bytes_after=bytes_after,
    )
    return row, tasks


def _errors(row: dict[str, Any]) -> int:
    """What counts against the error budget: creations that failed, tasks that failed (not for a restart), and
    tasks that never ended."""
    return int(row["create_errors"]) + int(row["failed"]) - int(row["failed_restarted"]) + int(row["unresolved"])


def _say(ctx: PhaseContext, row: dict[str, Any]) -> None:
    create, done = row["create_ms"] or {}, row["complete_ms"] or {}

    def ms(d: dict[str, float], key: str) -> str:
        return f"{d[key]:.0f} ms" if key in d else "—"

    ctx.say(
        f"  tasks     level {row['level']:>8}: {row['created']:>6} created  {row['completed']:>6} completed  "
        f"{row['failed']} failed  {row['cancelled']} cancelled  {row['refused']} refused  {row['lost']} lost  "
        f"create p99 {ms(create, 'p99')}  done p50 {ms(done, 'p50')} p99 {ms(done, 'p99')}"
    )


async def _session_for(ctx: PhaseContext, timeout: float) -> tuple[TaskClient, Callable[[], Awaitable[None]]]:
    """The tasks client, and how to close what it opened. 2025-11-25 over HTTP gets an MCP session of its own,
    whose handshake declares elicitation (the load's declares nothing), so the tasks' questions can reach it."""
    target = ctx.target
    modern = is_stateless(target.revision or "")
    if not modern and isinstance(target, HttpTarget):
        own = HttpClient(target.url, LEGACY)
        await own.initialize(timeout=timeout, capabilities={"elicitation": {}})
        session = own.session()

        async def close_own() -> None:
            for kind, n in own.tally.counts.items():  # what the server sent astray counts for the run
                target.tally.add(kind, n)
            await own.close()

        return TaskClient(session, modern=False, timeout=timeout, ttl_ms=TTL_MS), close_own
    shared = target.session()
    if not isinstance(shared, HttpSession | StdioSession):  # every target's session is one of the two
        raise TypeError(f"no tasks client over {type(shared).__name__}")

    async def close_shared() -> None:
        await shared.close()

    return TaskClient(shared, modern=modern, timeout=timeout, ttl_ms=TTL_MS), close_shared


async def tasks(ctx: PhaseContext) -> PhaseOutcome:
    plan = _plan(ctx)
    if isinstance(plan, str):
        return PhaseOutcome("skipped", LEVEL_UNIT, empty_results(), [plan])
    p = ctx.profile
    notes: list[str] = []
    modern = is_stateless(ctx.target.revision or "")
    if not plan.can_ask:
        notes.append(
            "2025-11-25 over stdio: no task asks a question (the tester cannot answer a task's questions on this "
            "pipe, whose handshake declared no elicitation)"
        )
    if not plan.checks_results:
        notes.append(f"{plan.tool} is not BE-MCP's task_job: results are checked for a CallToolResult, not a token")
    declared_limit = await server_max_tasks(ctx)
    try:
        client, close = await _session_for(ctx, p.call_timeout_s)
    except (ClientError, OSError) as e:
        return PhaseOutcome("aborted", LEVEL_UNIT, empty_results(), [f"no tasks session: {e}"])
    engine = TaskEngine(
        client,
        plan.tool,
        creators=p.tasks_create_concurrency,
        pollers=p.tasks_poll_concurrency,
        rng=random.Random(ctx.rng.randrange(1 << 32)),
    )
    engine.start()
    ctx.say(
        f"  tasks     {plan.tool} as tasks ({'2026-07-28 extension' if modern else '2025-11-25 params.task'}), "
        f"{p.tasks_start} to {p.tasks_max} at once"
    )
    rows: list[dict[str, Any]] = []
    best: int | None = None
    bad: int | None = None
    stop = "max level reached"
    status = "completed"
    restart: dict[str, Any] | None = None
    try:
        level = p.tasks_start
        while level <= p.tasks_max:
            row, _ = await _step(ctx, engine, plan, level, f"s{len(rows) + 1}")
            errors = _errors(row)
            row["good"] = (
                row["lost"] == 0 and errors <= ctx.thresholds.error_budget * level and row["refused"] * 2 <= level
            )
            rows.append(row)
            _say(ctx, row)
            if not await ctx.alive("tasks"):
                status, stop = "aborted", "target died"
                break
            if not row["good"]:
                bad = level
                if row["lost"]:
                    stop = f"{row['lost']} tasks lost at {level}"
                elif row["refused"] * 2 > level:
                    reasons = ", ".join(row["refusal_reasons"]) or "overload"
                    stop = f"the server refused most creations at {level} ({reasons})"
                else:
                    stop = f"errors past the budget at {level} ({errors} of {level})"
                break
            best = level
            level *= 2
        if ctx.chaos_restart and status == "completed":
            restart = await chaos_restart(ctx, engine, plan, best, notes)
    finally:
        await engine.stop()
        await close()
    lost = sum(int(r["lost"]) for r in rows) + (int(restart["lost"]) if restart else 0)
    limit = engine.task_limit or declared_limit
    _findings(ctx, rows, restart, engine, limit)
    if best is not None and best >= p.tasks_max:
        notes.append(f"reached the profile's ceiling of {p.tasks_max} tasks at once without breaking a threshold")
    results: dict[str, Any] = {
        "tool": plan.tool,
        "protocol": "2026-07-28" if modern else "2025-11-25",
        "task_seconds": p.tasks_seconds,
        "ask_fraction": p.tasks_ask_fraction if plan.can_ask else 0.0,
        "cancel_fraction": p.tasks_cancel_fraction,
        "results_checked": plan.checks_results,
        "max_concurrent_tasks": best,
        "first_bad_level": bad,
        "stop_reason": stop,
        "lost": lost,
        "server_max_tasks": limit,
        "calls": sum(engine.requests.values()),
        "steps": rows,
    }
    if restart is not None:
        results["chaos_restart"] = restart
    return PhaseOutcome(status, LEVEL_UNIT, results, notes)


def _findings(
    ctx: PhaseContext, rows: list[dict[str, Any]], restart: dict[str, Any] | None, engine: TaskEngine, limit: int | None
) -> None:
    lost: Counter[str] = Counter()
    for r in rows:
        lost.update(r["lost_reasons"])
    if restart is not None:
        lost.update(restart["lost_reasons"])
    if lost:
        why = {
            "unknown_id": "ids that stopped resolving (-32602) before their TTL",
            "wrong_result": "completed with a result not their own",
            "no_result": "completed without a CallToolResult",
            "never_finished": "never ended before the deadline",
            "lost_after_restart": "finished before the restart, gone or changed after it",
        }
        parts = ", ".join(f"{n:,} {why.get(k, k)}" for k, n in sorted(lost.items()))
        ctx.findings.append(
            Finding("critical", "tasks", f"{sum(lost.values()):,} tasks were lost ({parts}).", dict(lost))
        )
    over = [r for r in rows if limit is not None and r["unfinished_peak"] > limit]
    if over:
        worst = max(over, key=lambda r: r["unfinished_peak"])
        ctx.findings.append(
            Finding(
                "warning",
                "tasks",
                f"The server held {worst['unfinished_peak']:,} of the tester's tasks unfinished at once (step of "
                f"{worst['level']:,}), past its own limit of {limit:,} unfinished tasks: concurrent creations got past "
                "its task_limit check.",
                {"limit": limit, "peaks": {str(r["level"]): r["unfinished_peak"] for r in over}},
            )
        )
    failed = sum(int(r["failed"]) - int(r["failed_restarted"]) for r in rows)
    if failed:
        ctx.findings.append(
            Finding("warning", "tasks", f"{failed:,} tasks failed without a restart to explain it.", {"tasks": failed})
        )
    unrequested = sum(int(r["unrequested_cancels"]) for r in rows)
    if unrequested:
        ctx.findings.append(
            Finding(
                "warning",
                "tasks",
                f"{unrequested:,} tasks ended cancelled although the tester never cancelled them.",
                {"tasks": unrequested},
            )
        )
    if engine.unanswerable:
        ctx.findings.append(
            Finding(
                "info",
                "tasks",
                "Some tasks asked questions the tester cannot answer over stdio on 2025-11-25; they were cancelled.",
                {"tasks": engine.unanswerable},
            )
        )


# -- --chaos-restart -----------------------------------------------------------------------------------------------


__all__ = ["LEVEL_UNIT", "empty_results", "tasks"]
