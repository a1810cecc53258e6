"""`LiveTask`: one task this process is running, as the running work sees it.

It is the call's `Cancellable` (what the pipeline cancels, and why), the channel through which the tool's
`ctx.ask` reaches the client (the requests are stored, so `tasks/get` shows them from any process, and the
answers come back through `deliver`), and the holder of the status message that `ctx.progress` sets, which
the runner writes to the store at most a few times a second.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from bemcp.runtime.cancel import CancelReason
from bemcp.runtime.pipeline import Suspended
from bemcp.tasks.model import TaskStatus

# What the live task needs of the store, bound to its id: (requests, message) and (status, message).
NeedInput = Callable[[dict[str, dict[str, Any]], str | None], Awaitable[bool]]
SetStatus = Callable[[TaskStatus, str | None], Awaitable[bool]]


async def _all(futures: list[asyncio.Future[Any]]) -> list[Any]:
    return [await f for f in futures]


class Handoff(Suspended):
    """Raised by `ctx.run_as_task`: the call ends here, answered with a new task that runs `fn(*args, **kwargs)`."""

    outcome = "handed_off"

    def __init__(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(getattr(fn, "__name__", "work"))
        self.fn = fn
        self.args = args
        self.kwargs = kwargs


class LiveTask:
    __slots__ = (
        "_keys",
        "_need_input",
        "_set_status",
        "_waiting",
        "cancel_reason",
        "changes",
        "dirty",
        "finished",
        "message",
        "name",
        "on_change",
        "owner",
        "request_id",
        "resumable",
        "status",
        "task",
        "task_id",
    )

    def __init__(
        self,
        task_id: str,
        name: str,
        need_input: NeedInput,
        set_status: SetStatus,
        *,
        owner: str = "",
        resumable: bool = False,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.task_id = task_id
        self.name = name
        self.owner = owner
        self.on_change = on_change  # told (id, owner) at each status change: the notifications
        self.request_id = f"task:{task_id[:8]}"  # as the task log names the call
        self.resumable = resumable
        self.task: asyncio.Task[Any] | None = None
        self.cancel_reason: CancelReason | None = None
        self.status = TaskStatus.WORKING
        self.message: str | None = None
        self.dirty = False  # the message changed since it was last stored
        self.finished = asyncio.Event()
        self.changes = asyncio.Event()  # set (and replaced) at each status change; see `changed`
        self._need_input = need_input
        self._set_status = set_status
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._keys = itertools.count(1)

    # -- Cancellable ---------------------------------------------------------

    def cancel(self, reason: CancelReason) -> bool:
        task = self.task
        if self.cancel_reason is not None or task is None or task.done():
            return False
        self.cancel_reason = reason
        task.cancel()
        return True

    # -- what the running tool does ------------------------------------------

    def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """`ctx.progress` inside a task: the task's status message (stored by the runner's next tick)."""
        shown = f"{progress:g}/{total:g}" if total is not None else f"{progress:g}"
        self.message = f"{shown}: {message}" if message else shown
        self.dirty = True

    async def ask(self, requests: dict[str, dict[str, Any]], timeout: float | None) -> dict[str, Any]:
        """Put `requests` to the client (status input_required) and wait for every answer, by the tool's keys.

        The keys the client sees are minted per task and never reused, as the spec asks: a tool that elicits
        twice with the same key asks two distinct questions.
        """
        loop = asyncio.get_running_loop()
        wire = {f"{key}-{next(self._keys)}": req for key, req in requests.items()}
        futures = {k: loop.create_future() for k in wire}
        self._waiting.update(futures)  # before the store says input_required: no answer can come earlier
        try:
            self.status = TaskStatus.INPUT_REQUIRED
            if not await self._need_input(wire, self.message):
                raise asyncio.CancelledError  # the task ended meanwhile (cancelled): stop the tool here
            self.changed()
            answers = await asyncio.wait_for(_all(list(futures.values())), timeout)
        finally:
            for k, fut in futures.items():
                self._waiting.pop(k, None)
                fut.cancel()
            if not self._waiting and self.status is TaskStatus.INPUT_REQUIRED and not self.finished.is_set():
                self.status = TaskStatus.WORKING
                await asyncio.shield(self._set_status(TaskStatus.WORKING, self.message))
                self.changed()
        return dict(zip(requests, answers, strict=True))

    # -- what the runner does --------------------------------------------------

    def changed(self) -> None:
        """Wake whoever waits for this task's next change (a `tasks/result` relaying its questions)."""
        self.changes.set()
        self.changes = asyncio.Event()
        if self.on_change is not None:
            self.on_change(self.task_id, self.owner)

    def wants(self, key: str) -> bool:
        return key in self._waiting

    def deliver(self, answers: dict[str, Any]) -> None:
        """Hand the client's (already checked) answers to the waiting `ask`s; other keys are ignored."""
        for key, value in answers.items():
            fut = self._waiting.get(key)
            if fut is not None and not fut.done():
                fut.set_result(value)
