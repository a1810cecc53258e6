"""Tools every BE-MCP server has."""

from __future__ import annotations

from typing import Any

from bemcp.app import App
from bemcp.runtime.runtime import Runtime


def add_builtin_tools(app: App, runtime: Runtime) -> None:
    """Register `server_health` (read-only, always on, exempt from load shedding)."""

    async def server_health() -> dict[str, Any]:
        """Report the server's health: status, concurrency limit, calls in flight and queued, outcomes,
        memory budget, RSS and level, event-loop lag, watchdog events and uptime."""
        return runtime.health_snapshot().to_wire(exclude_caller=True)  # this call is in flight: report the others

    app.add_tool(
        server_health,
        annotations={"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
        essential=True,
    )


def default_app() -> App:
    """The built-in app: just the always-on tools (added by the server)."""
    from bemcp import __version__

    return App("bemcp", version=__version__)
