"""The task registry: every tools/call, resources/read and prompts/get is a tracked task."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class TaskRecord:
    id: int
    method: str
    name: str
    started: float  # time.monotonic()
    deadline: float | None
    task: asyncio.Task[Any] | None
    state: str = "running"
    cancel_reason: str | None = None


class TaskManager:
    """Registry of in-flight calls and their outcomes."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.inflight: dict[int, TaskRecord] = {}
        self.completed: Counter[str] = Counter()

    def begin(self, method: str, name: str, timeout: float | None) -> TaskRecord:
        now = time.monotonic()
        rec = TaskRecord(
            next(self._ids), method, name, now, None if timeout is None else now + timeout, asyncio.current_task()
        )
        self.inflight[rec.id] = rec
        return rec

    def end(self, rec: TaskRecord, outcome: str) -> None:
        rec.state = outcome
        self.inflight.pop(rec.id, None)
        self.completed[outcome] += 1

    @property
    def in_flight(self) -> int:
        return len(self.inflight)
