"""`Runtime`: the owner of every protection system and background resource a server uses.

It owns the task registry, admission (the concurrency ceiling), the Smart
Memory Manager, the Task Watchdog, the non-blocking task log, the metrics and
the worker pool for sync tools. `start()` and `stop()` are explicit and
idempotent; `stop()` joins every thread it started, so a start/stop/start
cycle in one process leaves nothing behind, with one exception it names in
the log: a sync tool's thread that is still running (Python cannot stop it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

from bemcp.runtime.admission import Admission
from bemcp.runtime.cancel import CancelReason
from bemcp.runtime.cgroup import MemoryLimit
from bemcp.runtime.health import HealthSnapshot, SyncThreads, TasksSnapshot, rejections
from bemcp.runtime.limits import make_limit
from bemcp.runtime.memory import MemoryConfig, MemoryLevel, MemoryManager
from bemcp.runtime.metrics import RuntimeMetrics
from bemcp.runtime.pipeline import CallPipeline
from bemcp.runtime.refusal import Refusal, RefusalReason
from bemcp.runtime.registry import CallRegistry
from bemcp.runtime.syncpool import SyncPool
from bemcp.runtime.tasklog import TaskLog
from bemcp.runtime.watchdog import Watchdog, WatchdogConfig, WatchdogEvent

T = TypeVar("T")
log = logging.getLogger("bemcp.runtime")

EX_TEMPFAIL = 75  # the emergency-shutdown exit code; the supervisor restarts on it


@dataclass(slots=True)
class RuntimeConfig:
    sync_workers: int = 32
    call_timeout: float | None = None  # seconds; per-tool `timeout=` overrides
    debug: bool = False
    max_concurrency: int = 1000
    queue_size: int = 1000
    queue_timeout_ms: float = 1000.0
    limit: str = "fixed"  # fixed | adaptive | vegas
    memory_fraction: float = 0.8
    memory_limit_mb: float | None = None  # overrides detection (a limit the runtime cannot see)
    log_file: str | None = None  # JSON lines; None: the task log goes to stderr
    task_log: bool = True
    stall_threshold: float = 1.0
    emergency_threshold: float = 30.0
    # Seconds cancelled work may take to end: the watchdog answers a call this long past its deadline, and a
    # call cancelled otherwise (client, drain) waits this long for its work before abandoning it.
    deadline_grace: float = 1.0
    drain_timeout: float = 10.0
    # False turns off shedding, admission, the memory sampler, the watchdog, metrics and the task log:
    # only for measuring what they cost (benchmarks/bench_overhead.py), never for serving.
    protections: bool = True


class Runtime:
    def __init__(self, config: RuntimeConfig | None = None, *, exit_process: Callable[[int], None] = os._exit) -> None:
        self.config = cfg = config or RuntimeConfig()
        self.calls = CallRegistry(cfg.deadline_grace)
        self.admission = Admission(
            make_limit(cfg.limit, cfg.max_concurrency, cfg.max_concurrency),
            queue_size=cfg.queue_size,
            queue_timeout=cfg.queue_timeout_ms / 1000,
        )
        limit = None
        if cfg.memory_limit_mb is not None:
            physical = psutil.virtual_memory().total
            limit = MemoryLimit(int(cfg.memory_limit_mb * 1024 * 1024), "configured", False, physical)
        self.memory = MemoryManager(MemoryConfig(memory_fraction=cfg.memory_fraction), limit=limit)
        self.protect = cfg.protections
        self.tasklog = TaskLog(cfg.log_file, enabled=cfg.task_log and cfg.protections)
        self.watchdog = Watchdog(
            WatchdogConfig(
                stall_threshold=cfg.stall_threshold,
                emergency_threshold=cfg.emergency_threshold,
                deadline_grace=cfg.deadline_grace,
            ),
            deadlines=self._deadlines,
            memory_critical=self.memory.is_critical,
            on_event=self._on_watchdog_event,
            on_emergency=self._emergency,
        )
        self._on_stop: list[Callable[[], None]] = []
        self.metrics = RuntimeMetrics(self.health_snapshot)
        self.admission.call_time_ns = self.metrics.recent_call_ns
        self.pipeline = CallPipeline(
            self.admission,
            self.calls,
            self.memory,
            self.tasklog,
            self.metrics.latency,
            self.metrics.shed,
            protect=cfg.protections,
        )
        # The one entry for every call: see `CallPipeline.run`. A bound method held here: no extra frame.
        self.run_call = self.pipeline.run
        self.memory.add_listener(self._on_memory_level)
        self.refused: Counter[str] = Counter()  # calls refused after admission (workers_exhausted)
        self._pool: SyncPool | None = None
        self._started_at: float | None = None
        self._exit = exit_process
        self._loop: asyncio.AbstractEventLoop | None = None
        self.left_behind: str | None = None  # what the last stop() could not stop (see describe_left_behind)
        # What the server's task runner reports (set by the server that owns one); None: it runs no tasks.
        self.tasks_snapshot: Callable[[], TasksSnapshot | None] = lambda: None

    @property
    def running(self) -> bool:
        return self._pool is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start every part; call from the event loop's thread (the watchdog watches that loop)."""
        if self._pool is not None:
            return
        if loop is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
        self._loop = loop
        self._pool = SyncPool(self.config.sync_workers)
        self.left_behind = None
        self._started_at = time.monotonic()
        self.admission.set_draining(False)
        self.pipeline.update_shedding()
        if self.tasklog.enabled:
            self.tasklog.start()
            self.tasklog.attach(logging.getLogger("bemcp"), exclusive=False)
        if self.protect:
            self.memory.start()
            if loop is not None:  # without a loop (embedded, tests) there is no heartbeat to watch
                self.watchdog.start(loop)

    def stop(self) -> None:
        """Stop every part and join its threads, except sync threads still running a tool: those are left
        behind (daemon threads, which never hold the process at exit), named in the log and in `left_behind`."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        self.watchdog.stop()
        self.memory.stop()
        busy = pool.stop()
        self.left_behind = self.describe_left_behind(busy)
        if self.left_behind:
            log.warning("runtime stopped; left behind: %s", self.left_behind)
        for close in reversed(self._on_stop):
            close()
        self.tasklog.stop()
        self._loop = None

    def on_stop(self, close: Callable[[], None]) -> None:
        """Have `close` run when the runtime stops (after its threads end, so nothing still uses what it frees);
        last registered, first run."""
        self._on_stop.append(close)

    def describe_left_behind(self, busy: list[tuple[str, bool, float]] | None = None) -> str | None:
        """What is still running that no one will answer or wait for, in one line; None when nothing is.

        Lock-free reads only: a signal handler calls this.
        """
        if busy is None:
            pool = self._pool
            busy = pool.busy() if pool is not None else []
        calls = self.calls
        parts = []
        unanswered = [r.name for r in list(calls.inflight.values())]
        if unanswered:
            parts.append(f"{len(unanswered)} unanswered calls still running ({_names(unanswered)})")
        abandoned = [r.name for r in list(calls.abandoned.values())]
        if abandoned:
            parts.append(f"{len(abandoned)} abandoned calls still running after their answer ({_names(abandoned)})")
        if busy:
            parts.append(f"{len(busy)} sync threads still running ({_names(name for name, _, _ in busy)})")
        return "; ".join(parts) or None

    @property
    def sync_running(self) -> int:
        """Worker threads running a sync tool."""
        pool = self._pool
        return pool.running if pool is not None else 0

    @property
    def sync_abandoned(self) -> int:
        """Of those, threads whose call is already answered."""
        pool = self._pool
        return pool.abandoned if pool is not None else 0

    @property
    def draining(self) -> bool:
        """Refusing new calls to shut down; admission holds the one flag."""
        return self.admission.draining

    def _on_memory_level(self, old: MemoryLevel, new: MemoryLevel) -> None:
        self.pipeline.update_shedding()

    @property
    def uptime(self) -> float:
        return 0.0 if self._started_at is None else time.monotonic() - self._started_at

    @property
    def ready(self) -> bool:
        # Without protections the memory sampler is off: its start-up sample says nothing about now.
        return self.running and not self.draining and (not self.protect or self.memory.level < MemoryLevel.CRITICAL)

    # -- calls ---------------------------------------------------------------

    async def run_sync(self, fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
        """Run a blocking function in the bounded pool, never on the event loop.

        A call cancelled while its thread runs (its deadline, the client, a drain) is answered at once, but the
        thread cannot be interrupted: it is counted as abandoned and keeps the call's admission slot until it
        returns. Once every worker is abandoned, new sync calls are refused at once (`workers_exhausted`)
        instead of queueing behind them.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("Runtime is not started")
        if pool.abandoned >= pool.workers:
            self.refused["workers_exhausted"] += 1
            raise Refusal(
                RefusalReason.WORKERS_EXHAUSTED,
                1000,
                pool.workers,
                pool.running,
                0,
                message=f"Server busy: all {pool.workers} sync workers are held by abandoned calls (answered, "
                "their threads still running); retry after 1000 ms",
            )
        return await pool.run(fn, kwargs, self._hold_current_call)

    def _hold_current_call(self) -> Callable[[], None] | None:
        """The current call's work now includes a thread that outlives it: hold the call until the thread ends."""
        calls = self.calls
        rec = calls.find(asyncio.current_task())
        if rec is None:  # work the runtime did not start (a task of the tool's own): counted, not held
            return None
        calls.hold(rec)
        return functools.partial(calls.release, rec)

    # -- drain and emergency ---------------------------------------------------

    async def drain(self, timeout: float | None = None) -> bool:
        """Refuse new calls (`draining`) and give in-flight calls, and abandoned work, `timeout` seconds to end.

        Calls still running then are cancelled and answered (-32051, `drain_timeout`), given the deadline
        grace to end; what ignores even that is left behind, named in the log. True if everything ended.
        """
        timeout = self.config.drain_timeout if timeout is None else timeout
        self.start_draining()
        calls = self.calls
        busy = len(calls.inflight) + len(calls.abandoned)
        started = time.monotonic()
        if await calls.wait_idle(timeout, abandoned=True):
            if busy:
                log.warning("drain complete: %d calls ended in %.1fs", busy, time.monotonic() - started)
            else:
                log.info("drain complete: no call in flight")
            return True
        cut = self.cut_off()
        if cut:
            await calls.wait_idle(self.config.deadline_grace)
        left = self.describe_left_behind()
        log.warning(
            "drain timed out after %gs: %s; left behind: %s",
            timeout,
            f"{cut} calls still in flight were cancelled and answered (drain_timeout)" if cut else "no call in flight",
            left or "nothing",
        )
        return False

    def start_draining(self) -> None:
        """Refuse new calls (`draining`) from now on; queued ones are refused at once."""
        self.admission.set_draining(True)
        self.pipeline.update_shedding()

    def cut_off(self, reason: CancelReason = CancelReason.DRAIN_TIMEOUT) -> int:
        """Cancel every call in flight with `reason` (each is answered); returns how many. On the loop thread."""
        cut = 0
        for rec in list(self.calls.inflight.values()):
            if rec.cancel is not None and rec.cancel(reason):
                cut += 1
        return cut

    def exit_on_signal(self, signum: int) -> None:
        """A second SIGTERM/SIGINT: exit at once with 128 + signum, naming what is left behind.

        Safe in a signal handler: one write(2) to stderr, no logging locks, no joins.
        """
        left = self.describe_left_behind() or "nothing"
        line = f"{_signal_name(signum)} again: exiting at once; left behind: {left}\n"
        with contextlib.suppress(OSError):
            os.write(2, line.encode(errors="replace"))
        self._exit(128 + signum)

    def exit_now(self, code: int = 0) -> None:
        """End the process at once after an orderly shutdown left work behind (`left_behind`), which no
        interpreter exit should wait for or run its clean-up under. Flushes the logs and stdio first."""
        log.warning("exiting (code %d) with work left behind: %s", code, self.left_behind)
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self._exit(code)

    def _deadlines(self) -> list[tuple[float, Callable[[CancelReason], bool], str]]:
        # Runs on the watchdog thread: list() copies the dict in one step under the GIL.
        return [
            (r.deadline, r.cancel, r.name)
            for r in list(self.calls.inflight.values())
            if r.deadline is not None and r.cancel is not None
        ]

    def _on_watchdog_event(self, event: WatchdogEvent) -> None:
        self.tasklog.event(event.kind, level=logging.WARNING, **event.detail)

    def _emergency(self, reason: str) -> None:
        """Watchdog thread: stop admitting, give in-flight work the drain timeout, answer what a live loop still
        can, flush the log, exit 75."""
        log.critical("emergency shutdown: %s", reason)
        loop = self._loop
        alive = loop is not None and not loop.is_closed()
        if alive:
            assert loop is not None
            # Admission (and its one draining flag) belongs to the loop's thread.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.start_draining)
        else:
            self.start_draining()
        calls = self.calls
        deadline = time.monotonic() + self.config.drain_timeout
        while (calls.inflight or calls.abandoned) and time.monotonic() < deadline:
            time.sleep(0.05)
        if calls.inflight and alive and not self.watchdog.snapshot().stalled:
            assert loop is not None
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.cut_off)
            deadline = time.monotonic() + self.config.deadline_grace
            while calls.inflight and time.monotonic() < deadline:
                time.sleep(0.05)
        left = self.describe_left_behind()
        log.critical("emergency exit (75); left behind: %s", left or "nothing")
        self.tasklog.event("emergency_exit", level=logging.CRITICAL, reason=reason, in_flight=calls.in_flight)
        self.tasklog.stop()
        self._exit(EX_TEMPFAIL)

    def health_snapshot(self) -> HealthSnapshot:
        """The runtime at one moment: what `server_health`, /metrics and /readyz report."""
        adm = self.admission.snapshot()
        mem = self.memory.snapshot()
        status = "draining" if adm.draining else "degraded" if mem.level >= MemoryLevel.HIGH else "ok"
        return HealthSnapshot(
            status=status,
            ready=self.ready,
            uptime_s=self.uptime,
            admission=adm,
            calls=self.calls.snapshot(),
            rejected=rejections(adm.rejected, self.metrics.shed_counts(), self.refused),
            memory=mem,
            watchdog=self.watchdog.snapshot(),
            task_log=self.tasklog.snapshot(),
            sync_threads=SyncThreads(self.config.sync_workers, self.sync_running, self.sync_abandoned),
            loop_tasks=self._loop_tasks(),
            pid=os.getpid(),
            tasks=self.tasks_snapshot(),
        )

    def health(self) -> dict[str, Any]:
        """`health_snapshot()` as the JSON `server_health` answers."""
        return self.health_snapshot().to_wire()

    def _loop_tasks(self) -> int | None:
        """Tasks alive on the serving loop (to show that a storm leaves none behind)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        return len(asyncio.all_tasks(loop))


def _names(names: Iterable[str]) -> str:
    """`block x2, swallow`: each name once, with its count, most frequent first."""
    return ", ".join(n if k == 1 else f"{n} x{k}" for n, k in Counter(names).most_common())


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
