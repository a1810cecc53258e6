"""`LiveTask`: one task this process is running, as the running work sees it.

It is the call's `Cancellable` (what the pipeline cancels, and why), the channel through which the tool's
`ctx.ask` reaches the client (the requests are stored, so `tasks/get` shows them from any process, and the
answers come back through `deliver`), and the holder of the status message that `ctx.progress` sets, which
the runner writes to the store at most a few times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bemcp.runtime.cancel import CancelReason
from bemcp.runtime.pipeline import Suspended
from bemcp.tasks.model import TaskStatus

if TYPE_CHECKING:
    from bemcp.runtime.admission import Admission, Token
    from bemcp.tasks.store import TaskStore


async def _all(futures: list[asyncio.Future[Any]]) -> list[Any]:
    return [await f for f in futures]


class Handoff(Suspended):
    """Raised by `ctx.run_as_task`: the call ends here, answered with a new task that runs `fn(*args, **kwargs)`."""

    outcome = "handed_off"

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(getattr(fn, "__name__", "work"))
        self.fn = fn
        self.args = args
        self.kwargs = kwargs


class LiveTask:
    # Events are made only when someone waits (most tasks are never waited on here): a task costs no
    # asyncio.Event unless a `tasks/result` or a listener asks for one.
    __slots__ = (
        "_admission",
        "_asked",
        "_change",
        "_end",
        "_store",
        "_waiting",
        "cancel_reason",
        "dirty",
        "done",
        "message",
        "name",
        "on_change",
        "owner",
        "request_id",
        "resumable",
        "slot",
        "status",
        "task",
        "task_id",
    )

    def __init__(
        self,
        task_id: str,
        name: str,
        store: TaskStore,
        *,
        owner: str = "",
        resumable: bool = False,
        on_change: Callable[[str, str], None] | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.task_id = task_id
        self.name = name
        self.owner = owner
        self.on_change = on_change  # told (id, owner) at each status change: the notifications
        self.request_id = f"task:{task_id[:8]}"  # as the task log names the call
        self.resumable = resumable
        self.task: asyncio.Task[Any] | None = None
        self.cancel_reason: CancelReason | None = None
        self.slot: Token | None = None  # the admission Token, when the pipeline gave one
        self.status = TaskStatus.WORKING
        self.message: str | None = None
        self.dirty = False  # the message changed since it was last stored
        self.done = False
        self._store = store
        # The admission the task's slot came from (None: it holds none, protections being off): lent while
        # the task waits for its client.
        self._admission = admission
        self._end: asyncio.Future[None] | None = None
        self._change: asyncio.Future[None] | None = None
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._asked = 0

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
        twice with the same key asks two distinct questions. While it waits, the task's admission slot is lent
        to other calls (a client may take minutes to answer), and taken back before the tool goes on.
        """
        loop = asyncio.get_running_loop()
        wire = {}
        for key, req in requests.items():
            self._asked += 1
            wire[f"{key}-{self._asked}"] = req
        futures = {k: loop.create_future() for k in wire}
        self._waiting.update(futures)  # before the store says input_required: no answer can come earlier
        adm = self._admission
        lent = False
        answered = False
        try:
            self.status = TaskStatus.INPUT_REQUIRED
            if not await self._store.need_input(self.task_id, wire, self.message):
                raise asyncio.CancelledError  # the task ended meanwhile (cancelled): stop the tool here
            self.changed()
            if adm is not None:
                adm.lend(self.slot)
                lent = True
            answers = await asyncio.wait_for(_all(list(futures.values())), timeout)
            answered = True
        finally:
            for k, fut in futures.items():
                self._waiting.pop(k, None)
                fut.cancel()
            if lent and adm is not None:
                if answered:
                    await adm.reclaim(self.slot)  # waits for a free slot, ahead of every queued call
                else:
                    adm.reclaim_now(self.slot)  # ending (cancelled, timed out): given back in a moment
            if not self._waiting and self.status is TaskStatus.INPUT_REQUIRED and not self.done:
                self.status = TaskStatus.WORKING
                await asyncio.shield(self._store.update(self.task_id, TaskStatus.WORKING, self.message))
                self.changed()
        return dict(zip(requests, answers, strict=True))

    # -- what the runner does --------------------------------------------------

    def changed(self) -> None:
        """Wake whoever waits for this task's next change (a `tasks/result` relaying its questions)."""
        change, self._change = self._change, None
        if change is not None and not change.done():
            change.set_result(None)
        if self.on_change is not None:
            self.on_change(self.task_id, self.owner)

    def ended(self) -> None:
        """The task is over here (its end is stored, or could not be)."""
        self.done = True
        end = self._end
        if end is not None and not end.done():
            end.set_result(None)
        self.changed()

    async def wait_end(self) -> None:
        if self.done:
            return
        if self._end is None:
            self._end = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._end)

    async def wait_change(self, timeout: float) -> None:
        """Return at the task's next change, or after `timeout` seconds."""
        if self.done:
            return
        if self._change is None:
            self._change = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._change), timeout)

    def wants(self, key: str) -> bool:
        return key in self._waiting

    def deliver(self, answers: dict[str, Any]) -> None:
        """Hand the client's (already checked) answers to the waiting `ask`s; other keys are ignored."""
        for key, value in answers.items():
            fut = self._waiting.get(key)
            if fut is not None and not fut.done():
                fut.set_result(value)
