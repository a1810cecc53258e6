"""`TaskRunner`: runs calls as durable tasks, through the same pipeline as every other call.

A task is stored before its creator hears of it (so `tasks/get` resolves at once, from any process on the
store), then its work runs in an asyncio task this runner owns, as `Runtime.run_call` runs any call: it holds
an admission slot while it runs, has its deadline (`--task-timeout`), is shed under memory pressure, watched by
the watchdog and written to the task log. A task that meets a full server is not failed: it waits for a slot.

The runner's tick (one owned task) writes status messages set by `ctx.progress`, takes the signals other
processes left for it (a cancel, an answer), renews this worker's lease and, when another worker's lease has
ended, takes over its unfinished tasks: a resumable tool's task runs again here, any other fails with a clear
error. A restarted worker (same id) does the same for its own tasks before it serves.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bemcp.errors import McpError
from bemcp.protocol import codes
from bemcp.protocol.refusals import cut_off_error
from bemcp.runtime.admission import Admission
from bemcp.runtime.cancel import CancelReason, CutOff
from bemcp.runtime.health import TasksSnapshot
from bemcp.runtime.pipeline import CallSpec, Suspended
from bemcp.runtime.refusal import Refusal, RefusalReason
from bemcp.tasks.factory import SQLITE_FILE, open_task_store
from bemcp.tasks.finished import Finished
from bemcp.tasks.live import LiveTask
from bemcp.tasks.model import TaskIds, TaskRecord, TaskStatus
from bemcp.tasks.store import TaskNotFound, TaskStore
from bemcp.tasks.sweeper import TaskSweeper

log = logging.getLogger("bemcp.tasks")

Result = dict[str, Any]
Body = Callable[[LiveTask], Coroutine[Any, Any, Result]]
RunCall = Callable[[CallSpec, Callable[[], Coroutine[Any, Any, Result]], Any], Coroutine[Any, Any, Result]]
# How a claimed task is run again: its record in, its spec and body out (None: its tool is gone; it fails).
Resume = Callable[[TaskRecord], "tuple[CallSpec, Body] | None"]

RESTARTED = "the server restarted while the task ran"
STOPPED = "the server stopped while the task ran"
WORKER_LOST = "the server running the task stopped answering"


class TaskStoreUnavailable(RuntimeError):
    """The task store cannot be opened: the server does not start."""


def _internal(message: str) -> dict[str, Any]:
    return {"code": codes.INTERNAL_ERROR, "message": message}


def default_state_dir(app_name: str) -> Path:
    """Where an app's state lives unless `--state-dir` says otherwise: `$XDG_STATE_HOME/bemcp/<app>`."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in app_name) or "app"
    return Path(base) / "bemcp" / slug


def default_worker_id() -> str:
    """A worker id for a process that was given none: it cannot be the same after a restart, so its tasks are
    taken over by whoever sees its lease end."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class TaskConfig:
    store: str = "sqlite"  # sqlite | memory | redis://...
    state_dir: str | None = None  # None: default_state_dir(app name)
    max_tasks: int = 10_000  # unfinished tasks this process runs at once; past it: task_limit
    timeout: float | None = None  # seconds a task may run; None: the call timeout
    ttl_s: float = 3600.0  # how long a task's result is kept after its creation
    poll_interval_ms: int = 500  # what clients are told to poll at
    worker_id: str | None = None  # stable across restarts (the supervisor, or --worker-id); None: per process
    lease_s: float = 15.0  # a worker silent this long is taken for dead
    sweep_interval_s: float = 60.0
    tick_s: float = 0.2  # how often signals and status messages are handled while tasks run


@dataclass(slots=True)
class TaskStats:
    created: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    refused: int = 0  # creations refused at --max-tasks
    resumed: int = 0  # claimed after a restart or a lost worker, and run again
    interrupted: int = 0  # failed after a restart or a lost worker
    tick_failures: int = 0


class TaskRunner:
    def __init__(
        self,
        config: TaskConfig,
        run_call: RunCall,
        *,
        state_dir: Path,
        store: TaskStore | None = None,
        clock: Callable[[], float] = time.time,
        admission: Admission | None = None,
    ) -> None:
        self.config = config
        # Where working tasks' slots come from (None: protections are off, no slot is held): a task waiting
        # for its client lends its slot.
        self._admission = admission
        self.worker = config.worker_id or default_worker_id()
        self._run_call = run_call
        self._state_dir = state_dir
        self._given_store = store
        self._clock = clock
        self.store: TaskStore | None = None
        self.stats = TaskStats()
        self._ids = TaskIds()
        self._creating = 0  # creations between the capacity check and the launch (the store write is awaited)
        self.live: dict[str, LiveTask] = {}
        self.finished = Finished()  # terminal records stored here, for the gets that follow
        self._sweeper: TaskSweeper | None = None
        self._tick: asyncio.Task[None] | None = None
        self._resume: Resume | None = None
        self._resumable: frozenset[str] = frozenset()
        self._next_lease = 0.0
        self._next_reap = 0.0
        self.on_change: Callable[[str, str], None] | None = None  # (task id, owner) at each status change here

    @property
    def running(self) -> bool:
        return self.store is not None

    @property
    def state_path(self) -> Path:
        """The SQLite file (for `--task-store sqlite`)."""
        return self._state_dir / SQLITE_FILE

    # -- lifecycle -------------------------------------------------------------

    async def start(self, resume: Resume, resumable: frozenset[str]) -> None:
        """Open the store, end or resume this worker's tasks from before a restart, then start the tick.
        Raises the store's error (unreachable Redis, unwritable state dir) so that the server does not start."""
        if self.store is not None:
            return
        store = self._given_store or open_task_store(self.config.store, self._state_dir)
        try:
            await store.start()
        except OSError as e:  # an unwritable state dir, an unreachable Redis: say which store, and where
            if self.config.store == "sqlite":
                raise TaskStoreUnavailable(f"cannot open the task store in {self._state_dir}: {e}") from e
            raise TaskStoreUnavailable(str(e)) from e
        self.store = store
        self._resume, self._resumable = resume, resumable
        try:
            await self._take_over(self.worker, RESTARTED)
            await store.heartbeat(self.worker, self.config.lease_s)
        except BaseException:
            self.store = None
            await store.close()
            raise
        self._next_lease = time.monotonic() + self.config.lease_s / 3
        self._sweeper = TaskSweeper(store, self.config.sweep_interval_s)
        self._sweeper.start()
        self._tick = asyncio.get_running_loop().create_task(self._ticks(), name="bemcp-task-tick")

    async def stop(self) -> None:
        """Cancel what still runs (after the server's drain): a resumable task stays working, for the next start
        (or another worker) to run again; any other fails, saying the server stopped. Then close the store."""
        store = self.store
        if store is None:
            return
        tick, self._tick = self._tick, None
        if tick is not None:
            tick.cancel()
            await asyncio.gather(tick, return_exceptions=True)
        if self._sweeper is not None:
            await self._sweeper.stop()
            self._sweeper = None
        live = list(self.live.values())
        for task in live:
            if task.task is not None:
                task.task.cancel()  # no reason: the server is stopping (see `_run`)
        await asyncio.gather(*(t.task for t in live if t.task is not None), return_exceptions=True)
        self.store = None
        self.finished = Finished()
        await store.close()

    # -- creating and running ----------------------------------------------------

    def check_capacity(self) -> None:
        """Refuse a new task at `--max-tasks` (the documented overload error, reason task_limit)."""
        if len(self.live) + self._creating >= self.config.max_tasks:
            self.stats.refused += 1
            raise Refusal(
                RefusalReason.TASK_LIMIT,
                1000,
                self.config.max_tasks,
                len(self.live) + self._creating,
                0,
                message=f"Server busy: {self.config.max_tasks} tasks are unfinished (--max-tasks); retry later",
            )

    async def create(
        self,
        spec: CallSpec,
        owner: str,
        body: Body,
        *,
        request: dict[str, Any] | None,
        resumable: bool = False,
        ttl_ms: int | None = None,
    ) -> TaskRecord:
        """Store a new task and start it; returns its first record once it is durable."""
        store = self._store()
        now = self._clock()
        ttl = self.ttl_ms(ttl_ms)
        rec = TaskRecord(
            self._ids.next(),
            owner,
            self.worker,
            spec.method,
            spec.name,
            TaskStatus.WORKING,
            now,
            now,
            ttl,
            self.config.poll_interval_ms,
            request=request,
        )
        # Counted from the check on: concurrent creations awaiting their store write cannot pass --max-tasks.
        self.check_capacity()
        self._creating += 1
        try:
            await store.create(rec)
        finally:
            self._creating -= 1
        self.stats.created += 1
        self._launch(rec, spec, body, resumable)
        return rec

    def ttl_ms(self, requested: int | None) -> int:
        """The retention a task gets: what the client asked for (2025-11-25's `task.ttl`), at most the server's."""
        cap = int(self.config.ttl_s * 1000)
        if requested is None or requested <= 0:
            return cap
        return min(requested, cap)

    def _launch(self, rec: TaskRecord, spec: CallSpec, body: Body, resumable: bool) -> LiveTask:
        task_id = rec.task_id
        live = LiveTask(
            task_id,
            rec.name,
            self._store(),
            owner=rec.owner,
            resumable=resumable,
            on_change=self.on_change,
            admission=None if spec.essential else self._admission,
        )
        self.live[task_id] = live
        live.task = asyncio.get_running_loop().create_task(self._run(live, spec, body), name=f"bemcp-task-{rec.name}")
        return live

    async def _run(self, live: LiveTask, spec: CallSpec, body: Body) -> None:
        task_id = live.task_id
        try:
            try:
                result = await self._admitted(live, spec, body)
            except CutOff as cut:
                if cut.reason is CancelReason.DRAIN_TIMEOUT and live.resumable:
                    return  # left working: the next start (or another worker) runs it again
                await self._finish(task_id, TaskStatus.FAILED, error=cut_off_error(cut), message=cut.message)
            except McpError as e:  # a protocol error the tool raised: the task failed with it
                await self._finish(task_id, TaskStatus.FAILED, error=e.to_error(), message=e.message)
            except Refusal as r:  # draining, while the task waited for a slot
                overload = {"code": codes.OVERLOADED, "message": r.message, "data": {"reason": str(r.reason)}}
                await self._finish(task_id, TaskStatus.FAILED, error=overload, message=r.message)
            except Suspended as s:  # ctx.ask on a path with no way to reach the client
                text = f"the task cannot ask its client: {s}"
                await self._finish(task_id, TaskStatus.FAILED, error=_internal(text), message=text)
            except asyncio.CancelledError:
                reason = live.cancel_reason
                if reason is CancelReason.CLIENT:
                    self.stats.cancelled += 1  # the store holds the cancel already
                elif not live.resumable:
                    error: dict[str, Any] = {"code": codes.INTERNAL_ERROR, "message": STOPPED}
                    await asyncio.shield(self._finish(task_id, TaskStatus.FAILED, error=error, message=STOPPED))
                # else: left working; the next start (or another worker) runs it again
            except Exception as e:  # a bug: the task fails, the server goes on
                log.exception("task %s (%s) failed", task_id, live.name)
                text = f"Internal error: {type(e).__name__}"
                await self._finish(task_id, TaskStatus.FAILED, error=_internal(text), message=text)
            else:
                await self._finish(task_id, TaskStatus.COMPLETED, result=result, message=live.message)
        except Exception:  # the store failed to record the end: the lease and restart rules still apply
            log.exception("task %s: storing its end failed", task_id)
        finally:
            live.ended()
            self.live.pop(task_id, None)

    async def _admitted(self, live: LiveTask, spec: CallSpec, body: Body) -> Result:
        """Run through the pipeline; a task that finds no free slot waits (it was accepted), except on a drain."""
        while True:
            try:
                return await self._run_call(spec, lambda: body(live), live)
            except Refusal as r:
                if r.reason is RefusalReason.DRAINING:
                    raise
                live.message = f"waiting for a free slot ({r.reason})"
                live.dirty = True
                await asyncio.sleep(max(r.retry_after_ms, 50) / 1000)

    async def _finish(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        result: Result | None = None,
        error: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> TaskRecord:
        rec = await self._store().finish(task_id, status, result=result, error=error, message=message)
        self.finished.put(rec, self._clock())
        if rec.status is status:
            if status is TaskStatus.COMPLETED:
                self.stats.completed += 1
            elif status is TaskStatus.FAILED:
                self.stats.failed += 1
        return rec

    # -- what clients ask --------------------------------------------------------

    async def get(self, task_id: str, owner: str) -> TaskRecord | None:
        store = self._store()
        kept = self.finished.get(task_id, self._clock())
        if kept is not None:
            return kept if kept.owner == owner else None
        return await store.get(task_id, owner)

    async def list(self, owner: str, cursor: str | None, limit: int) -> tuple[list[TaskRecord], str | None]:
        return await self._store().list(owner, cursor, limit)

    async def cancel(self, task_id: str, owner: str) -> TaskRecord | None:
        """Cancel `owner`'s task: stored at once (a terminal task stays as it is); the work here is cancelled at
        once, the work on another worker at its next tick."""
        store = self._store()
        kept = self.finished.get(task_id, self._clock())
        if kept is not None:  # finished here: a cancel changes nothing
            return kept if kept.owner == owner else None
        rec = await store.cancel(task_id, owner, "cancelled by the client")
        if rec is not None:
            self.finished.put(rec, self._clock())
        if rec is not None and rec.status is TaskStatus.CANCELLED:
            live = self.live.get(task_id)
            if live is not None:
                live.cancel(CancelReason.CLIENT)
        return rec

    async def answer(self, task_id: str, owner: str, responses: dict[str, Any]) -> TaskRecord | None:
        """Record the client's answers (checked by the caller); a task running here gets them at once."""
        store = self._store()
        rec = await store.answer(task_id, owner, responses)
        if rec is not None and task_id in self.live:
            await self._deliver(task_id)
        return rec

    async def wait(self, task_id: str, owner: str, poll_s: float | None = None) -> TaskRecord | None:
        """The task once it is terminal (or unknown: None); at once for a task running here, else by polling."""
        interval = poll_s if poll_s is not None else self.config.poll_interval_ms / 1000
        while True:
            live = self.live.get(task_id)
            if live is not None:
                await live.wait_end()
            rec = await self.get(task_id, owner)
            if rec is None or rec.status.terminal:
                return rec
            if task_id not in self.live:
                await asyncio.sleep(interval)

    async def changed(self, task_id: str, timeout: float | None = None) -> None:
        """Return at the task's next change here, or after `timeout` (default: the poll interval) for a task
        that runs elsewhere or does not change."""
        wait = timeout if timeout is not None else self.config.poll_interval_ms / 1000
        live = self.live.get(task_id)
        if live is None:
            await asyncio.sleep(wait)
            return
        await live.wait_change(wait)

    async def _deliver(self, task_id: str) -> None:
        live = self.live.get(task_id)
        if live is None:
            return
        answers = await self._store().take_answers(task_id)
        if answers:
            live.deliver(answers)

    # -- the tick ----------------------------------------------------------------

    async def _ticks(self) -> None:
        idle_every = max(1, int(1.0 / self.config.tick_s))  # with nothing running here, look once a second
        n = 0
        while True:
            await asyncio.sleep(self.config.tick_s)
            n += 1
            if not self.live and n % idle_every:
                continue
            try:
                await self.tick()
            except Exception:
                self.stats.tick_failures += 1
                log.warning("the task tick failed; it runs again", exc_info=True)

    async def tick(self) -> None:
        """One round: store changed status messages, act on signals, renew the lease, take over dead workers."""
        store = self._store()
        for live in builtins.list(self.live.values()):
            if live.dirty:
                live.dirty = False
                await store.update(live.task_id, live.status, live.message)
        for task_id, kind in await store.signals(self.worker):
            target = self.live.get(task_id)
            if target is None:
                continue
            if kind == "cancel":
                target.cancel(CancelReason.CLIENT)
            elif kind == "input":
                await self._deliver(task_id)
        now = time.monotonic()
        if now >= self._next_lease:
            self._next_lease = now + self.config.lease_s / 3
            await store.heartbeat(self.worker, self.config.lease_s)
        if now >= self._next_reap:
            self._next_reap = now + self.config.lease_s / 3
            for worker in await store.expired_workers():
                if worker != self.worker:
                    await self._take_over(worker, WORKER_LOST)

    async def _take_over(self, worker: str, why: str) -> None:
        """End `worker`'s unfinished tasks: resumable ones run again here, the rest fail saying `why`."""
        store = self._store()
        error = {"code": codes.INTERNAL_ERROR, "message": why, "data": {"reason": "interrupted"}}
        failed, claimed = await store.interrupt(worker, error, why, resumable=self._resumable, claimer=self.worker)
        self.stats.interrupted += failed
        if failed or claimed:
            log.warning("tasks of worker %s: %d failed (%s), %d resumed here", worker, failed, why, len(claimed))
        for rec in claimed:
            made = self._resume(rec) if self._resume is not None else None
            if made is None:
                with contextlib.suppress(TaskNotFound):
                    text = f"{why}, and its tool {rec.name} is gone"
                    await self._finish(rec.task_id, TaskStatus.FAILED, error=_internal(text), message=text)
                continue
            spec, body = made
            self.stats.resumed += 1
            self._launch(rec, spec, body, True)

    def snapshot(self) -> TasksSnapshot | None:
        """What health and /metrics show; None while not running."""
        if self.store is None:
            return None
        waiting = sum(1 for t in self.live.values() if t.status is TaskStatus.INPUT_REQUIRED)
        st = self.stats
        kind = self.config.store if self.config.store in ("sqlite", "memory") else "redis"
        counts = {
            "created": st.created,
            "completed": st.completed,
            "failed": st.failed,
            "cancelled": st.cancelled,
            "refused": st.refused,
            "resumed": st.resumed,
            "interrupted": st.interrupted,
        }
        return TasksSnapshot(kind, self.worker, len(self.live) - waiting, waiting, self.config.max_tasks, counts)

    def _store(self) -> TaskStore:
        store = self.store
        if store is None:
            raise RuntimeError("the task runner is not started")
        return store
