"""`Lifecycle`: bring up what a served App needs, and take it down in reverse.

Start: the runtime (on the serving loop), then the app's own lifespan (`App(lifespan=...)`), whose yielded state
tools read as `ctx.state`, then the task runner (when a tool can run as a task: it opens the store and takes
over what a restart left), then change notifications. Stop: in reverse; the lifespan's exit closes the user's
pools and clients before the runtime stops.

The lifespan is entered and left inside one task that this object owns, so a context manager built on a task
group or a cancel scope (anyio, asyncpg pools, httpx clients) sees one task throughout, even when start and stop
are called from different tasks (a first request, say, and a shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from bemcp.protocol.server import Server

log = logging.getLogger("bemcp.serve")

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


class Lifecycle:
    def __init__(self, server: Server) -> None:
        self.server = server
        self._holder: asyncio.Task[None] | None = None
        self._release: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self.started = False

    async def start(self) -> None:
        """Start the runtime, then enter the app's lifespan; a lifespan that fails to start stops the runtime
        again and raises its error. Idempotent, and safe to call from several tasks at once."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.started:
                return
            loop = asyncio.get_running_loop()
            runtime = self.server.runtime
            runtime.start(loop)
            lifespan = self.server.app.lifespan
            if lifespan is not None:
                ready: asyncio.Future[None] = loop.create_future()
                self._release = asyncio.Event()
                self._holder = loop.create_task(self._hold(lifespan, ready), name="bemcp-app-lifespan")
                try:
                    await ready
                except BaseException:
                    await asyncio.gather(self._holder, return_exceptions=True)
                    self._holder = self._release = None
                    runtime.stop()
                    raise
            if self.server.task_tools():
                try:
                    await self.server.tasks.start(self.server.tools.as_tasks.resume, self.server.resumable_tools())
                except BaseException:
                    await self._leave_lifespan()
                    runtime.stop()
                    raise
            self.server.notifier.start()
            self.server.app.attach(self.server.notifier)
            self.started = True

    async def _hold(self, lifespan: Lifespan, ready: asyncio.Future[None]) -> None:
        assert self._release is not None
        try:
            async with lifespan(self.server.app) as state:
                self.server.state = state
                ready.set_result(None)
                await self._release.wait()
        except BaseException as e:
            if not ready.done():  # the startup failed: start() raises it
                ready.set_exception(e)
                return
            raise
        finally:
            self.server.state = None

    async def stop(self) -> None:
        """Stop change notifications, leave the app's lifespan (its errors are logged), then stop the runtime."""
        self.server.app.detach(self.server.notifier)
        await self.server.notifier.stop()
        try:
            await self.server.tasks.stop()
        except Exception:
            log.exception("stopping the task runner failed")
        await self._leave_lifespan()
        self.server.runtime.stop()
        self.started = False

    async def _leave_lifespan(self) -> None:
        holder, self._holder = self._holder, None
        if holder is not None and self._release is not None:
            self._release.set()
            try:
                await holder
            except Exception:
                log.exception("the app's lifespan failed on exit")
        self._release = None
