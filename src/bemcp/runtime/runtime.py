"""`Runtime`: the owner of every protection system and background resource a server uses.

It owns the task registry, admission (the concurrency ceiling), the Smart
Memory Manager, the Task Watchdog, the non-blocking task log, the metrics and
the worker pool for sync tools. `start()` and `stop()` are explicit and
idempotent; `stop()` joins every thread it started, so a start/stop/start
cycle in one process leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

from bemcp.runtime.admission import Admission, Overloaded
from bemcp.runtime.limits import make_limit
from bemcp.runtime.memory import MemoryConfig, MemoryLevel, MemoryLimit, MemoryManager
from bemcp.runtime.sandbox import Sandbox
from bemcp.runtime.stats import RuntimeMetrics
from bemcp.runtime.tasklog import TaskLog
from bemcp.runtime.tasks import TaskManager
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
    deadline_grace: float = 1.0
    drain_timeout: float = 10.0
    max_fanout_nodes: int = 10_000
    # False turns off shedding, admission, the memory sampler, the watchdog, metrics and the task log:
    # only for measuring what they cost (benchmarks/bench_overhead.py), never for serving.
    protections: bool = True


class Runtime:
    def __init__(self, config: RuntimeConfig | None = None, *, exit_process: Callable[[int], None] = os._exit) -> None:
        self.config = cfg = config or RuntimeConfig()
        self.tasks = TaskManager(cfg.max_fanout_nodes)
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
        self.log_tasks = self.tasklog.enabled  # read on every call: a plain attribute
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
        self.sandbox = Sandbox()
        self.metrics = RuntimeMetrics(self)
        self.admission.call_time_ns = self.metrics.recent_call_ns
        self._draining = False
        # True while a new call may have to be shed (draining, or memory at high or above): the hot
        # path reads this one flag and only then asks why.
        self.shedding = False
        self.memory.add_listener(self._on_memory_level)
        self.sync_running = 0  # worker threads busy with a call
        self.sync_abandoned = 0  # of those, calls already answered (past their deadline)
        self._pool: ThreadPoolExecutor | None = None
        self._started_at: float | None = None
        self._exit = exit_process
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync_lock = threading.Lock()

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
        self._pool = ThreadPoolExecutor(self.config.sync_workers, thread_name_prefix="bemcp-sync")
        self._started_at = time.monotonic()
        self.draining = False
        self.admission.set_draining(False)
        if self.tasklog.enabled:
            self.tasklog.start()
            self.tasklog.attach(logging.getLogger("bemcp"), exclusive=False)
        if self.protect:
            self.memory.start()
            if loop is not None:  # without a loop (embedded, tests) there is no heartbeat to watch
                self.watchdog.start(loop)

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        self.watchdog.stop()
        self.memory.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        self.sandbox.close()
        self.tasklog.stop()
        self._loop = None

    @property
    def draining(self) -> bool:
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        self._update_shedding()

    def _on_memory_level(self, old: MemoryLevel, new: MemoryLevel) -> None:
        self._update_shedding()

    def _update_shedding(self) -> None:
        self.shedding = self._draining or self.memory.level >= MemoryLevel.HIGH

    @property
    def uptime(self) -> float:
        return 0.0 if self._started_at is None else time.monotonic() - self._started_at

    @property
    def ready(self) -> bool:
        return self.running and not self.draining and self.memory.level < MemoryLevel.CRITICAL

    # -- calls ---------------------------------------------------------------

    def shed(self, read_only: bool) -> Overloaded | None:
        """The memory or drain verdict for a new call, without touching admission (O(1))."""
        if self.draining:
            return self.overloaded("draining")
        if self.memory.should_shed(read_only) is not None:
            return self.overloaded("memory_pressure")
        return None

    def overloaded(self, reason: str) -> Overloaded:
        adm = self.admission
        retry = (
            1000
            if reason == "memory_pressure"
            else adm.retry_after_ms("draining" if reason == "draining" else "concurrency_limit")
        )
        return Overloaded(reason, retry, adm.limit, adm.in_flight, adm.queued)

    async def run_sync(self, fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
        """Run a blocking function in the bounded pool, never on the event loop.

        A call past its deadline is answered at once, but its thread cannot be
        interrupted: it is counted as abandoned, and when every worker is
        abandoned new sync calls are refused instead of queueing behind them.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("Runtime is not started")
        if self.sync_abandoned >= self.config.sync_workers:
            raise Overloaded("concurrency_limit", 1000, self.config.sync_workers, self.sync_running, 0)
        answered = threading.Event()

        def work() -> T:
            with self._sync_lock:
                self.sync_running += 1
            try:
                return fn(**kwargs)
            finally:
                with self._sync_lock:
                    self.sync_running -= 1
                    if answered.is_set():
                        self.sync_abandoned -= 1

        future = asyncio.get_running_loop().run_in_executor(pool, work)
        try:
            return await future
        except asyncio.CancelledError:
            with self._sync_lock:
                if not future.done():  # still queued or running: the thread outlives this call
                    answered.set()
                    self.sync_abandoned += 1
            raise

    # -- drain and emergency ---------------------------------------------------

    async def drain(self, timeout: float | None = None) -> bool:
        """Refuse new calls (`draining`) and wait for in-flight ones; True if they all finished."""
        self.draining = True
        self.admission.set_draining(True)
        drained = await self.tasks.wait_idle(self.config.drain_timeout if timeout is None else timeout)
        log.warning("drain %s: %d calls still in flight", "complete" if drained else "timed out", self.tasks.in_flight)
        return drained

    def _deadlines(self) -> list[tuple[float, Callable[[str], bool], str]]:
        # Runs on the watchdog thread: list() copies the dict in one step under the GIL.
        return [
            (r.deadline, r.cancel, r.name)
            for r in list(self.tasks.inflight.values())
            if r.deadline is not None and r.cancel is not None
        ]

    def _on_watchdog_event(self, event: WatchdogEvent) -> None:
        self.tasklog.event(event.kind, level=logging.WARNING, **event.detail)

    def _emergency(self, reason: str) -> None:
        """Watchdog thread: stop admitting, give in-flight work a grace period, flush the log, exit 75."""
        log.critical("emergency shutdown: %s", reason)
        self.draining = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.admission.set_draining, True)
        deadline = time.monotonic() + self.config.drain_timeout
        while self.tasks.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self.tasklog.event("emergency_exit", level=logging.CRITICAL, reason=reason, in_flight=self.tasks.in_flight)
        self.tasklog.stop()
        self._exit(EX_TEMPFAIL)

    def health(self) -> dict[str, Any]:
        """What `server_health` and /readyz report."""
        adm = self.admission.snapshot()
        mem = self.memory.snapshot()
        status = "draining" if self.draining else "degraded" if mem.level >= MemoryLevel.HIGH else "ok"
        return {
            "status": status,
            "ready": self.ready,
            "uptime_s": round(self.uptime, 3),
            "limit": adm.limit,
            "in_flight": self.tasks.in_flight,
            "queued": adm.queued,
            "admitted": adm.admitted,
            "rejected": {**adm.rejected, **self.metrics.shed_counts()},
            "completed": dict(self.tasks.completed),
            "memory": {
                "limit_bytes": mem.limit,
                "source": mem.source,
                "container": mem.container,
                "budget_bytes": mem.budget,
                "rss_bytes": mem.rss,
                "usage_bytes": mem.usage,
                "reserved_bytes": mem.reserved,
                "level": MemoryLevel(mem.level).label,
            },
            "loop_lag_ms": round(self.watchdog.loop_lag * 1000, 3),
            "watchdog": self.watchdog.snapshot(),
            "sync_threads": {
                "workers": self.config.sync_workers,
                "running": self.sync_running,
                "abandoned": self.sync_abandoned,
            },
            "loop_tasks": self._loop_tasks(),
            "pid": os.getpid(),
        }

    def _loop_tasks(self) -> int | None:
        """Tasks alive on the serving loop (to show that a storm leaves none behind)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        return len(asyncio.all_tasks(loop))
