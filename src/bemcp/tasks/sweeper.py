"""Deletes expired tasks every `interval_s`, in a task this object owns (start and stop are explicit)."""

from __future__ import annotations

import asyncio
import logging

from bemcp.tasks.store import TaskStore

log = logging.getLogger("bemcp.tasks")


class TaskSweeper:
    def __init__(self, store: TaskStore, interval_s: float = 60.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.store = store
        self.interval_s = interval_s
        self.swept = 0  # tasks deleted since start
        self.failures = 0  # sweeps that raised (the store was unreachable, say); the next one tries again
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Start sweeping on the running loop; idempotent."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="bemcp-task-sweeper")

    async def stop(self) -> None:
        """Stop, and wait until a sweep in progress has ended; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def sweep_once(self) -> int:
        try:
            n = await self.store.sweep()
        except Exception:
            self.failures += 1
            log.warning("sweeping expired tasks failed; retrying in %gs", self.interval_s, exc_info=True)
            return 0
        self.swept += n
        return n

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.sweep_once()
