"""A served app in this process, spoken to as JSON-RPC messages: the whole protocol and runtime, no sockets.

For the tasks tests that need to look inside (the runner, the store) or to run hundreds of rounds quickly;
the end-to-end tests start real servers instead.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from bemcp import App
from bemcp.lifecycle import Lifecycle
from bemcp.protocol.exchange import Exchange, Peer
from bemcp.protocol.server import Server
from bemcp.runtime.runtime import Runtime, RuntimeConfig
from bemcp.tasks.runner import TaskConfig

EXT = "io.modelcontextprotocol/tasks"
_ids = itertools.count(1)


def meta(*, tasks: bool = True, elicitation: bool = True) -> dict[str, Any]:
    caps: dict[str, Any] = {}
    if elicitation:
        caps["elicitation"] = {}
    if tasks:
        caps["extensions"] = {EXT: {}}
    return {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
        "io.modelcontextprotocol/clientInfo": {"name": "tasks-test", "version": "1"},
    }


class Served:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.peer = Peer()  # the stateless requests' peer (as the HTTP transport has one)

    @property
    def runner(self) -> Any:
        return self.server.tasks

    async def rpc(self, method: str, params: dict[str, Any] | None = None, *, tasks: bool = True) -> dict[str, Any]:
        """A 2026-07-28 request; the whole response message."""
        p = dict(params or {})
        p["_meta"] = {**meta(tasks=tasks), **p.get("_meta", {})}
        msg = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": p}
        out = await self.server.handle_message(msg, self.peer)
        assert out is not None
        return dict(out)

    async def result(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        out = await self.rpc(method, params, **kw)
        assert "result" in out, out
        return dict(out["result"])

    async def error(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        out = await self.rpc(method, params, **kw)
        assert "error" in out, out
        return dict(out["error"])

    async def until(
        self, task_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll tasks/get until `done(task)`; the task then."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            got = await self.result("tasks/get", {"taskId": task_id})
            if done(got):
                return got
            if loop.time() > end:
                raise AssertionError(f"task {task_id} never got there: {got}")
            await asyncio.sleep(0.02)

    async def settled(self, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self.until(task_id, lambda t: t["status"] in ("completed", "failed", "cancelled"), timeout)


class Session:
    """A 2025-11-25 connection: initialized, with a stream that answers the server's requests by `answer`."""

    def __init__(self, server: Server, answer: Callable[[dict[str, Any]], Awaitable[Any]] | None = None) -> None:
        self.server = server
        self.peer = Peer()
        self.sent: list[dict[str, Any]] = []
        self._answer = answer

    async def start(self, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        init = await self.result(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": capabilities or {"elicitation": {}},
                "clientInfo": {"name": "tasks-test", "version": "1"},
            },
        )
        self.peer.initialized = True
        return init

    async def _send(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)
        if "id" in msg and "method" in msg and self._answer is not None:
            reply = await self._answer(msg)
            asyncio.get_running_loop().call_soon(
                self.peer.deliver, {"jsonrpc": "2.0", "id": msg["id"], "result": reply}
            )

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        req_id = next(_ids)
        msg = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or {}}
        ex = Exchange(self.peer, req_id, method, self._send)
        out = await self.server.handle_message(msg, self.peer, ex)
        assert out is not None
        return dict(out)

    async def result(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        out = await self.rpc(method, params)
        assert "result" in out, out
        return dict(out["result"])

    async def error(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        out = await self.rpc(method, params)
        assert "error" in out, out
        return dict(out["error"])


@asynccontextmanager
async def served(app: App, runtime: RuntimeConfig | None = None, **task_options: Any) -> AsyncIterator[Served]:
    """`app` served by a started Server (runtime, lifespan, task runner), stopped on the way out."""
    options = {"store": "memory", "tick_s": 0.02, **task_options}
    server = Server(app, Runtime(runtime or RuntimeConfig(task_log=False)), tasks=TaskConfig(**options))
    lifecycle = Lifecycle(server)
    await lifecycle.start()
    try:
        yield Served(server)
    finally:
        await lifecycle.stop()
