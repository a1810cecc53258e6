"""Connection limits in front of the ASGI app: header size, header and body timeouts, a connection cap.

uvicorn's httptools protocol enforces none of these: llhttp has no header-size limit (httptools buffers a whole
header value before the app sees anything), nothing times out a request whose head or body trickles in, and
connections are accepted without limit (`limit_concurrency` counts them, but answers only once a request has
been parsed, and counts the app's tasks too). So `bemcp serve` runs uvicorn with a subclass of that protocol,
made by `ConnectionGuard.protocol_class()`, which adds them where the bytes arrive:

- at most `max_header_bytes` of request line and headers reach the parser; past that: 431 and close;
- the head of a request must be complete `header_timeout` seconds after the connection opens, or after its
  first byte on a kept-alive connection; else 408 (a connection that sent nothing is just closed);
- the body must be complete `body_timeout` seconds after the headers; else 408;
- past `max_connections` open connections, a new one gets 503 (the overload answer, `data.reason`
  "connection_limit", with Retry-After) and is closed.

A refused connection is answered, then lingers (reading and discarding, at most `LINGER_S`) so that the client
reads the answer instead of a reset; at most `MAX_LINGERING` linger at once, and past that they close at once.
The call path pays a few attribute reads per `data_received` and no timer for a request that arrives whole.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bemcp.protocol import codes, jsonrpc
from bemcp.runtime.instruments import Registry

# The base's reader, called directly: `super()` builds an object on every call, and this runs for every read.
_feed = HttpToolsProtocol.data_received

LINGER_S = 1.0
MAX_LINGERING = 256
REASONS = ("header_too_large", "header_timeout", "body_timeout", "connection_limit")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 10_000


class ConnectionGuard:
    """What every connection of one server shares: the limits, the open-connection count and the refusals."""

    def __init__(self, limits: ConnectionLimits | None = None, metrics: Registry | None = None) -> None:
        self.limits = limits or ConnectionLimits()
        self.open = 0  # connections accepted and not yet lost (refused ones are not counted)
        self.lingering = 0
        self.refused: Counter[str] = Counter({r: 0 for r in REASONS})
        if metrics is not None:
            metrics.gauge("http_connections", "Open HTTP connections.", read=lambda: self.open)
            metrics.counter(
                "http_refused_total",
                "HTTP connections and requests refused before the app: header_too_large (431), header_timeout "
                "and body_timeout (408), connection_limit (503).",
                ("reason",),
                read=self._refused_series,
            )

    def _refused_series(self) -> dict[tuple[str, ...], float]:
        return {(r,): float(n) for r, n in self.refused.items()}

    def protocol_class(self) -> type[asyncio.Protocol]:
        """The uvicorn `http=` protocol class bound to this guard."""
        limits = self.limits
        attrs = {
            "guard": self,
            "cap": limits.max_header_bytes,
            "head_timeout": limits.header_timeout,
            "body_timeout": limits.body_timeout,
        }
        return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), attrs)


def _headers(body: bytes, retry: bool = False) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if retry:
        headers.append((b"retry-after", b"1"))
    headers.append((b"connection", b"close"))
    return headers


def _answer(status: int, body: bytes, retry: bool = False) -> bytes:
    """A whole HTTP/1.1 response, written straight to the transport."""
    lines = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())]
    lines += [name + b": " + value for name, value in _headers(body, retry)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _error(code: int, message: str, data: Any = None) -> bytes:
    return jsonrpc.dumps(jsonrpc.error(None, code, message, data))


def _parsed_size(scope: Any) -> int:
    """A request head's size from its parsed scope: request line and headers, written with ": " and no blanks."""
    query = scope["query_string"]
    line = len(scope["method"]) + len(scope["raw_path"]) + (len(query) + 1 if query else 0) + len("  HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guard's limits; made per server by `ConnectionGuard.protocol_class`.

    Only `data_received` is overridden (a parser callback override would cost every request a Python call): the
    phase of the connection is read after each read from uvicorn's own state, a new `cycle` once a head is
    complete and `cycle.more_body` until its body is.
    """

    # Slots, not the instance dict: uvicorn's protocol already has about as many attributes as CPython keeps in
    # a shared-key dict, and past that limit every attribute access on the connection (uvicorn's too) slows down.
    __slots__ = ("_counted", "_discard", "_head", "_lingering", "_timer", "_uncounted")

    guard: ClassVar[ConnectionGuard]
    cap: ClassVar[int]
    head_timeout: ClassVar[float]
    body_timeout: ClassVar[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes of the current request's head fed to the parser so far (0: none yet); -1 while in a body.
        self._head = 0
        # A head began inside a read, after the end of the request before it: it was not counted from its first
        # byte, so once complete it is held to the cap by its parsed size (`_recheck`).
        self._uncounted = False
        self._timer: asyncio.TimerHandle | None = None
        self._counted = False  # accepted and counted in guard.open
        self._discard = False  # refused: read and drop until closed
        self._lingering = False

    # -- connection --------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guard = self.guard
        limit = guard.limits.max_connections
        if guard.open >= limit:
            self.transport = transport
            self.flow = FlowControl(transport)
            body = _error(
                codes.OVERLOADED,
                f"Server busy: the connection limit {limit} is reached (--max-connections); retry after 1000 ms",
                {"reason": "connection_limit", "retry_after_ms": 1000, "limit": limit, "open": guard.open},
            )
            self._refuse("connection_limit", _answer(503, body, retry=True))
            return
        guard.open += 1
        self._counted = True
        super().connection_made(transport)
        self._timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lingering:
            self._lingering = False
            self.guard.lingering -= 1
        if self._counted:
            self._counted = False
            self.guard.open -= 1
            super().connection_lost(exc)

    # -- reading -----------------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._discard:
            return
        cycle = self.cycle
        head = self._head
        if head >= 0:
            head += len(data)
            if head > self.cap:
                self._over_cap(data, cycle)
                return
        _feed(self, data)
        new = self.cycle
        if head >= 0:
            if new is cycle:  # still reading the same head (or nothing came yet)
                self._head = head
                if head and self._timer is None:
                    self._watch()
                return
            if (
                not new.more_body
                and self._timer is None
                and not self.pipeline
                and not self._uncounted
                and self.headers is new.scope["headers"]
            ):
                self._head = 0  # one whole request in this read, nothing after it: most requests end here
                return
        elif new is cycle and cycle.more_body:
            return  # still inside the same body, on its clock
        self._settle(cycle, head)

    def _settle(self, cycle: Any, head: int) -> None:
        """After a read that ended a head or a body: the new phase, its clock, and any head to hold to the cap."""
        new = self.cycle
        if self._timer is not None:  # the clock of the head or body that just ended
            self._timer.cancel()
            self._timer = None
        if new is not cycle and new.more_body:
            self._head = -1
        elif self.headers is not new.scope["headers"]:
            # Another head began after the end of this one, in the same read: not counted from its start.
            self._head = 1
            self._uncounted = True
        else:
            self._head = 0
        if new is not cycle and (head < 0 or self._uncounted or self.pipeline):
            self._recheck(new)
        if not self._discard:
            self._watch()

    def _recheck(self, new: Any) -> None:
        """Hold to the cap, by their parsed size, the heads of this read that began after another request ended."""
        if self.headers is new.scope["headers"]:
            self._uncounted = False  # the uncounted head is complete now (or was never there)
        cap = self.cap
        queued = False
        for i, (cycle, app) in enumerate(self.pipeline):
            queued = queued or cycle is new
            if app != self._answer_too_large and _parsed_size(cycle.scope) > cap:
                self.pipeline[i] = (cycle, self._answer_too_large)  # answered 431 in its turn
                self.guard.refused["header_too_large"] += 1
        if not queued and _parsed_size(new.scope) > cap:
            self._too_large(current=True)  # started already, but has not run: it sees the client gone

    def _over_cap(self, data: bytes, cycle: Any) -> None:
        """Feed only what fits under the cap; if no head is complete by then, it is too large."""
        fits = self.cap - self._head
        _feed(self, data[:fits])
        if self.cycle is cycle:
            self._too_large()
            return
        self._settle(cycle, self._head)
        if not self._discard and not self.transport.is_closing():
            self.data_received(data[fits:])

    def _too_large(self, *, current: bool = False) -> None:
        self._refuse("header_too_large", _answer(431, self._too_large_body()), current=current)

    def _too_large_body(self) -> bytes:
        return _error(
            codes.INVALID_REQUEST,
            f"Request Header Fields Too Large: the request line and headers exceed {self.cap} bytes "
            "(--max-header-bytes)",
        )

    async def _answer_too_large(self, scope: Any, receive: Any, send: Any) -> None:
        """An ASGI app for one pipelined request: the 431, then the connection closes."""
        body = self._too_large_body()
        await send({"type": "http.response.start", "status": 431, "headers": _headers(body)})
        await send({"type": "http.response.body", "body": body})

    def _watch(self) -> None:
        """Start the clock on a head or a body that is not complete yet."""
        if self._timer is not None or self.transport.is_closing():
            return
        head = self._head
        if head > 0:
            cycle = self.cycle
            if cycle is None or cycle.response_complete:  # a pipelined head waits for its turn untimed
                self._timer = self.loop.call_later(self.head_timeout, self._head_timed_out)
        elif head < 0:
            self._timer = self.loop.call_later(self.body_timeout, self._body_timed_out)

    def _unsupported_upgrade_warning(self) -> None:
        # An Upgrade request is served as plain HTTP (MCP has no WebSocket); uvicorn would log two warnings for
        # each one, which lets any client flood the log.
        pass

    # -- timeouts ----------------------------------------------------------------------------------------------

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._discard or self.transport.is_closing():
            return
        if self._head == 0:  # nothing sent since the connection opened: close it like an idle keep-alive
            self.transport.close()
            return
        cycle = self.cycle
        if self._head > 0 and (cycle is None or cycle.response_complete):
            message = (
                f"Request Timeout: the request headers did not arrive within {self.head_timeout:g} s (--header-timeout)"
            )
            self._refuse("header_timeout", _answer(408, _error(codes.INVALID_REQUEST, message)))

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self._discard or self._head >= 0 or cycle is None or self.transport.is_closing():
            return
        if cycle.response_complete:  # answered without the body (413, say) while it still trickles in
            self.transport.close()
            return
        message = f"Request Timeout: the request body did not arrive within {self.body_timeout:g} s (--body-timeout)"
        self._refuse("body_timeout", _answer(408, _error(codes.INVALID_REQUEST, message)), current=True)

    # -- refusing ----------------------------------------------------------------------------------------------

    def _refuse(self, reason: str, answer: bytes, *, current: bool = False) -> None:
        """Answer and close. `current`: the refused request is the one the app is reading (a body timeout)."""
        guard = self.guard
        guard.refused[reason] += 1
        transport = self.transport
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            transport.write(answer)
        else:
            if current and not cycle.response_started:
                transport.write(answer)  # else it would land inside another response: just close
            # The app's receive() now says the client left, and whatever it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self._discard = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if guard.lingering >= MAX_LINGERING:
            transport.close()
            return
        guard.lingering += 1
        self._lingering = True
        if transport.can_write_eof():
            transport.write_eof()
        if self.flow is not None:
            self.flow.resume_reading()
        self._timer = self.loop.call_later(LINGER_S, transport.close)
