"""POST /mcp: one JSON-RPC message in, its answer out, for both revisions.

The stateless revision (2026-07-28) checks its routing headers against the
body and serves every request on one session-less peer; the handshake era
(2025-11-25) mints a session at `initialize` and finds it by `Mcp-Session-Id`
after. Either way a request runs through `Server.handle_request`, the one
exception boundary; here its answer only becomes a status line.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bemcp.protocol import codes, jsonrpc, versions
from bemcp.protocol.exchange import Exchange, Peer
from bemcp.protocol.jsonrpc import Kind, Message
from bemcp.protocol.refusals import RefusedAnswer
from bemcp.protocol.server import Server
from bemcp.runtime.cancel import CancelReason
from bemcp.transports import inflight
from bemcp.transports.http.headers import McpHeaders, param_mismatch
from bemcp.transports.http.options import HttpOptions
from bemcp.transports.http.policies import BodySize, Checks, post_checks
from bemcp.transports.http.wire import (
    Gone,
    Headers,
    Receive,
    Reply,
    Scope,
    Send,
    plain,
    read_body,
    rpc_error,
    send_json,
)
from bemcp.transports.sessions import SessionLimit, SessionStore, client_key

# JSON-RPC error code -> HTTP status (the 2026-07-28 table).
_STATUS = {
    codes.PARSE_ERROR: 400,
    codes.INVALID_REQUEST: 400,
    codes.INVALID_PARAMS: 400,
    codes.HEADER_MISMATCH: 400,
    codes.MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
    codes.UNSUPPORTED_PROTOCOL_VERSION: 400,
    codes.METHOD_NOT_FOUND: 404,
}
_ENVELOPE = (versions.META_PROTOCOL_VERSION, versions.META_CLIENT_CAPABILITIES)
# Start watching for a client disconnect only for calls that outlive this;
# most calls finish first and never pay for a watcher task.
_DISCONNECT_WATCH_AFTER = 0.05


def answer_status(response: Message | None, stateless: bool, reply: Reply) -> int:
    """The status line for an answer: a refusal is 503 with `Retry-After` in every revision; the stateless
    revision maps its error codes to statuses; everything else is 200."""
    if response is None or "error" not in response:
        return 200
    if type(response) is RefusedAnswer:
        reply.add_header(b"retry-after", b"%d" % response.retry_after_s)
        return 503
    return _STATUS.get(response["error"].get("code"), 200) if stateless else 200


class Post:
    """Serves POST /mcp; `loop` is the serving loop while started (cached: `get_running_loop()` costs a
    syscall)."""

    def __init__(
        self,
        server: Server,
        sessions: SessionStore,
        options: HttpOptions,
    ) -> None:
        self.server = server
        self.sessions = sessions
        self._limit = options.max_body_bytes
        self._checks: Checks = post_checks()
        self._body_size = BodySize(options.max_body_bytes)
        self.loop: asyncio.AbstractEventLoop | None = None
        # 2026-07-28 requests carry their own version and capabilities; they share one session-less peer.
        self.stateless_peer = Peer()
        # The app's tools by name (App never rebinds the dict): whose x-mcp-header arguments to check.
        self._tools = server.app.tools

    async def __call__(self, scope: Scope, receive: Receive, send: Send, h: McpHeaders) -> None:
        rejection = self._checks(h) or self._body_size(h)
        if rejection is not None:
            await rpc_error(send, rejection.status, codes.INVALID_REQUEST, rejection.message)
            return
        body = await read_body(receive, self._limit)
        if body is None:
            await rpc_error(send, 413, codes.INVALID_REQUEST, f"Payload Too Large: the limit is {self._limit} bytes")
            return
        if isinstance(body, Gone):
            return  # the client left (or --body-timeout ran out) before the body was complete: nobody to answer
        try:
            msg = jsonrpc.loads(body)
        except ValueError as e:
            await send_json(send, 400, jsonrpc.parse_error(str(e)))
            return
        if isinstance(msg, list):
            text = "Invalid request: JSON-RPC batches are not supported; send one message per POST"
            await send_json(send, 400, jsonrpc.error(None, codes.INVALID_REQUEST, text))
            return
        kind, reason = jsonrpc.classify(msg, body)
        if kind is Kind.INVALID:
            await send_json(send, 400, jsonrpc.invalid_request(msg, reason))
            return
        pv = h.protocol_version
        params = msg.get("params")
        stateless = (pv is not None and pv in versions.MODERN) or (
            isinstance(params, dict)
            and isinstance(params.get("_meta"), dict)
            and versions.META_PROTOCOL_VERSION in params["_meta"]
        )
        if pv is not None and not stateless and pv not in versions.HANDSHAKE:
            await send_json(
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
        if stateless:
            await self._stateless(scope, receive, send, msg, kind, h)
        else:
            await self._session(scope, receive, send, msg, kind, h)

    async def _stateless(
        self, scope: Scope, receive: Receive, send: Send, msg: Message, kind: Kind, h: McpHeaders
    ) -> None:
        if kind is not Kind.REQUEST:
            # No client notification carries meaning on this wire (cancel = closing the stream).
            await plain(send, 202, b"")
            return
        # The spec's order: the version header, the _meta envelope, then header/body agreement;
        # the version itself is checked by the dispatcher.
        req_id = msg["id"]
        if h.protocol_version is None:
            text = "Header mismatch: missing MCP-Protocol-Version header"
            await send_json(send, 400, jsonrpc.error(req_id, codes.HEADER_MISMATCH, text))
            return
        meta = (msg.get("params") or {}).get("_meta")
        missing = [k for k in _ENVELOPE if not isinstance(meta, dict) or k not in meta]
        if missing:
            text = f"Invalid params: params._meta is missing {', '.join(missing)}"
            await send_json(send, 400, jsonrpc.error(req_id, codes.INVALID_PARAMS, text))
            return
        mismatch = h.mismatch(msg)
        if mismatch is None and msg["method"] == "tools/call":
            # SEP-2243's Mcp-Param headers, inline (hot path): one dict lookup for a tool without x-mcp-header.
            # The name is None or a str here: the Mcp-Name check above refused anything else.
            params = msg["params"]
            tool = self._tools.get(params.get("name"))
            if tool is not None and tool.param_headers:
                mismatch = param_mismatch(scope["headers"], tool.param_headers, params.get("arguments"))
        if mismatch is not None:
            await send_json(send, 400, jsonrpc.error(req_id, codes.HEADER_MISMATCH, mismatch))
            return
        # Closing the response stream is this revision's cancel, so watch for the disconnect.
        await self._serve(send, msg, self.stateless_peer, [], True, stateless=True, receive=receive)

    async def _session(
        self, scope: Scope, receive: Receive, send: Send, msg: Message, kind: Kind, h: McpHeaders
    ) -> None:
        headers: Headers
        sid = h.session_id
        if kind is Kind.REQUEST and msg["method"] == "initialize":
            client = scope.get("client")
            try:
                session = self.sessions.create(client_key(client[0] if client else None))
            except SessionLimit as e:
                data = {"reason": e.reason, "retry_after_ms": 1000, "limit": e.limit}
                await rpc_error(send, 503, codes.OVERLOADED, e.message, data, extra=[(b"retry-after", b"1")])
                return
            headers = [(b"mcp-session-id", session.id.encode())]
        else:
            if sid is None:
                await rpc_error(
                    send,
                    400,
                    codes.INVALID_REQUEST,
                    "Bad Request: missing Mcp-Session-Id header "
                    "(send initialize first, or use the 2026-07-28 per-request _meta envelope)",
                )
                return
            found = self.sessions.get(sid)
            if found is None:
                await rpc_error(send, 404, codes.INVALID_REQUEST, "Session not found")
                return
            session = found
            headers = [(b"mcp-session-id", sid.encode())]
        if kind is not Kind.REQUEST:
            await self.server.handle_message(msg, session.peer)
            await plain(send, 202, b"")
            return
        # sse_ok: `accepts_both` let only a POST that accepts an SSE stream this far.
        await self._serve(send, msg, session.peer, headers, True, stateless=False, receive=receive)

    async def _serve(
        self,
        send: Send,
        msg: Message,
        peer: Peer,
        headers: Headers,
        sse_ok: bool,
        *,
        stateless: bool,
        receive: Receive | None = None,
    ) -> None:
        reply = Reply(send, sse_ok, headers)
        ex = Exchange(peer, msg["id"], msg["method"], reply.message, can_request=sse_ok and not stateless)
        # 2026-07-28 ids are not scoped to a session, and its cancel is the disconnect: not registered.
        if not stateless:
            refused = inflight.enter(ex, "in this session")
            if refused is not None:
                # As on stdio: one id, one request at a time, or its answers and cancels could not be told apart.
                await send_json(send, 400, refused)
                return
        loop = self.loop or asyncio.get_running_loop()
        ex.task = asyncio.current_task(loop)
        watcher: list[asyncio.Task[None]] = []
        timer = loop.call_later(_DISCONNECT_WATCH_AFTER, _watch, watcher, receive, ex) if receive else None
        try:
            response = await self.server.handle_request(msg, ex)  # the exception boundary: it answers cancels
        finally:
            if timer is not None:
                timer.cancel()
            if watcher:
                watcher[0].cancel()
            if not stateless:
                inflight.leave(ex)
        if ex.cancel_reason is CancelReason.DISCONNECT:
            return  # nobody is listening
        # A result (the common case) is 200 without asking.
        status = 200 if response is None or "error" not in response else answer_status(response, stateless, reply)
        await reply.finish(response, status)


def _watch(holder: list[asyncio.Task[None]], receive: Receive | None, ex: Exchange) -> None:
    if receive is None:
        return

    async def watch() -> None:
        while True:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.disconnect":
                ex.cancel(CancelReason.DISCONNECT)
                return

    holder.append(asyncio.get_running_loop().create_task(watch(), name="bemcp-disconnect-watch"))
