"""Tools every BE-MCP server has."""

from __future__ import annotations

import asyncio
import os

import psutil
from pydantic import BaseModel

from bemcp.app import App
from bemcp.runtime.runtime import Runtime


class Health(BaseModel):
    status: str
    uptime_s: float
    in_flight: int
    completed: dict[str, int]
    pid: int
    rss_bytes: int


def add_builtin_tools(app: App, runtime: Runtime) -> None:
    """Register `server_health` (read-only, always on)."""
    proc = psutil.Process(os.getpid())

    @app.tool(name="server_health", read_only=True, idempotent=True, open_world=False)
    async def server_health() -> Health:
        """Report the server's health: uptime, calls in flight, outcomes so far and memory use."""
        tasks = runtime.tasks
        me = asyncio.current_task()  # this health call is itself a tracked call; do not count it
        return Health(
            status="ok",
            uptime_s=round(runtime.uptime, 3),
            in_flight=sum(1 for rec in tasks.inflight.values() if rec.task is not me),
            completed=dict(tasks.completed),
            pid=proc.pid,
            rss_bytes=proc.memory_info().rss,
        )


def default_app() -> App:
    """The built-in app: just the always-on tools (added by the server)."""
    return App("bemcp", version=_version())


def _version() -> str:
    from bemcp import __version__

    return __version__
