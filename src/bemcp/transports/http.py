"""Streamable HTTP as a raw ASGI app: /mcp, /healthz, /readyz, /metrics.

Raw ASGI rather than a framework: the hot path is one header scan, one body
read, one dispatch and one `send`. A request answers JSON unless the handler
sends something first (progress, a log line, a client request), in which case
the response turns into an SSE stream on the spot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bemcp.lifecycle import Lifecycle
from bemcp.protocol import codes, jsonrpc, versions
from bemcp.protocol.exchange import Exchange, Peer
from bemcp.protocol.jsonrpc import Kind, Message
from bemcp.protocol.server import Server
from bemcp.transports.limits import ConnectionGuard, ConnectionLimits
from bemcp.transports.sessions import SESSION_ENDED, Session, SessionLimit, SessionStore, client_key

log = logging.getLogger("bemcp.http")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# JSON-RPC error code -> HTTP status (the 2026-07-28 table; also used for handshake-era errors).
_STATUS = {
    codes.PARSE_ERROR: 400,
    codes.INVALID_REQUEST: 400,
    codes.INVALID_PARAMS: 400,
    codes.HEADER_MISMATCH: 400,
    codes.MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
    codes.UNSUPPORTED_PROTOCOL_VERSION: 400,
    codes.METHOD_NOT_FOUND: 404,
}
_NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_ENVELOPE = (versions.META_PROTOCOL_VERSION, versions.META_CLIENT_CAPABILITIES)
# Start watching for a client disconnect only for calls that outlive this;
# most calls finish first and never pay for a watcher task.
_DISCONNECT_WATCH_AFTER = 0.05
_SSE_PING_INTERVAL = 15.0

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


@dataclass(slots=True)
class HttpOptions:
    path: str = "/mcp"
    max_body_bytes: int = 4 * 1024 * 1024
    max_sessions: int = 10_000
    max_sessions_per_client: int = 1000
    session_idle_timeout: float = 1800.0
    # Enforced by the uvicorn protocol `guard.protocol_class()` makes (bemcp serve uses it; see transports.limits).
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 10_000
    allowed_hosts: tuple[str, ...] | None = None  # None: loopback names only
    allowed_origins: tuple[str, ...] | None = None  # None: loopback origins only
    dns_rebinding_protection: bool = True


def _host_name(value: str) -> str:
    if value.startswith("["):
        return value[: value.find("]") + 1]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _origin_host(origin: str) -> str:
    rest = origin.split("://", 1)[-1]
    return _host_name(rest.split("/", 1)[0])


class _Reply:
    """The response to one POSTed request: JSON by default, SSE once anything precedes the answer."""

    __slots__ = ("_headers", "_lock", "_send", "_sse_ok", "_started")

    def __init__(self, send: Send, sse_ok: bool, headers: list[tuple[bytes, bytes]]) -> None:
        self._send = send
        self._sse_ok = sse_ok
        self._headers = headers
        self._started = False
        self._lock: asyncio.Lock | None = None

    async def message(self, msg: Message) -> None:
        """Send a notification or request ahead of the response."""
        if not self._sse_ok:
            return  # a JSON-only client cannot receive it; the response still comes
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._started:
                self._started = True
                await self._send(
                    {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + self._headers}
                )
            await self._send(
                {
                    "type": "http.response.body",
                    "more_body": True,
                    "body": b"event: message\ndata: " + jsonrpc.dumps(msg) + b"\n\n",
                }
            )

    def add_header(self, name: bytes, value: bytes) -> None:
        self._headers = [*self._headers, (name, value)]

    async def finish(self, msg: Message | None, status: int = 200) -> None:
        if self._started:
            body = b"" if msg is None else b"event: message\ndata: " + jsonrpc.dumps(msg) + b"\n\n"
            if self._lock is not None:
                async with self._lock:
                    await self._send({"type": "http.response.body", "body": body})
            else:
                await self._send({"type": "http.response.body", "body": body})
            return
        if msg is None:  # cancelled: nothing to say, but the exchange must end
            await self._send({"type": "http.response.start", "status": 202, "headers": self._headers})
            await self._send({"type": "http.response.body", "body": b""})
            return
        body = jsonrpc.dumps(msg)
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", b"%d" % len(body)), *self._headers],
            }
        )
        await self._send({"type": "http.response.body", "body": body})


class HttpTransport:
    """The ASGI application. `start()`/`stop()` run from the ASGI lifespan."""

    def __init__(self, server: Server, options: HttpOptions | None = None) -> None:
        self.server = server
        self.options = options or HttpOptions()
        opts = self.options
        self.sessions = SessionStore(
            server,
            max_sessions=opts.max_sessions,
            idle_timeout=opts.session_idle_timeout,
            max_per_client=opts.max_sessions_per_client,
        )
        self._path = self.options.path
        # 2026-07-28 requests carry their own version and capabilities; they share one session-less peer.
        self._stateless = Peer()
        self.runtime = server.runtime
        # The serving loop, from start(): asyncio.get_running_loop() costs a getpid() syscall per call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ever_started = False
        self.lifecycle = Lifecycle(server)
        registry = self.runtime.metrics.registry
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

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Start the runtime and the app's lifespan (on this loop), then the session sweeper."""
        await self.lifecycle.start()
        self._loop = asyncio.get_running_loop()
        self.sessions.start()
        self._ever_started = True

    async def stop(self) -> None:
        await self.sessions.stop()
        await self.lifecycle.stop()
        self._loop = None

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
            elif path == "/healthz":
                await _plain(send, 200, b'{"status":"ok"}', b"application/json")
            elif path == "/readyz":
                await self._readyz(send)
            elif path == "/metrics":
                accept = next((v for k, v in scope["headers"] if k == b"accept"), b"")
                body, ctype = self.runtime.metrics.scrape(accept.decode("latin-1"))
                await _plain(send, 200, body, ctype.encode())
            else:
                await _plain(send, 404, b"Not Found")
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _readyz(self, send: Send) -> None:
        rt = self.runtime
        if rt.ready:
            await _plain(send, 200, b'{"ready":true}', b"application/json")
            return
        reason = "draining" if rt.draining else "memory_critical" if rt.running else "stopped"
        await _plain(send, 503, jsonrpc.dumps({"ready": False, "reason": reason}), b"application/json")

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

    # -- /mcp --------------------------------------------------------------

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = origin = accept = ctype = pv = sid = mcp_method = mcp_name = None
        content_length = -1
        for k, v in scope["headers"]:
            if k == b"host":
                host = v
            elif k == b"accept":
                accept = v
            elif k == b"content-type":
                ctype = v
            elif k == b"content-length":
                content_length = int(v) if v.isdigit() else -1
            elif k == b"origin":
                origin = v
            elif k == b"mcp-protocol-version":
                pv = v.decode("latin-1")
            elif k == b"mcp-session-id":
                sid = v.decode("latin-1")
            elif k == b"mcp-method":
                mcp_method = v.decode("latin-1").strip()
            elif k == b"mcp-name":
                mcp_name = v.decode("latin-1").strip()
        if self.options.dns_rebinding_protection:
            if not _trusted_host(host, self.options):
                await _rpc_error(
                    send,
                    421,
                    codes.INVALID_REQUEST,
                    "Misdirected Request: Host header not allowed (DNS-rebinding protection; see --allowed-hosts)",
                )
                return
            if not _trusted_origin(origin, self.options):
                await _rpc_error(
                    send,
                    403,
                    codes.INVALID_REQUEST,
                    "Forbidden: Origin not allowed (DNS-rebinding protection; see --allowed-origins)",
                )
                return
        method = scope["method"]
        if method == "POST":
            await self._post(scope, receive, send, accept, ctype, content_length, pv, sid, mcp_method, mcp_name)
        elif method == "GET":
            await self._get(receive, send, accept, pv, sid)
        elif method == "DELETE":
            await self._delete(send, sid)
        else:
            await _plain(send, 405, b"Method Not Allowed", extra=[(b"allow", b"GET, POST, DELETE")])

    async def _post(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        accept: bytes | None,
        ctype: bytes | None,
        content_length: int,
        pv: str | None,
        sid: str | None,
        mcp_method: str | None,
        mcp_name: str | None,
    ) -> None:
        if ctype is None or ctype.split(b";", 1)[0].strip().lower() != b"application/json":
            await _rpc_error(
                send, 415, codes.INVALID_REQUEST, "Unsupported Media Type: Content-Type must be application/json"
            )
            return
        sse_ok = accept is not None and (b"text/event-stream" in accept or b"*/*" in accept)
        json_ok = accept is not None and (b"application/json" in accept or b"*/*" in accept)
        if not (sse_ok and json_ok):
            await _rpc_error(
                send,
                406,
                codes.INVALID_REQUEST,
                "Not Acceptable: Accept must list application/json and text/event-stream",
            )
            return
        limit = self.options.max_body_bytes
        if content_length > limit:
            await _rpc_error(send, 413, codes.INVALID_REQUEST, f"Payload Too Large: the limit is {limit} bytes")
            return
        body = await _read_body(receive, limit)
        if body is None:
            await _rpc_error(send, 413, codes.INVALID_REQUEST, f"Payload Too Large: the limit is {limit} bytes")
            return
        if isinstance(body, _Gone):
            return  # the client left (or --body-timeout ran out) before the body was complete: nobody to answer
        try:
            msg = jsonrpc.loads(body)
        except ValueError as e:
            await _send_json(send, 400, jsonrpc.parse_error(str(e)))
            return
        if isinstance(msg, list):
            await _send_json(
                send,
                400,
                jsonrpc.error(
                    None,
                    codes.INVALID_REQUEST,
                    "Invalid request: JSON-RPC batches are not supported; send one message per POST",
                ),
            )
            return
        kind, reason = jsonrpc.classify(msg, body)
        if kind is Kind.INVALID:
            await _send_json(send, 400, jsonrpc.invalid_request(msg, reason))
            return
        params = msg.get("params")
        modern = (pv is not None and pv in versions.MODERN) or (
            isinstance(params, dict)
            and isinstance(params.get("_meta"), dict)
            and versions.META_PROTOCOL_VERSION in params["_meta"]
        )
        if pv is not None and not modern and pv not in versions.HANDSHAKE:
            await _send_json(
                send,
                400,
                jsonrpc.error(
                    msg.get("id") if kind is Kind.REQUEST else None,
                    codes.UNSUPPORTED_PROTOCOL_VERSION,
                    f"Unsupported protocol version: {pv}",
                    {"supported": list(versions.SUPPORTED), "requested": pv},
                ),
            )
            return
        if modern:
            await self._post_modern(receive, send, msg, kind, pv, mcp_method, mcp_name)
        else:
            await self._post_session(scope, receive, send, msg, kind, sid, sse_ok)

    async def _post_modern(
        self,
        receive: Receive,
        send: Send,
        msg: Message,
        kind: Kind,
        pv: str | None,
        mcp_method: str | None,
        mcp_name: str | None,
    ) -> None:
        if kind is not Kind.REQUEST:
            # No client notification carries meaning on this wire (cancel = closing the stream).
            await _plain(send, 202, b"")
            return
        # The spec's order: the version header, the _meta envelope, then header/body agreement;
        # the version itself is checked by the dispatcher.
        req_id = msg["id"]
        if pv is None:
            await _send_json(
                send,
                400,
                jsonrpc.error(req_id, codes.HEADER_MISMATCH, "Header mismatch: missing MCP-Protocol-Version header"),
            )
            return
        meta = (msg.get("params") or {}).get("_meta")
        missing = [k for k in _ENVELOPE if not isinstance(meta, dict) or k not in meta]
        if missing:
            await _send_json(
                send,
                400,
                jsonrpc.error(
                    req_id, codes.INVALID_PARAMS, f"Invalid params: params._meta is missing {', '.join(missing)}"
                ),
            )
            return
        mismatch = _header_mismatch(msg, pv, mcp_method, mcp_name)
        if mismatch is not None:
            await _send_json(send, 400, jsonrpc.error(req_id, codes.HEADER_MISMATCH, mismatch))
            return
        # Closing the response stream is this revision's cancel, so watch for the disconnect.
        await self._serve_request(send, msg, self._stateless, [], True, modern=True, receive=receive)

    async def _post_session(
        self, scope: Scope, receive: Receive, send: Send, msg: Message, kind: Kind, sid: str | None, sse_ok: bool
    ) -> None:
        headers: list[tuple[bytes, bytes]]
        if kind is Kind.REQUEST and msg["method"] == "initialize":
            client = scope.get("client")
            try:
                session = self.sessions.create(client_key(client[0] if client else None))
            except SessionLimit as e:
                await _rpc_error(
                    send,
                    503,
                    codes.OVERLOADED,
                    e.message,
                    {"reason": e.reason, "retry_after_ms": 1000, "limit": e.limit},
                    extra=[(b"retry-after", b"1")],
                )
                return
            headers = [(b"mcp-session-id", session.id.encode())]
        else:
            if sid is None:
                await _rpc_error(
                    send,
                    400,
                    codes.INVALID_REQUEST,
                    "Bad Request: missing Mcp-Session-Id header "
                    "(send initialize first, or use the 2026-07-28 per-request _meta envelope)",
                )
                return
            found = self.sessions.get(sid)
            if found is None:
                await _rpc_error(send, 404, codes.INVALID_REQUEST, "Session not found")
                return
            session = found
            headers = [(b"mcp-session-id", sid.encode())]
        if kind is not Kind.REQUEST:
            await self.server.handle_message(msg, session.peer)
            await _plain(send, 202, b"")
            return
        await self._serve_request(send, msg, session.peer, headers, sse_ok, modern=False, receive=receive)

    async def _serve_request(
        self,
        send: Send,
        msg: Message,
        peer: Peer,
        headers: list[tuple[bytes, bytes]],
        sse_ok: bool,
        *,
        modern: bool,
        receive: Receive | None = None,
    ) -> None:
        req_id = msg["id"]
        if not modern and req_id in peer.inflight:
            # As on stdio: one id, one request at a time, or its answers and cancels could not be told apart.
            await _send_json(
                send,
                400,
                jsonrpc.error(
                    req_id,
                    codes.INVALID_REQUEST,
                    f"Invalid request: id {req_id!r} is already in flight in this session",
                ),
            )
            return
        reply = _Reply(send, sse_ok, headers)
        ex = Exchange(peer, req_id, msg["method"], reply.message, can_request=sse_ok and not modern)
        loop = self._loop or asyncio.get_running_loop()
        ex.task = task = asyncio.current_task(loop)
        if not modern:  # 2026-07-28 ids are not scoped to a session, and its cancel is the disconnect
            peer.inflight[req_id] = ex
        watcher: list[asyncio.Task[None]] = []
        timer = loop.call_later(_DISCONNECT_WATCH_AFTER, self._watch, watcher, receive, ex) if receive else None
        try:
            response = await self.server.handle_request(msg, ex)
        except asyncio.CancelledError:
            if ex.cancel_reason is None or task is None:
                raise
            task.uncancel()
            response = None
        finally:
            if timer is not None:
                timer.cancel()
            if watcher:
                watcher[0].cancel()
            if peer.inflight.get(req_id) is ex:
                del peer.inflight[req_id]
        if ex.cancel_reason == "disconnect":
            return  # nobody is listening
        if ex.cancel_reason == SESSION_ENDED:
            response = jsonrpc.error(
                req_id,
                codes.CONNECTION_CLOSED,
                f"{msg['method']} was cancelled: its session ended before it finished",
                {"reason": SESSION_ENDED},
            )
        status = 200
        if response is not None and "error" in response:
            error = response["error"]
            if error.get("code") == codes.OVERLOADED:
                # The documented overload answer: 503 and Retry-After, in every revision.
                retry_ms = (error.get("data") or {}).get("retry_after_ms", 1000)
                reply.add_header(b"retry-after", b"%d" % max(1, -(-int(retry_ms) // 1000)))
                status = 503
            elif modern:
                status = _STATUS.get(error.get("code"), 200)
        await reply.finish(response, status)

    def _watch(self, holder: list[asyncio.Task[None]], receive: Receive | None, ex: Exchange) -> None:
        if receive is None:
            return

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    ex.cancel("disconnect")
                    return

        holder.append(asyncio.get_running_loop().create_task(watch(), name="bemcp-disconnect-watch"))

    # -- GET: the standalone SSE stream (handshake era) ----------------------

    async def _get(self, receive: Receive, send: Send, accept: bytes | None, pv: str | None, sid: str | None) -> None:
        if pv in versions.MODERN:
            await _plain(send, 405, b"Method Not Allowed", extra=[(b"allow", b"POST")])
            return
        if accept is None or b"text/event-stream" not in accept:
            await _rpc_error(send, 406, codes.INVALID_REQUEST, "Not Acceptable: Accept must list text/event-stream")
            return
        if sid is None:
            await _rpc_error(send, 400, codes.INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header")
            return
        session = self.sessions.get(sid)
        if session is None:
            await _rpc_error(send, 404, codes.INVALID_REQUEST, "Session not found")
            return
        if session.stream_open:
            await _rpc_error(send, 409, codes.INVALID_REQUEST, "Conflict: this session already has a GET stream")
            return
        session.stream_open = True
        try:
            await self._stream(receive, send, session)
        finally:
            session.stream_open = False

    async def _stream(self, receive: Receive, send: Send, session: Session) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_SSE_HEADERS, (b"mcp-session-id", session.id.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})
        loop = asyncio.get_running_loop()
        gone = loop.create_task(_until_disconnect(receive), name="bemcp-get-stream-watch")
        try:
            while not gone.done() and not session.peer.closed:
                getter = loop.create_task(session.outbox.get())
                done, _ = await asyncio.wait(
                    {getter, gone}, timeout=_SSE_PING_INTERVAL, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    data = getter.result()
                    if not data:  # the session closed or the server is shutting down
                        break
                    await send(
                        {
                            "type": "http.response.body",
                            "more_body": True,
                            "body": b"event: message\ndata: " + data + b"\n\n",
                        }
                    )
                else:
                    getter.cancel()
                    await asyncio.gather(getter, return_exceptions=True)
                    if not done:
                        await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
        finally:
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
        if not gone.cancelled() and gone.done():
            return
        await send({"type": "http.response.body", "body": b""})

    async def _delete(self, send: Send, sid: str | None) -> None:
        if sid is None:
            await _rpc_error(send, 400, codes.INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header")
            return
        if not self.sessions.close(sid):
            await _rpc_error(send, 404, codes.INVALID_REQUEST, "Session not found")
            return
        await _plain(send, 200, b"")


# -- helpers ---------------------------------------------------------------


def _trusted_host(host: bytes | None, options: HttpOptions) -> bool:
    if host is None:
        return True  # HTTP/1.0 without Host: nothing for a rebinding attack to ride on
    name = _host_name(host.decode("latin-1")).lower()
    if name in _LOOPBACK:  # loopback names always stay allowed; --allowed-hosts adds to them
        return True
    allowed = options.allowed_hosts
    return allowed is not None and ("*" in allowed or name in allowed)


def _trusted_origin(origin: bytes | None, options: HttpOptions) -> bool:
    if origin is None:
        return True  # not a browser
    value = origin.decode("latin-1").lower()
    if _origin_host(value) in _LOOPBACK:
        return True
    allowed = options.allowed_origins
    return allowed is not None and ("*" in allowed or value in allowed)


def _header_mismatch(msg: Message, pv: str | None, mcp_method: str | None, mcp_name: str | None) -> str | None:
    """The 2026-07-28 routing-header rule: headers must be present and equal the body."""
    meta = (msg.get("params") or {}).get("_meta")
    body_version = meta.get(versions.META_PROTOCOL_VERSION) if isinstance(meta, dict) else None
    if pv is None or pv != body_version:
        return (
            f"Header mismatch: MCP-Protocol-Version header {pv!r} does not match the body's "
            f"protocol version {body_version!r}"
        )
    method = msg["method"]
    if mcp_method != method:
        return f"Header mismatch: Mcp-Method header {mcp_method!r} does not match body method {method!r}"
    key = _NAME_PARAM.get(method)
    if key is not None:
        value = (msg.get("params") or {}).get(key)
        if value is not None and _decode_header(mcp_name) != value:
            return f"Header mismatch: Mcp-Name header {mcp_name!r} does not match body value {value!r}"
    return None


def _decode_header(value: str | None) -> str | None:
    if value is not None and value.startswith("=?base64?") and value.endswith("?="):
        import base64
        import binascii

        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return value


class _Gone:
    """`_read_body`'s answer when the client left before the body was complete."""


_GONE = _Gone()


async def _read_body(receive: Receive, limit: int) -> bytes | _Gone | None:
    """The body; None past `limit`; `_GONE` when the connection ended (or was timed out) first."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if not body and message["type"] == "http.disconnect":
            return _GONE
        return body if len(body) <= limit else None
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            return _GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _plain(
    send: Send,
    status: int,
    body: bytes,
    ctype: bytes = b"text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = (
        [(b"content-type", ctype), (b"content-length", b"%d" % len(body))] if body else [(b"content-length", b"0")]
    )
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, msg: Message, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = jsonrpc.dumps(msg)
    headers = [*_JSON_HEADERS, (b"content-length", b"%d" % len(body))]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _rpc_error(
    send: Send, status: int, code: int, message: str, data: Any = None, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send_json(send, status, jsonrpc.error(None, code, message, data), extra)
