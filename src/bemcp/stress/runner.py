"""One stress run: start the target, discover it, run the phases, and write the reports."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import random
import shlex
import socket
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
import psutil

from bemcp import __version__
from bemcp.stress.conduct import conduct_findings
from bemcp.stress.discovery import discover
from bemcp.stress.load import SessionPool, raise_fd_limit
from bemcp.stress.model import Finding, Thresholds
from bemcp.stress.phases import PHASES, PhaseContext, PhaseOutcome
from bemcp.stress.phases.tasks import empty_results as empty_tasks_results
from bemcp.stress.profiles import PROFILES
from bemcp.stress.progress import Progress
from bemcp.stress.recorder import Recorder
from bemcp.stress.report import finalize, write_all
from bemcp.stress.report.narrative import no_tool_sentence
from bemcp.stress.sampler import Sampler
from bemcp.stress.selection import SelectionError, ToolSpec, plan_load
from bemcp.stress.targets import EmbeddedTarget, HttpTarget, Target, TargetError, parse_target
from bemcp.stress.workerpool import WorkerPool

PHASE_ORDER = ("tsunami", "tasks", "avalanche", "chaos", "rate", "soak")
# The embedded server budgets from a simulated 1 GiB container limit, so the avalanche reaches the
# budget in seconds instead of allocating most of the host's memory.
EMBEDDED_SERVE_ARGS = ("--memory-limit-mb", "1024")
# Where the embedded server keeps its tasks (under --out), unless --serve-arg names a store: never the user's
# $XDG_STATE_HOME, where one run's tasks would outlive it and be taken over by the next.
EMBEDDED_STATE_DIR = "state"
_SEVERITY = {"critical": 0, "warning": 1, "info": 2}


@dataclass(slots=True)
class StressOptions:
    target: str = "embedded"
    profile: str = "quick"
    phases: tuple[str, ...] = PHASE_ORDER
    out: Path | None = None
    slo_p99_ms: float = 1000.0
    error_budget: float = 0.01
    seed: int = 1
    allow_writes: bool = False
    revision: str = "auto"
    serve_args: tuple[str, ...] = ()
    quiet: bool = False
    workers: int = 1
    tools: tuple[ToolSpec, ...] = ()  # --tool NAME[=WEIGHT]
    arguments: dict[str, dict[str, Any]] = field(default_factory=dict)  # --args NAME=JSON
    chaos_restart: bool = False  # --chaos-restart: the tasks phase SIGKILLs the supervised embedded server once
    command: str = field(default_factory=lambda: shlex.join(["bemcp", *sys.argv[1:]]))


class StressLog:
    """`stress.log`: JSON lines of what the run did (phases, steps, findings)."""

    def __init__(self, path: Path) -> None:
        self._f: TextIO = path.open("a", encoding="utf-8")

    def event(self, kind: str, **fields: Any) -> None:
        record = {"ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"), "event": kind, **fields}
        self._f.write(orjson.dumps(record, default=str).decode() + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def embedded_serve_args(opts: StressOptions, out: Path) -> tuple[tuple[str, ...], Path | None]:
    """The embedded server's extra `bemcp serve` flags, and the state dir (its task store) they give it.

    `--serve-arg` replaces the defaults (the simulated memory limit); the task store goes under the report folder
    unless those flags name one, and `--chaos-restart` adds `--supervise` (the supervisor restarts what it kills).
    """
    args = list(opts.serve_args) or list(EMBEDDED_SERVE_ARGS)
    state_dir: Path | None = None
    named = {a.split("=", 1)[0] for a in args}
    if not named & {"--state-dir", "--task-store"}:
        state_dir = (out / EMBEDDED_STATE_DIR).resolve()
        args += ["--state-dir", str(state_dir)]
    if opts.chaos_restart and "--supervise" not in named:
        args.append("--supervise")
    return tuple(args), state_dir


def default_out() -> Path:
    return Path("bemcp-reports") / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


async def run(
    opts: StressOptions, say: Any, progress: Progress | None = None
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Run and report. Raises TargetError only for a usage error (a bad spec, `--workers` on stdio, a `--tool` or
    `--args` the target cannot take), before any load; every run that starts writes a report, even against a
    target that cannot be used at all (unreachable, not MCP, a broken tools/list): its `target.error` says why.

    `say` gets the progress lines; `progress`, when given, also draws its live line while the phases run.
    """
    out = opts.out or default_out()
    out.mkdir(parents=True, exist_ok=True)
    log = StressLog(out / "stress.log")
    try:
        raise_fd_limit()
        serve_args, state_dir = embedded_serve_args(opts, out)
        target = parse_target(opts.target, serve_args=serve_args, log_dir=out, revision=opts.revision)  # type: ignore[arg-type]
        if opts.workers > 1 and not isinstance(target, HttpTarget):
            raise TargetError("--workers needs an HTTP target (embedded or http://...): a stdio server has one pipe")
        if opts.chaos_restart and not isinstance(target, EmbeddedTarget):
            raise TargetError("--chaos-restart needs the embedded target: the tester kills only a server it started")
        if opts.chaos_restart and "tasks" not in opts.phases:
            raise TargetError("--chaos-restart runs in the tasks phase: add tasks to --phases")
        log.event("run_started", options={k: str(v) for k, v in vars_of(opts).items()})
        report = await _run(opts, target, log, say, progress, state_dir if opts.target == "embedded" else None)
        paths = write_all(report, out)
        paths["log"] = out / "stress.log"
        log.event("run_finished", verdict=report["verdict"]["status"], consistency=report["consistency"]["passed"])
        return report, paths
    finally:
        log.close()


async def _run(
    opts: StressOptions,
    target: Target,
    log: StressLog,
    say: Any,
    progress: Progress | None,
    state_dir: Path | None = None,
) -> dict[str, Any]:
    """Start, discover, run the phases; the finalized report."""
    profile = PROFILES[opts.profile]
    thresholds = Thresholds(opts.slo_p99_ms, opts.error_budget)
    started_wall = dt.datetime.now(dt.UTC)
    recorder = Recorder()
    try:
        say(f"target {opts.target}: starting and detecting the protocol revision")
        try:
            info = await target.start()
            say(
                f"target speaks {info.revision} ({info.server_info.get('name', '?')} "
                f"{info.server_info.get('version', '')})".rstrip()
            )
            probe = target.session()
            allow_writes = opts.allow_writes or target.kind == "embedded"  # our own server writes only to its sandbox
            try:
                found = await discover(probe, allow_writes=allow_writes, require_callable=False)
            finally:
                await probe.close()
            plan = plan_load(
                found, tools=opts.tools, args=opts.arguments, allow_writes=allow_writes, revision=target.revision
            )
        except SelectionError as e:  # the flags, not the target: a usage error
            log.event("run_failed", reason=str(e))
            raise
        except TargetError as e:
            return await _unusable(opts, target, str(e), started_wall, log, say)
        except Exception as e:  # a target that broke the tester's start: still a report, the trace in the log
            log.event("run_failed", reason=repr(e), traceback=traceback.format_exc())
            return await _unusable(
                opts, target, f"the tester failed on it: {type(e).__name__}: {e}", started_wall, log, say
            )
        say(f"{len(found.tools)} tools; callable: {', '.join(t.name for t in found.callable) or 'none'}")
        say(f"load: {plan.note}" + (f"; {plan.hint}" if plan.hint else ""))
        log.event("discovered", **found.to_dict(), load=plan.note)
        findings: list[Finding] = []
        if plan.source == "protocol":
            findings.append(
                Finding("warning", "run", no_tool_sentence(plan.note, plan.hint), {"methods": plan.mix.names})
            )
        sampler = Sampler(metrics_url=target.metrics_url, pid=target.pid, t0=recorder.t0)
        pool = SessionPool(target)
        workers = WorkerPool(opts.workers)
        deaths: list[dict[str, Any]] = []
        ctx = PhaseContext(
            target,
            found,
            recorder,
            sampler,
            pool,
            thresholds,
            profile,
            random.Random(opts.seed),
            findings,
            say,
            deaths,
            plan,
            workers,
            chaos_restart=opts.chaos_restart,
            state_dir=state_dir,
        )
        phases: dict[str, dict[str, Any]] = {}
        try:
            if opts.workers > 1:
                assert isinstance(target, HttpTarget)
                await workers.start(target.client_params(), recorder.t0_wall)
                for pid in workers.pids:
                    sampler.add_client_pid(pid)
                say(f"load from {workers.processes} processes (this one and {len(workers.pids)} workers)")
            await sampler.start()
            if progress is not None:
                await progress.follow(recorder, workers=workers.processes)
            try:
                for name in opts.phases:
                    phases[name] = await _run_phase(ctx, name, log, say)
            finally:
                if progress is not None:
                    await progress.unfollow()
                await sampler.stop()
        finally:
            await workers.close()
            await pool.close()
            alive_at_end = await target.alive()
        for failure in workers.failures:
            findings.append(
                Finding(
                    "warning",
                    failure.phase or "run",
                    f"Load worker {failure.worker} failed ({failure.detail}); the other processes took on its share.",
                    {"worker": failure.worker},
                )
            )
        rec = recorder.to_dict()
        report = _report(opts, target, found, rec, sampler, ctx, phases, started_wall, alive_at_end)
    finally:
        await target.close()
    totals = rec["totals"]
    # Without a step call (a run of the tasks phase alone) there is no latency to report: not zeros.
    latency = totals.get("latency_ms") if totals.get("calls") else None
    finalize(report, latency_ms=latency, latency_hdr=totals.get("latency_hdr"))
    return report


_LEVEL_UNITS = {
    "tsunami": "concurrency",
    "tasks": "tasks",
    "avalanche": "MB",
    "chaos": "concurrency",
    "rate": "calls/s",
}


async def _unusable(
    opts: StressOptions, target: Target, reason: str, started: dt.datetime, log: StressLog, say: Any
) -> dict[str, Any]:
    """The report of a run whose target could not be used: every phase skipped, the reason a critical finding."""
    log.event("target_unusable", reason=reason)
    say(f"the target cannot be used: {reason}")
    try:
        alive = await target.alive()
    except Exception:  # whatever the target did, the report comes first
        alive = False
    await target.close()
    finished = dt.datetime.now(dt.UTC)
    phases = {
        name: {
            "status": "skipped",
            "started_at": finished.isoformat(),
            "offset_s": round((finished - started).total_seconds(), 6),
            "duration_s": 0.0,
            "level_unit": _LEVEL_UNITS.get(name, "concurrency"),
            "steps": [],
            "results": _empty_results(name),
            "notes": ["not run: the target could not be used"],
        }
        for name in opts.phases
    }
    findings = [Finding("critical", "run", f"The run could not use the target: {reason}.", {"reason": reason})]
    findings += conduct_findings(phases, target.tally.snapshot(), call_timeout_s=PROFILES[opts.profile].call_timeout_s)
    report = {
        "schema_version": 1,
        "tool": {"name": "bemcp stress", "version": __version__},
        "run": _run_section(opts, started, finished),
        "target": {
            "spec": opts.target,
            "kind": target.kind,
            "revision": target.revision,
            "server_info": target.info.server_info if target.info else None,
            "pid": target.pid,
            "tools_discovered": [],
            "tools_used": [],
            "skipped_tools": {},
            "memory_budget_bytes": None,
            "alive_at_end": alive,
            "deaths": [],
            "error": reason,
        },
        "environment": _environment(),
        "thresholds": {"slo_p99_ms": opts.slo_p99_ms, "error_budget": opts.error_budget},
        "phases": phases,
        "timeseries": [],
        "target_samples": [],
        "protection_events": {"source": "none", "rejected": {}, "watchdog": {}, "memory_levels_seen": []},
        "limits": [],
        "findings": [
            {"severity": f.severity, "phase": f.phase, "message": f.message, "data": f.data}
            for f in sorted(findings, key=lambda f: _SEVERITY[f.severity])
        ],
    }
    finalize(report)
    return report


def _run_section(opts: StressOptions, started: dt.datetime, finished: dt.datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_s": round((finished - started).total_seconds(), 3),
        "seed": opts.seed,
        "profile": opts.profile,
        "phases": list(opts.phases),
        "command": opts.command,
        "workers": opts.workers,
        "timeseries_interval_s": 1,
    }


def vars_of(opts: StressOptions) -> dict[str, Any]:
    return {name: getattr(opts, name) for name in opts.__slots__}


async def _run_phase(ctx: PhaseContext, name: str, log: StressLog, say: Any) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    t_start = time.monotonic()
    offset = t_start - ctx.recorder.t0
    say(f"phase {name}")
    log.event("phase_started", phase=name)
    if ctx.deaths:
        outcome = PhaseOutcome(
            "skipped", _LEVEL_UNITS.get(name, "concurrency"), _empty_results(name), ["the target had died"]
        )
    else:
        try:
            outcome = await PHASES[name](ctx)
        except Exception as e:  # the tester's own failure: reported, never a traceback for the user
            ctx.findings.append(
                Finding("critical", name, f"The {name} phase failed in the tester: {type(e).__name__}: {e}", {})
            )
            outcome = PhaseOutcome(
                "aborted", _LEVEL_UNITS.get(name, "concurrency"), _empty_results(name), [f"tester error: {e}"]
            )
    duration = time.monotonic() - t_start
    log.event("phase_finished", phase=name, status=outcome.status, results=outcome.results, notes=outcome.notes)
    return {
        "status": outcome.status,
        "started_at": started.isoformat(),
        "offset_s": round(offset, 6),
        "duration_s": round(duration, 6),
        "level_unit": outcome.level_unit,
        "results": outcome.results,
        "notes": outcome.notes,
    }


def _empty_results(name: str) -> dict[str, Any]:
    empty: dict[str, dict[str, Any]] = {
        "tsunami": {"max_sustainable_concurrency": None},
        "tasks": empty_tasks_results(),
        "avalanche": {"largest_accepted_mb": None, "rejected_above_mb": None, "rss_after_bytes": None},
        "chaos": {"survived": False, "answered_all": False},
        "rate": {"saturation_rate": None},
        "soak": {"rss_slope_bytes_per_s": None, "leak_verdict": "inconclusive"},
    }
    return empty[name]


def _report(
    opts: StressOptions,
    target: Target,
    found: Any,
    rec: dict[str, Any],
    sampler: Sampler,
    ctx: PhaseContext,
    phases: dict[str, dict[str, Any]],
    started: dt.datetime,
    alive_at_end: bool,
) -> dict[str, Any]:
    """The report.json dict before `finalize`; `rec` is `Recorder.to_dict()`."""
    finished = dt.datetime.now(dt.UTC)
    report_phases: dict[str, Any] = {}
    for name, meta in phases.items():
        steps = rec["phases"].get(name, {}).get("steps", [])
        entry = {k: meta[k] for k in ("status", "started_at", "offset_s", "duration_s", "level_unit")}
        entry["steps"] = steps
        entry["results"] = meta["results"]
        if meta["notes"]:
            entry["notes"] = meta["notes"]
        report_phases[name] = entry
    samples = sampler.target_samples
    budget = next((s.memory_budget_bytes for s in reversed(samples) if s.memory_budget_bytes), None)
    events = sampler.protection_events()
    if events["source"] == "none":
        events = _client_side_events(rec)
    if sampler.target_died() and not ctx.deaths:
        ctx.deaths.append({"t": None, "phase": None, "detail": "a sample found the target process gone"})
    outside = target.tally.since(ctx.attributed)  # discovery, and answers that came between steps
    ctx.findings.extend(conduct_findings(report_phases, outside, call_timeout_s=ctx.profile.call_timeout_s))
    findings = sorted(ctx.findings, key=lambda f: _SEVERITY[f.severity])
    used = sorted(
        {
            k
            for p in rec["phases"].values()
            for s in p["steps"]
            for k in s.get("kinds", {})
            if not k.startswith(("chaos:", "rpc:"))
        }
        | _task_tools(report_phases)
    )
    kinds = {k: v["calls"] for k, v in rec["totals"]["kinds"].items()}
    return {
        "schema_version": 1,
        "tool": {"name": "bemcp stress", "version": __version__},
        "run": _run_section(opts, started, finished),
        "target": {
            "spec": opts.target,
            "kind": target.kind,
            "revision": target.revision,
            "server_info": target.info.server_info if target.info else None,
            "pid": target.pid,
            "tools_discovered": [t.name for t in found.tools],
            "tools_used": used,
            "skipped_tools": dict(found.skipped),
            "memory_budget_bytes": budget,
            "alive_at_end": alive_at_end,
            "deaths": ctx.deaths,
        },
        "environment": _environment(),
        "thresholds": {"slo_p99_ms": opts.slo_p99_ms, "error_budget": opts.error_budget},
        "load": ctx.plan.section(kinds),
        "phases": report_phases,
        "timeseries": rec["timeseries"],
        "target_samples": [s.to_dict() for s in samples],
        "protection_events": events,
        "limits": _limits(report_phases, samples),
        "findings": [
            {"severity": f.severity, "phase": f.phase, "message": f.message, "data": f.data} for f in findings
        ],
    }


def _task_tools(phases: dict[str, Any]) -> set[str]:
    """The tool the tasks phase called as tasks, when it made any call (its calls are not steps)."""
    results = (phases.get("tasks") or {}).get("results") or {}
    tool = results.get("tool")
    return {tool} if isinstance(tool, str) and results.get("calls") else set()


def _client_side_events(rec: dict[str, Any]) -> dict[str, Any]:
    rejected: dict[str, int] = {}
    for phase in rec["phases"].values():
        for step in phase["steps"]:
            for key, n in step.get("details", {}).items():
                outcome, _, detail = key.partition(":")
                if outcome == "overload":
                    rejected[detail or "unknown"] = rejected.get(detail or "unknown", 0) + n
    return {"source": "client" if rejected else "none", "rejected": rejected, "watchdog": {}, "memory_levels_seen": []}


def _limits(phases: dict[str, Any], samples: list[Any]) -> list[dict[str, Any]]:
    limits: list[dict[str, Any]] = []
    t = phases.get("tsunami")
    if t is not None and t["status"] != "skipped":
        r = t["results"]
        reason = str(r.get("stop_reason", ""))
        bounded = reason.startswith("max_level") or "client-bound" in reason
        limits.append(
            {
                "name": "max sustainable concurrency",
                "value": r["max_sustainable_concurrency"],
                "unit": "callers",
                "phase": "tsunami",
                "confidence": "medium" if bounded else "high",
                "how": "the highest closed-model step within the SLO and the error budget"
                + (" (the ramp's ceiling: the true limit is higher)" if bounded else ""),
            }
        )
    rt = phases.get("rate")
    if rt is not None and rt["status"] != "skipped":
        r = rt["results"]
        behind = r.get("sender_behind_rates") or []
        sat = r["saturation_rate"]
        limits.append(
            {
                "name": "highest rate kept up with",
                "value": r.get("max_good_rate"),
                "unit": "calls/s",
                "phase": "rate",
                "confidence": "medium" if r.get("max_good_rate") in behind else "high",
                "how": "the highest offered rate, below the first that failed, whose step kept up (ok ≥ 95% of "
                "offered) within the SLO and the budgets",
            }
        )
        limits.append(
            {
                "name": "saturation rate",
                "value": sat,
                "unit": "calls/s",
                "phase": "rate",
                "confidence": "medium" if sat in behind else "high",
                "how": "the first offered rate that failed: ok < 95% of offered, or p99, errors or overloads past "
                "the thresholds"
                + (" (the sender fell behind there: maybe the tester's limit)" if sat in behind else ""),
            }
        )
    av = phases.get("avalanche")
    if av is not None and av["status"] != "skipped":
        limits.append(
            {
                "name": "largest accepted allocation",
                "value": av["results"]["largest_accepted_mb"],
                "unit": "MB",
                "phase": "avalanche",
                "confidence": "medium",
                "how": "doubling allocate_memory sizes until the server refused one",
            }
        )
    tk = phases.get("tasks")
    if tk is not None and tk["status"] != "skipped" and tk["results"].get("steps"):
        r = tk["results"]
        top = max(int(s["level"]) for s in r["steps"])
        ceiling = r.get("first_bad_level") is None
        limits.append(
            {
                "name": "max concurrent tasks",
                "value": r["max_concurrent_tasks"],
                "unit": "tasks",
                "phase": "tasks",
                "confidence": "medium" if ceiling else "high",
                "how": "the highest step of concurrent tasks with none lost, errors within the budget and most "
                "creations accepted"
                + (f" (the ramp's ceiling, {top}: the true limit may be higher)" if ceiling else ""),
            }
        )
    limit_samples = [s.concurrency_limit for s in samples if s.concurrency_limit]
    if limit_samples:
        limits.append(
            {
                "name": "server concurrency limit",
                "value": limit_samples[-1],
                "unit": "calls",
                "phase": "run",
                "confidence": "high",
                "how": "read from the target's /metrics",
            }
        )
    return limits


def _environment() -> dict[str, Any]:
    from bemcp.runtime.cgroup import detect_memory_limit

    limit = None
    with contextlib.suppress(Exception):
        detected = detect_memory_limit()
        limit = detected.limit if detected.container else None
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "container_limit_bytes": limit,
    }


def run_sync(opts: StressOptions, say: Any, progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    return asyncio.run(run(opts, say, progress))
