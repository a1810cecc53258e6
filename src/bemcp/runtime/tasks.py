"""The task registry: every tools/call, resources/read and prompts/get is a tracked task."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bemcp.errors import BemcpError


@dataclass(slots=True)
class TaskRecord:
    id: int
    method: str
    name: str
    started: float  # time.monotonic()
    deadline: float | None
    task: asyncio.Task[Any] | None
    state: str = "running"
    cancel: Callable[[str], bool] | None = None  # cancels the call, recording why


class TaskManager:
    """Registry of in-flight calls and their outcomes."""

    def __init__(self, max_fanout_nodes: int = 10_000) -> None:
        self._ids = itertools.count(1)
        self.inflight: dict[int, TaskRecord] = {}
        self.completed: Counter[str] = Counter()
        self.max_fanout_nodes = max_fanout_nodes
        self.subtasks = 0  # live sub-tasks spawned by fan-outs
        self._idle_waiters: list[asyncio.Future[None]] = []

    def begin(
        self,
        method: str,
        name: str,
        timeout: float | None,
        cancel: Callable[[str], bool] | None = None,
        task: asyncio.Task[Any] | None = None,
    ) -> TaskRecord:
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        rec = TaskRecord(next(self._ids), method, name, now, deadline, task or asyncio.current_task(), cancel=cancel)
        self.inflight[rec.id] = rec
        return rec

    def end(self, rec: TaskRecord, outcome: str) -> None:
        rec.state = outcome
        self.inflight.pop(rec.id, None)
        self.completed[outcome] += 1
        if self._idle_waiters and not self.inflight:
            for fut in self._idle_waiters:
                if not fut.done():
                    fut.set_result(None)
            self._idle_waiters.clear()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in flight; False if `timeout` passed first."""
        if not self.inflight:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        return True

    @property
    def in_flight(self) -> int:
        return len(self.inflight)

    async def fanout(self, depth: int, breadth: int) -> int:
        """Run a tree of sub-tasks (`breadth` children per node, `depth` levels); returns the node count.

        Raises `FanoutLimitReached` (after cancelling the tree) past `max_fanout_nodes`.
        """
        return await _fanout(self, depth, breadth, self.max_fanout_nodes)


class FanoutLimitReached(BemcpError):
    """A fan-out asked for more sub-tasks than the budget allows; the whole tree was cancelled."""


async def _fanout(manager: TaskManager, depth: int, breadth: int, max_nodes: int) -> int:
    created = 0

    def count_node() -> None:
        # Counted before the task is created, so the budget bounds the tasks that exist at all
        # (not just the ones that got to run: every started node creates `breadth` children).
        nonlocal created
        if created >= max_nodes:
            raise FanoutLimitReached(f"fan-out stopped at its budget of {max_nodes} sub-tasks")
        created += 1

    async def node(level: int) -> None:
        manager.subtasks += 1
        try:
            if level == 0:
                await asyncio.sleep(0)
                return
            # A TaskGroup owns the children: an error or a cancel anywhere ends the whole tree.
            async with asyncio.TaskGroup() as group:
                for _ in range(breadth):
                    count_node()
                    group.create_task(node(level - 1))
        finally:
            manager.subtasks -= 1

    count_node()  # the root
    try:
        await node(depth)
    except* FanoutLimitReached as eg:
        raise _first_leaf(eg) from None
    return created


def _first_leaf(group: BaseExceptionGroup[FanoutLimitReached]) -> FanoutLimitReached:
    """The first `FanoutLimitReached` in a group nested one level per tree level."""
    first = group.exceptions[0]
    return first if isinstance(first, FanoutLimitReached) else _first_leaf(first)
