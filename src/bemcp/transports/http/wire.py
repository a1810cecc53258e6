"""ASGI framing: the POST reply (JSON, or SSE once anything precedes the answer), plain and JSON responses,
and body reading with its limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bemcp.protocol import jsonrpc
from bemcp.protocol.jsonrpc import Message

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def sse_event(data: bytes) -> bytes:
    return b"event: message\ndata: " + data + b"\n\n"


class Reply:
    """The response to one POSTed request: JSON by default, SSE once anything precedes the answer."""

    __slots__ = ("_headers", "_lock", "_send", "_sse_ok", "_started")

    def __init__(self, send: Send, sse_ok: bool, headers: Headers) -> None:
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
                await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + self._headers})
            await self._send({"type": "http.response.body", "more_body": True, "body": sse_event(jsonrpc.dumps(msg))})

    def add_header(self, name: bytes, value: bytes) -> None:
        self._headers = [*self._headers, (name, value)]

    async def finish(self, msg: Message | None, status: int = 200) -> None:
        if self._started:
            body = b"" if msg is None else sse_event(jsonrpc.dumps(msg))
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
                "headers": [*JSON_HEADERS, (b"content-length", b"%d" % len(body)), *self._headers],
            }
        )
        await self._send({"type": "http.response.body", "body": body})


class Gone:
    """`read_body`'s answer when the client left before the body was complete."""


GONE = Gone()


async def read_body(receive: Receive, limit: int) -> bytes | Gone | None:
    """The body; None past `limit`; `GONE` when the connection ended (or was timed out) first."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if not body and message["type"] == "http.disconnect":
            return GONE
        return body if len(body) <= limit else None
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            return GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def plain(
    send: Send, status: int, body: bytes, ctype: bytes = b"text/plain; charset=utf-8", extra: Headers | None = None
) -> None:
    headers = (
        [(b"content-type", ctype), (b"content-length", b"%d" % len(body))] if body else [(b"content-length", b"0")]
    )
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, msg: Message, extra: Headers | None = None) -> None:
    body = jsonrpc.dumps(msg)
    headers = [*JSON_HEADERS, (b"content-length", b"%d" % len(body))]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def rpc_error(
    send: Send, status: int, code: int, message: str, data: Any = None, extra: Headers | None = None
) -> None:
    """An error answer that no request id belongs to (the request was refused before it was read)."""
    await send_json(send, status, jsonrpc.error(None, code, message, data), extra)
