"""An in-memory task store: for tests, and for a server that says it needs no durability. One process only."""

from __future__ import annotations

import builtins
import dataclasses
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from bemcp.tasks.model import TERMINAL, TaskRecord, TaskStatus
from bemcp.tasks.store import TaskNotFound

SIGNAL_MAX_AGE_S = 600.0  # a signal nobody took in ten minutes is for a worker that never came back


class MemoryTaskStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tasks: dict[str, TaskRecord] = {}  # insertion order is creation order
        self._answers: dict[str, dict[str, Any]] = {}  # task id -> answers the worker has not taken yet
        self._signals: dict[str, deque[tuple[str, str, float]]] = {}  # worker -> (task id, kind, at), oldest first
        self._leases: dict[str, float] = {}  # worker -> when its lease ends

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create(self, record: TaskRecord) -> None:
        if record.task_id in self._tasks:
            raise ValueError(f"task {record.task_id!r} exists")
        # No pending input reads back as None in every store, whether it was stored as None or {}.
        self._tasks[record.task_id] = dataclasses.replace(record, input_requests=record.input_requests or None)

    def _visible(self, task_id: str, owner: str) -> TaskRecord | None:
        rec = self._tasks.get(task_id)
        if rec is None or rec.owner != owner or rec.expired(self._clock()):
            return None
        return rec

    async def get(self, task_id: str, owner: str) -> TaskRecord | None:
        return self._visible(task_id, owner)

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
        inputs = None if status is TaskStatus.WORKING else rec.input_requests
        self._tasks[task_id] = dataclasses.replace(
            rec, status=status, status_message=message, updated_at=self._clock(), input_requests=inputs
        )
        return True

    async def need_input(self, task_id: str, requests: dict[str, dict[str, Any]], message: str | None) -> bool:
        rec = self._tasks.get(task_id)
        if rec is None:
            raise TaskNotFound(task_id)
        if rec.status in TERMINAL:
            return False
        merged = {**(rec.input_requests or {}), **requests}
        self._tasks[task_id] = dataclasses.replace(
            rec,
            status=TaskStatus.INPUT_REQUIRED,
            status_message=message,
            updated_at=self._clock(),
            input_requests=merged or None,
        )
        return True

    async def answer(self, task_id: str, owner: str, responses: dict[str, Any]) -> TaskRecord | None:
        rec = self._visible(task_id, owner)
        if rec is None or rec.status in TERMINAL:
            return rec
        pending = rec.input_requests or {}
        answered = {k: v for k, v in responses.items() if k in pending}
        if not answered:
            return rec
        left = {k: v for k, v in pending.items() if k not in answered}
        now = self._clock()
        rec = self._tasks[task_id] = dataclasses.replace(rec, input_requests=left or None, updated_at=now)
        self._answers.setdefault(task_id, {}).update(answered)
        self._signal(rec.worker, task_id, "input", now)
        return rec

    async def take_answers(self, task_id: str) -> dict[str, Any]:
        return self._answers.pop(task_id, {})

    async def cancel(self, task_id: str, owner: str, message: str | None) -> TaskRecord | None:
        rec = self._visible(task_id, owner)
        if rec is None or rec.status in TERMINAL:
            return rec
        rec = await self.finish(task_id, TaskStatus.CANCELLED, message=message)
        self._signal(rec.worker, task_id, "cancel", rec.updated_at)
        return rec

    def _signal(self, worker: str, task_id: str, kind: str, at: float) -> None:
        self._signals.setdefault(worker, deque()).append((task_id, kind, at))

    async def signals(self, worker: str, limit: int = 1000) -> builtins.list[tuple[str, str]]:
        queued = self._signals.get(worker)
        taken: list[tuple[str, str]] = []
        while queued and len(taken) < limit:
            task_id, kind, _ = queued.popleft()
            taken.append((task_id, kind))
        if queued is not None and not queued:
            del self._signals[worker]
        return taken

    async def heartbeat(self, worker: str, lease_s: float) -> None:
        self._leases[worker] = self._clock() + lease_s

    async def expired_workers(self) -> builtins.list[str]:
        now = self._clock()
        return [w for w, until in self._leases.items() if until <= now]

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

    async def interrupt(
        self,
        worker: str,
        error: dict[str, Any],
        message: str,
        *,
        resumable: frozenset[str] = frozenset(),
        claimer: str | None = None,
    ) -> tuple[int, builtins.list[TaskRecord]]:
        now = self._clock()
        failed, claimed = 0, []
        for rec in list(self._tasks.values()):
            if rec.worker != worker or rec.status in TERMINAL:
                continue
            if claimer is not None and rec.name in resumable and rec.request is not None:
                moved = dataclasses.replace(
                    rec, worker=claimer, status=TaskStatus.WORKING, input_requests=None, updated_at=now
                )
                self._tasks[rec.task_id] = moved
                claimed.append(moved)
            else:
                await self.finish(rec.task_id, TaskStatus.FAILED, error=error, message=message)
                failed += 1
        self._leases.pop(worker, None)
        return failed, claimed

    async def sweep(self) -> int:
        now = self._clock()
        gone = {t for t, r in self._tasks.items() if r.expired(now)}
        for task_id in gone:
            del self._tasks[task_id]
            self._answers.pop(task_id, None)
        cutoff = now - SIGNAL_MAX_AGE_S
        for worker, queued in list(self._signals.items()):
            kept = deque(s for s in queued if s[0] not in gone and s[2] >= cutoff)
            if kept:
                self._signals[worker] = kept
            else:
                del self._signals[worker]
        return len(gone)
