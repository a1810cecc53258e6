"""`HttpTransport`: the ASGI app for Streamable HTTP. Routing and lifespan here; POST, the GET stream, the
ops endpoints, the header policies and the framing each live in a module of their own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from bemcp.lifecycle import Lifecycle
from bemcp.protocol import codes, versions
from bemcp.protocol.server import Server
from bemcp.transports.http.headers import McpHeaders
from bemcp.transports.http.ops import Healthz, Metrics, Readyz
from bemcp.transports.http.options import HttpOptions
from bemcp.transports.http.policies import Checks, guards
from bemcp.transports.http.post import Post
from bemcp.transports.http.stream import serve_stream
from bemcp.transports.http.wire import App, Receive, Scope, Send, plain, rpc_error
from bemcp.transports.limits import ConnectionGuard, ConnectionLimits
from bemcp.transports.sessions import SessionStore

log = logging.getLogger("bemcp.http")


class HttpTransport:
    """The ASGI application: `/mcp` (POST, GET, DELETE), `/healthz`, `/readyz`, `/metrics`.

    `start()`/`stop()` run from the ASGI lifespan, or from a parent app's (`lifespan`).
    """

    def __init__(self, server: Server, options: HttpOptions | None = None) -> None:
        self.server = server
        self.options = opts = options or HttpOptions()
        self.sessions = SessionStore(
            server,
            max_sessions=opts.max_sessions,
            idle_timeout=opts.session_idle_timeout,
            max_per_client=opts.max_sessions_per_client,
        )
        self._path = opts.path
        self.runtime = rt = server.runtime
        # The serving loop, from start(): asyncio.get_running_loop() costs a getpid() syscall per call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ever_started = False
        self.lifecycle = Lifecycle(server)
        self._guards: Checks | None = guards(opts)
        self._post = Post(server, self.sessions, opts)
        self._ops: dict[str, App] = {
            "/healthz": Healthz(),
            "/readyz": Readyz(self._not_ready),
            "/metrics": Metrics(rt.metrics.scrape),
        }
        registry = rt.metrics.registry
        registry.gauge("sessions", "Open 2025-11-25 HTTP sessions.", read=lambda: len(self.sessions))
        registry.counter(
            "sessions_refused_total",
            "initialize refused: session_limit (--max-sessions), client_session_limit (--max-sessions-per-client).",
            ("reason",),
            read=self._sessions_refused,
        )
        self.guard = ConnectionGuard(
            ConnectionLimits(opts.max_header_bytes, opts.header_timeout, opts.body_timeout, opts.max_connections),
            registry,
        )

    def _sessions_refused(self) -> dict[tuple[str, ...], float]:
        return {(r,): float(n) for r, n in self.sessions.refused.items()}

    def _not_ready(self) -> str | None:
        rt = self.runtime
        if rt.ready:
            return None
        return "draining" if rt.draining else "memory_critical" if rt.running else "stopped"

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Start the runtime and the app's lifespan (on this loop), then the session sweeper."""
        await self.lifecycle.start()
        self._loop = self._post.loop = asyncio.get_running_loop()
        self.sessions.start()
        self._ever_started = True

    async def stop(self) -> None:
        await self.sessions.stop()
        await self.lifecycle.stop()
        self._loop = self._post.loop = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """This app's start and stop as a lifespan for a parent app that mounts it:
        `Starlette(routes=[Mount("/tools", mcp)], lifespan=mcp.lifespan)`."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def _start_late(self) -> None:
        # Mounted in a parent whose lifespan does not run ours: start on the first request rather than
        # answer 404s, and say how to get a clean stop.
        log.warning(
            "the MCP app was not started by a lifespan: starting it now; pass lifespan=<mcp app>.lifespan to "
            "the parent app so that it also stops cleanly"
        )
        await self.start()

    def end_streams(self) -> None:
        """End every GET stream and subscriptions/listen stream now (after a drain, so shutdown does not wait on
        idle streams; a listen stream gets its graceful answer)."""
        self.sessions.end_streams()
        self.server.notifier.end_listeners()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as e:  # report it to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": repr(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routing -----------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self._loop is None and not self._ever_started:
                await self._start_late()
            path = scope["path"]
            root = scope.get("root_path")
            if root and path.startswith(root):  # mounted under a prefix (Starlette keeps the full path)
                path = path[len(root) :]
            if path == self._path or path == self._path + "/":
                await self._mcp(scope, receive, send)
                return
            op = self._ops.get(path)
            if op is not None:
                await op(scope, receive, send)
            else:
                await plain(send, 404, b"Not Found")
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        h = McpHeaders.parse(scope["headers"])
        if self._guards is not None:
            rejection = self._guards(h)
            if rejection is not None:
                await rpc_error(send, rejection.status, codes.INVALID_REQUEST, rejection.message)
                return
        method = scope["method"]
        if method == "POST":
            await self._post(scope, receive, send, h)
        elif method == "GET":
            await self._get(receive, send, h)
        elif method == "DELETE":
            await self._delete(send, h.session_id)
        else:
            await plain(send, 405, b"Method Not Allowed", extra=[(b"allow", b"GET, POST, DELETE")])

    async def _get(self, receive: Receive, send: Send, h: McpHeaders) -> None:
        if h.protocol_version in versions.MODERN:
            await plain(send, 405, b"Method Not Allowed", extra=[(b"allow", b"POST")])
            return
        if h.accept is None or b"text/event-stream" not in h.accept:
            await rpc_error(send, 406, codes.INVALID_REQUEST, "Not Acceptable: Accept must list text/event-stream")
            return
        sid = h.session_id
        if sid is None:
            await rpc_error(send, 400, codes.INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header")
            return
        session = self.sessions.get(sid)
        if session is None:
            await rpc_error(send, 404, codes.INVALID_REQUEST, "Session not found")
            return
        if session.stream_open:
            await rpc_error(send, 409, codes.INVALID_REQUEST, "Conflict: this session already has a GET stream")
            return
        session.stream_open = True
        try:
            await serve_stream(receive, send, session)
        finally:
            session.stream_open = False

    async def _delete(self, send: Send, sid: str | None) -> None:
        if sid is None:
            await rpc_error(send, 400, codes.INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header")
            return
        if not self.sessions.close(sid):
            await rpc_error(send, 404, codes.INVALID_REQUEST, "Session not found")
            return
        await plain(send, 200, b"")
