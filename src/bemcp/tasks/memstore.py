"""An in-memory task store: for tests, and for a server that says it needs no durability. One process only."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from bemcp.tasks.model import TERMINAL, TaskRecord, TaskStatus
from bemcp.tasks.store import TaskNotFound


class MemoryTaskStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tasks: dict[str, TaskRecord] = {}  # insertion order is creation order

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create(self, record: TaskRecord) -> None:
        if record.task_id in self._tasks:
            raise ValueError(f"task {record.task_id!r} exists")
        self._tasks[record.task_id] = record

    async def get(self, task_id: str, owner: str) -> TaskRecord | None:
        rec = self._tasks.get(task_id)
        if rec is None or rec.owner != owner or rec.expired(self._clock()):
            return None
        return rec

    async def list(self, owner: str, cursor: str | None, limit: int) -> tuple[list[TaskRecord], str | None]:
        now = self._clock()
        live = [r for r in self._tasks.values() if r.owner == owner and not r.expired(now)]
        start = 0
        if cursor is not None:
            start = next((i + 1 for i, r in enumerate(live) if r.task_id == cursor), len(live))
        page = live[start : start + limit]
        more = start + limit < len(live)
        return page, (page[-1].task_id if more and page else None)

    async def update(self, task_id: str, status: TaskStatus, message: str | None) -> bool:
        if status in TERMINAL:
            raise ValueError("a terminal status is set with finish()")
        rec = self._tasks.get(task_id)
        if rec is None:
            raise TaskNotFound(task_id)
        if rec.status in TERMINAL:
            return False
        self._tasks[task_id] = dataclasses.replace(rec, status=status, status_message=message, updated_at=self._clock())
        return True

    async def finish(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> TaskRecord:
        if status not in TERMINAL:
            raise ValueError(f"{status} is not terminal")
        rec = self._tasks.get(task_id)
        if rec is None:
            raise TaskNotFound(task_id)
        if rec.status in TERMINAL:
            return rec
        rec = self._tasks[task_id] = dataclasses.replace(
            rec, status=status, result=result, error=error, status_message=message, updated_at=self._clock()
        )
        return rec

    async def interrupt(self, worker: str, error: dict[str, Any], message: str) -> int:
        n = 0
        for rec in list(self._tasks.values()):
            if rec.worker == worker and rec.status not in TERMINAL:
                await self.finish(rec.task_id, TaskStatus.FAILED, error=error, message=message)
                n += 1
        return n

    async def sweep(self) -> int:
        now = self._clock()
        gone = [t for t, r in self._tasks.items() if r.expired(now)]
        for task_id in gone:
            del self._tasks[task_id]
        return len(gone)
