"""The one small interface every task store implements, and the rules all of them keep.

- A terminal status never changes: of a cancel racing a completion, the first to be stored wins, atomically,
  and both callers learn which one that was (`finish` returns the stored record).
- A task another owner created, and a task past its TTL, are both "unknown" to `get` (None): never someone
  else's data, never a stale result.
- `interrupt(worker, ...)` is what a restarted process calls first, and what any process calls for a worker whose
  lease ran out (it died and did not come back): the worker's unfinished tasks end as failed, with the reason, so
  that a client polling them gets an answer instead of "working" forever. Tasks of a resumable tool are instead
  handed to the caller, atomically, so that exactly one process runs each of them again.
- Whoever answers or cancels a task (any process) leaves a signal for the worker that runs it; the worker takes
  its signals (`signals`) and acts on them. A worker in the same process acts at once and ignores the signal.
"""

from __future__ import annotations

import builtins
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
        when it is already terminal (nothing changes). Moving to working clears the pending input requests."""
        ...

    async def need_input(self, task_id: str, requests: dict[str, dict[str, Any]], message: str | None) -> bool:
        """The task waits for the client: status input_required, `requests` added to the pending ones (by key;
        a key already pending is replaced). False when the task is terminal (nothing changes); raises
        `TaskNotFound` for an unknown id."""
        ...

    async def answer(self, task_id: str, owner: str, responses: dict[str, Any]) -> TaskRecord | None:
        """Record the client's answers to pending requests: each answered key leaves `input_requests` and its
        answer is kept for the worker (`take_answers`); keys that are not pending are ignored. When any key was
        answered, an "input" signal is left for the task's worker. Returns the record as stored after the
        change, or None when the task is unknown to `owner` (as for `get`). A terminal task is returned as is."""
        ...

    async def take_answers(self, task_id: str) -> dict[str, Any]:
        """The answers recorded since the last call, removed from the store (the worker consumes them once)."""
        ...

    async def cancel(self, task_id: str, owner: str, message: str | None) -> TaskRecord | None:
        """Cancel `owner`'s task: `finish(cancelled)`, and a "cancel" signal to its worker when it was not
        terminal. Returns the stored record (its status says whether the cancel won), or None when the task is
        unknown to `owner`."""
        ...

    async def signals(self, worker: str, limit: int = 1000) -> builtins.list[tuple[str, str]]:
        """Take (and remove) up to `limit` signals left for `worker`, oldest first: (task_id, "cancel" | "input")."""
        ...

    async def heartbeat(self, worker: str, lease_s: float) -> None:
        """`worker` is alive for `lease_s` more seconds (renewed well before it ends)."""
        ...

    async def expired_workers(self) -> builtins.list[str]:
        """Workers whose lease has ended: they died, so their unfinished tasks are anyone's to interrupt."""
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

    async def interrupt(
        self,
        worker: str,
        error: dict[str, Any],
        message: str,
        *,
        resumable: frozenset[str] = frozenset(),
        claimer: str | None = None,
    ) -> tuple[int, builtins.list[TaskRecord]]:
        """End `worker`'s unfinished tasks (it restarted, or its lease ran out) and forget its lease.

        Each non-terminal task fails with `error` and `message`, except a task whose `name` is in `resumable`
        and that has a stored `request`: that one moves, in the same atomic step, to worker `claimer` with
        status working and no pending input, and is returned for the claimer to run again. Returns (how many
        failed, the claimed records). Two processes interrupting the same worker at once claim each task once.
        """
        ...

    async def sweep(self) -> int:
        """Delete the tasks past their TTL, with their answers and signals (and signals older than ten minutes,
        left for a worker that never came back); returns how many tasks."""
        ...
