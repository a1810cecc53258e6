"""Lifecycle and discovery: `initialize` and `ping` (2025-11-25), `server/discover` (2026-07-28),
`logging/setLevel`, and what the server says about itself (capabilities, server info)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bemcp.app import App
from bemcp.errors import InvalidParams
from bemcp.protocol import versions
from bemcp.protocol.calling import Result
from bemcp.protocol.exchange import LOG_RANK, Exchange


class Lifecycle:
    def __init__(self, app: App, tasks_on: Callable[[], bool] = lambda: False) -> None:
        self.app = app
        self._tasks_on = tasks_on  # whether this server runs tasks now (it declares them only then)

    def handlers(self) -> dict[str, Any]:
        return {
            "initialize": self.initialize,
            "ping": self.ping,
            "server/discover": self.discover,
            "logging/setLevel": self.set_level,
        }

    def capabilities(self, stateless: bool = False) -> dict[str, Any]:
        """What this server offers. Every handler exists, so every feature is declared; change notifications
        are sent (see `Notifier`): unsolicited on the handshake era, on `subscriptions/listen` on 2026-07-28."""
        caps: dict[str, Any] = {
            "tools": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": True},
            "completions": {},
            "logging": {},
        }
        if self._tasks_on():
            if stateless:  # the tasks extension (SEP-2663), not 2025-11-25's capabilities.tasks
                caps["extensions"] = {"io.modelcontextprotocol/tasks": {}}
            else:
                caps["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        return caps

    def server_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.app.name, "version": self.app.version}
        if self.app.title:
            info["title"] = self.app.title
        return info

    async def initialize(self, params: dict[str, Any], ex: Exchange) -> Result:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise InvalidParams("initialize needs params.protocolVersion (string)")
        # The spec: answer with the requested version when supported, else our latest.
        version = requested if requested in versions.HANDSHAKE else versions.LATEST_HANDSHAKE
        peer = ex.peer
        peer.protocol_version = version
        caps = params.get("capabilities")
        peer.client_capabilities = caps if isinstance(caps, dict) else {}
        info = params.get("clientInfo")
        peer.client_info = info if isinstance(info, dict) else {}
        res: Result = {
            "protocolVersion": version,
            "capabilities": self.capabilities(),
            "serverInfo": self.server_info(),
        }
        if self.app.instructions:
            res["instructions"] = self.app.instructions
        return res

    async def ping(self, params: dict[str, Any], ex: Exchange) -> Result:
        return {}

    async def discover(self, params: dict[str, Any], ex: Exchange) -> Result:
        res: Result = {"supportedVersions": list(versions.MODERN), "capabilities": self.capabilities(True)}
        if self.app.instructions:
            res["instructions"] = self.app.instructions
        return res

    async def set_level(self, params: dict[str, Any], ex: Exchange) -> Result:
        level = params.get("level")
        if not isinstance(level, str) or level not in LOG_RANK:
            shown = repr(level) if isinstance(level, str) else f"of type {type(level).__name__}"
            raise InvalidParams(f"unknown log level {shown}", {"levels": list(LOG_RANK)})
        ex.peer.log_level = level
        return {}
