"""`SyncPool`: the bounded pool of threads that runs sync tools, and knows which of them outlived their call.

Python cannot interrupt a thread. When the call a thread serves is cancelled (its deadline, the client, a drain),
the call is answered at once and its thread is *abandoned*: counted, and kept in view, until its function returns.
The runtime refuses new sync calls once every worker is abandoned, instead of queueing them behind stuck threads.

The threads are daemons and `stop()` joins only those that are not running a job: a thread stuck in a tool must
never keep the process from exiting. (`concurrent.futures` joins its workers at interpreter exit, which is why
this is not a `ThreadPoolExecutor`.) Results travel straight into an asyncio future on the caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_QUEUED, _RUNNING, _DONE, _CANCELLED = range(4)

# Given a thread that outlives its call, the caller's hook returns what to call (on the loop) once it ends.
Abandon = Callable[[], Callable[[], None] | None]


class _Job:
    __slots__ = ("abandoned", "fn", "future", "kwargs", "loop", "release", "started", "state")

    def __init__(
        self,
        fn: Callable[..., Any],
        kwargs: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        self.fn = fn
        self.kwargs = kwargs
        self.loop = loop
        self.future = future
        self.state = _QUEUED
        self.abandoned = False
        self.release: Callable[[], None] | None = None
        self.started = 0.0

    @property
    def name(self) -> str:
        return str(getattr(self.fn, "__name__", None) or type(self.fn).__name__)


class SyncPool:
    """Up to `workers` daemon threads, started as work arrives; `stop()` ends the idle ones."""

    def __init__(self, workers: int, name: str = "bemcp-sync") -> None:
        self.workers = workers
        self._name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)  # released by a worker each time it is free for the next job
        self._lock = threading.Lock()  # guards the job states and the counts below
        self._running: dict[int, _Job] = {}  # thread ident -> the job it runs
        self.running = 0  # threads running a job
        self.abandoned = 0  # of those, jobs whose caller has gone
        self._stopped = False

    async def run(self, fn: Callable[..., T], kwargs: dict[str, Any], abandon: Abandon | None = None) -> T:
        """`fn(**kwargs)` on a worker thread. Cancelled while the thread runs it, the thread is abandoned and
        `abandon()` (on this loop) says what to call once it ends; cancelled while still queued, it never runs."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, kwargs, loop, loop.create_future())
        self._submit(job)
        try:
            return await job.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            self._cancelled(job, abandon)
            raise

    def _submit(self, job: _Job) -> None:
        if self._stopped:
            raise RuntimeError("the sync pool is stopped")
        self._queue.put(job)
        if self._idle.acquire(blocking=False):
            return  # a free worker takes it
        with self._lock:
            if len(self._threads) >= self.workers:
                return
            thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
        thread.start()

    def _cancelled(self, job: _Job, abandon: Abandon | None) -> None:
        with self._lock:
            if job.state == _QUEUED:
                job.state = _CANCELLED  # the worker that takes it skips it
                return
            if job.state != _RUNNING:
                return  # it finished as the call was cancelled: nothing outlives the call
            job.abandoned = True
            self.abandoned += 1
        release = abandon() if abandon is not None else None
        with self._lock:
            if job.state == _RUNNING:
                job.release = release
                return
        if release is not None:  # it ended meanwhile
            release()

    def _work(self) -> None:
        ident = threading.get_ident()
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.state != _QUEUED:
                    self._idle.release()
                    continue
                job.state = _RUNNING
                job.started = time.monotonic()
                self.running += 1
                self._running[ident] = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.fn(**job.kwargs)
            except BaseException as e:  # delivered to the caller, whatever it is
                error = e
            with self._lock:
                job.state = _DONE
                self.running -= 1
                del self._running[ident]
                if job.abandoned:
                    self.abandoned -= 1
                release = job.release
            if job.abandoned:
                if release is not None:
                    _call_soon(job.loop, release)
            else:
                _call_soon(job.loop, _settle, job.future, result, error)
            job = result = error = None  # hold no result or traceback while idle
            self._idle.release()

    def busy(self) -> list[tuple[str, bool, float]]:
        """(tool function name, abandoned, seconds running) for every job a thread is running now.

        No lock (one dict copy under the GIL), so that a signal handler may ask.
        """
        now = time.monotonic()
        return [(job.name, job.abandoned, now - job.started) for job in list(self._running.values())]

    def stop(self, timeout: float = 1.0) -> list[tuple[str, bool, float]]:
        """Refuse new work, drop queued jobs, and join every thread that is not running one (for at most
        `timeout` seconds in all). Returns what the busy threads were left running (see `busy`)."""
        with self._lock:
            self._stopped = True
            threads = list(self._threads)
            self._threads.clear()
        while True:  # jobs nobody took: their callers are gone or going (a drain came first)
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                with self._lock:
                    job.state = _CANCELLED
                _call_soon(job.loop, _cancel, job.future)
        for _ in threads:
            self._queue.put(None)
        left = self.busy()
        with self._lock:
            busy = set(self._running)
        deadline = time.monotonic() + timeout
        for thread in threads:
            if thread.ident in busy:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
        return left


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _cancel(future: asyncio.Future[Any]) -> None:
    future.cancel()


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is left to tell
        loop.call_soon_threadsafe(fn, *args)
