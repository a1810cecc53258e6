"""`Runtime`: the owner of every background resource a server uses."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from bemcp.runtime.tasks import TaskManager

T = TypeVar("T")


@dataclass(slots=True)
class RuntimeConfig:
    sync_workers: int = 32
    call_timeout: float | None = None  # seconds; per-tool `timeout=` overrides
    debug: bool = False


class Runtime:
    """Owns the task registry and the worker pool for sync tools.

    `start()` and `stop()` are explicit and idempotent; `stop()` joins every
    thread this object started.
    """

    def __init__(self, config: RuntimeConfig | None = None) -> None:
        self.config = config or RuntimeConfig()
        self.tasks = TaskManager()
        self._pool: ThreadPoolExecutor | None = None
        self._started_at: float | None = None

    @property
    def running(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        if self._pool is not None:
            return
        self._pool = ThreadPoolExecutor(self.config.sync_workers, thread_name_prefix="bemcp-sync")
        self._started_at = time.monotonic()

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    @property
    def uptime(self) -> float:
        return 0.0 if self._started_at is None else time.monotonic() - self._started_at

    async def run_sync(self, fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
        """Run a blocking function in the bounded pool, never on the event loop."""
        if self._pool is None:
            raise RuntimeError("Runtime is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, **kwargs))
