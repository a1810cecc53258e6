"""The one small interface every task store implements, and the rules all of them keep.

- A terminal status never changes: of a cancel racing a completion, the first to be stored wins, atomically,
  and both callers learn which one that was (`finish` returns the stored record).
- A task another owner created, and a task past its TTL, are both "unknown" to `get` (None): never someone
  else's data, never a stale result.
- `interrupt(worker, ...)` is what a restarted process calls first: its working tasks end as failed, with the
  reason, so that a client polling them gets an answer instead of "working" forever.
"""

from __future__ import annotations

from typing import Any, Protocol

from bemcp.tasks.model import TaskRecord, TaskStatus


class TaskNotFound(LookupError):
    """The task does not exist (or has expired)."""


class TaskStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def create(self, record: TaskRecord) -> None:
        """Store a new task; it is durable (as the store's durability goes) when this returns."""
        ...

    async def get(self, task_id: str, owner: str) -> TaskRecord | None:
        """The task, or None when it is unknown, belongs to another owner, or has expired."""
        ...

    async def list(self, owner: str, cursor: str | None, limit: int) -> tuple[list[TaskRecord], str | None]:
        """`owner`'s live tasks, oldest first, `limit` at a time; the cursor for the next page, or None."""
        ...

    async def update(self, task_id: str, status: TaskStatus, message: str | None) -> bool:
        """Move a task between non-terminal statuses (working, input_required) or change its message; False
        when it is already terminal (nothing changes)."""
        ...

    async def finish(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> TaskRecord:
        """End a task with a terminal status, unless it has ended already; returns the stored record, whose
        status says who won. Raises `TaskNotFound` for an unknown id."""
        ...

    async def interrupt(self, worker: str, error: dict[str, Any], message: str) -> int:
        """Fail every non-terminal task `worker` owned (it restarted); returns how many."""
        ...

    async def sweep(self) -> int:
        """Delete the tasks past their TTL; returns how many."""
        ...
