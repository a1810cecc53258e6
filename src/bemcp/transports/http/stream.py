"""GET /mcp (the handshake era): a session's standalone SSE stream, for messages no request carries (resource
updates, list changes). One per session; pinged so proxies keep it open; ends when the client leaves, the
session ends, or the server shuts down."""

from __future__ import annotations

import asyncio

from bemcp.transports.http.wire import SSE_HEADERS, Receive, Send, sse_event, until_disconnect
from bemcp.transports.sessions import Session

PING_INTERVAL = 15.0


async def serve_stream(receive: Receive, send: Send, session: Session, ping_interval: float = PING_INTERVAL) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*SSE_HEADERS, (b"mcp-session-id", session.id.encode())],
        }
    )
    await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})
    loop = asyncio.get_running_loop()
    gone = loop.create_task(until_disconnect(receive), name="bemcp-get-stream-watch")
    try:
        while not gone.done() and not session.peer.closed:
            getter = loop.create_task(session.outbox.get())
            done, _ = await asyncio.wait({getter, gone}, timeout=ping_interval, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                data = getter.result()
                if not data:  # the session closed or the server is shutting down
                    break
                await send({"type": "http.response.body", "more_body": True, "body": sse_event(data)})
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
