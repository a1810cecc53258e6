"""The operations endpoints, each a small ASGI app reading only what it reports: `/healthz` (alive),
`/readyz` (accepting calls), `/metrics` (Prometheus or OpenMetrics, as the Accept header asks)."""

from __future__ import annotations

from collections.abc import Callable

from bemcp.protocol import jsonrpc
from bemcp.transports.http.wire import Receive, Scope, Send, plain


class Healthz:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await plain(send, 200, b'{"status":"ok"}', b"application/json")


class Readyz:
    """200 while new calls are accepted; 503 with why not (`not_ready()` returns the reason, or None)."""

    def __init__(self, not_ready: Callable[[], str | None]) -> None:
        self._not_ready = not_ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = self._not_ready()
        if reason is None:
            await plain(send, 200, b'{"ready":true}', b"application/json")
        else:
            await plain(send, 503, jsonrpc.dumps({"ready": False, "reason": reason}), b"application/json")


class Metrics:
    """One scrape per request: `scrape(accept)` returns the body and its content type."""

    def __init__(self, scrape: Callable[[str], tuple[bytes, str]]) -> None:
        self._scrape = scrape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accept = next((v for k, v in scope["headers"] if k == b"accept"), b"")
        body, ctype = self._scrape(accept.decode("latin-1"))
        await plain(send, 200, body, ctype.encode())
