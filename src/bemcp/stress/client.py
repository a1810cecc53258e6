"""The load generator's HTTP client (Streamable HTTP, both MCP revisions) and what all clients share.

Why not httpx or the SDK's `Client`: the load generator must not be what gets measured. The HTTP client is an
`asyncio.Protocol` with httptools' C parser, pre-built request heads and one orjson call each way, so a call costs
the client tens of microseconds. Every call either gets an answer or is classified (`classify`) as a
`model.Outcome`; nothing a server does makes `call_tool` raise. The stdio client is in `stdio_client`.

An answer is matched to its call by id and by method, and an answer that matches no call is never anyone's
success: request ids are scattered (`RequestIds`), so an id a server gets slightly wrong (id + 1) names no other
call in flight; an answer with another id is `protocol_error` "wrong_id"; a result of the wrong shape for its
method (a `tools/list` result to a `tools/call`) is `protocol_error` "wrong_result"; and answers no call can
carry (a duplicate, an id never sent, a response with no request outstanding) are counted in the client's
`Tally`, which the report turns into findings.

Revisions: 2026-07-28 (`MODERN`) puts the `_meta` envelope on every request and the routing headers on every
POST; 2025-11-25 and older (`LEGACY`) run `initialize` + `notifications/initialized` once per client, then send
`Mcp-Session-Id` and `MCP-Protocol-Version` on HTTP.

Tasks (`tasks_client` builds on these): `HttpSession.task_request` sends a request whose 2026-07-28 envelope
declares the `io.modelcontextprotocol/tasks` extension and elicitation (`TASK_CAPABILITIES`), routed by the task id
(`Mcp-Name`); on 2025-11-25 it may pass `on_request`, which sees every request the server sends on that request's
SSE stream (a task's questions on a `tasks/result` stream), and `HttpSession.respond` posts the answer back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import ssl as ssl_module
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast
from urllib.parse import urlsplit

import httptools
import orjson

from bemcp import __version__
from bemcp.protocol import codes, versions
from bemcp.stress.model import CallResult, Outcome

# The tester speaks the newest revision of each kind the protocol package names: the stateless one, and the
# newest one negotiated with `initialize`.
MODERN: Final = versions.MODERN[0]
LEGACY: Final = versions.LATEST_HANDSHAKE
MODERN_REVISIONS: Final = frozenset(versions.MODERN)
OVERLOAD_CODE: Final = codes.OVERLOADED  # BE-MCP's documented overload error; `data.reason` says why
CLIENT_INFO: Final = {"name": "bemcp-stress", "version": __version__}

_META_VERSION = versions.META_PROTOCOL_VERSION
_META_CAPS = versions.META_CLIENT_CAPABILITIES
_META_INFO = versions.META_CLIENT_INFO
_NAME_PARAM = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "tasks/get": "taskId",
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}
TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
# What a tasks client declares: the extension (2026-07-28: per request) and elicitation, to answer a task's questions.
TASK_CAPABILITIES: Final[dict[str, Any]] = {"elicitation": {}, "extensions": {TASKS_EXTENSION: {}}}
# An idle keep-alive connection older than this is dropped rather than reused: servers close idle
# connections after a few seconds (uvicorn: 5 s), and a request racing that close would fail spuriously.
_MAX_IDLE = 2.0
# After an SSE answer arrives, how long the rest of the stream may take before the connection is dropped.
_SSE_TAIL_GRACE = 2.0
# The most one response may send (headers, body, SSE stream): past it the connection is dropped, so a server
# streaming without end cannot fill the tester's memory.
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024
# The result key each method's answer must have (a list): an answer of another method's shape is not this call's.
_RESULT_LISTS: Final = {"tools/call": "content", "tools/list": "tools", "resources/list": "resources"}
_DIGITS = re.compile(rb"\d+(?:\.\d+)?")


def is_stateless(revision: str) -> bool:
    return revision in MODERN_REVISIONS


def stateless_meta(
    client_info: Mapping[str, Any] = CLIENT_INFO, capabilities: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {_META_VERSION: MODERN, _META_CAPS: dict(capabilities or {}), _META_INFO: dict(client_info)}


# -- request ids and the answers no call can carry --------------------------------------------------------

ID_BITS: Final = 40  # each id sequence lives in [base, base + 2**40): workers get bases `number << 40`
_ID_MASK: Final = (1 << ID_BITS) - 1
# Call n gets id base + n * _ID_SCATTER mod 2**40: a bijection (the multiplier is odd), so ids never repeat. Its
# inverse, _ID_GATHER, is the odd number nearest 2**40 / golden ratio, which puts id + d, for every |d| <= 1024,
# about 5 * 10**8 calls away in the sequence (10**7 for |d| <= 65536): no other call of a run has it.
_ID_GATHER: Final = 0x9E3779B97F
_ID_SCATTER: Final = pow(_ID_GATHER, -1, 1 << ID_BITS)


class RequestIds:
    """The request ids of one client: unique, JSON-safe integers (< 2**53 for any base up to 63 << 40), scattered
    so that an id near one in flight belongs to no call, and checkable (`issued`) without storing them."""

    __slots__ = ("_n", "base")

    def __init__(self, base: int = 0) -> None:
        if base < 0 or base & _ID_MASK:
            raise ValueError("an id base must be a multiple of 2**40")
        self.base = base
        self._n = 0

    def next(self) -> int:
        self._n += 1
        return self.base + (self._n * _ID_SCATTER & _ID_MASK)

    def issued(self, req_id: Any) -> bool:
        """Whether this sequence has handed out `req_id`."""
        if type(req_id) is not int:
            return False
        offset = req_id - self.base
        return 0 <= offset <= _ID_MASK and 1 <= (offset * _ID_GATHER & _ID_MASK) <= self._n


class Tally:
    """What a server sent that no call can carry, by kind; `since(snapshot)` is what a step saw.

    - `unknown_id`: an answer to an id this client never sent (a wrong id that names no call);
    - `duplicate`: a second answer to one request;
    - `unsolicited`: an HTTP response on a connection with no request outstanding;
    - `stray_output`: a stdio line that is not JSON-RPC.
    None of them is counted as any call's answer.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def since(self, before: Mapping[str, int]) -> dict[str, int]:
        return {k: n - before.get(k, 0) for k, n in sorted(self.counts.items()) if n > before.get(k, 0)}


# -- errors ---------------------------------------------------------------------------------------------


class ClientError(Exception):
    """A request got no usable answer. `detail` is a short, low-cardinality label for counting."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class TransportError(ClientError):
    """Connection refused or reset, malformed HTTP, an unparseable answer, EOF on stdio."""


class ConnectError(TransportError):
    """No connection could be made: nothing listening, or the host is unreachable."""


class RequestTimeout(ClientError):
    """No answer within the timeout. Detail "unread": the server had not even read everything sent to it."""

    def __init__(self, message: str = "no answer within the timeout", detail: str = "timeout") -> None:
        super().__init__(message, detail)


# -- classification -------------------------------------------------------------------------------------


def classify(msg: Any, status: int = 200, method: str | None = None) -> tuple[Outcome, str | None]:
    """Classify an answer (a JSON-RPC message or None) and its HTTP status into an outcome and a detail.

    - a result with `isError: true` → tool_error (detail: its first text line, numbers folded to N);
    - a result asking for input (2026-07-28 `input_required`) → protocol_error "input_required": we declare no
      client capabilities, so a server should not ask;
    - a result without the list its `method` answers with (`content` for tools/call, `tools` for tools/list)
      → protocol_error "wrong_result": another request's answer, or none at all;
    - any other result → ok;
    - JSON-RPC error -32050, or any error under HTTP 503/429 → overload (detail: `data.reason`, else http_<status>);
    - any other JSON-RPC error → protocol_error (detail: the code, e.g. "-32602");
    - no JSON-RPC answer: 503/429 → overload; 2xx → transport_error "no_answer_http_<status>" (nothing came
      back); any other status → protocol_error "http_<status>" (the server refused at the HTTP level).
    Timeouts and connection failures never reach here: see `failure`.
    """
    if isinstance(msg, dict):
        result = msg.get("result")
        if isinstance(result, dict):
            if result.get("isError") is True:
                return "tool_error", _tool_error_detail(result)
            if result.get("resultType") == "input_required":
                return "protocol_error", "input_required"  # we declare no client capabilities to answer with
            key = _RESULT_LISTS.get(method) if method is not None else None
            if key is not None and type(result.get(key)) is not list:
                return "protocol_error", "wrong_result"
            return "ok", None
        error = msg.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            data = error.get("data")
            reason = data.get("reason") if isinstance(data, dict) else None
            if code == OVERLOAD_CODE or status in (503, 429):
                return "overload", str(reason) if reason is not None else f"http_{status}"
            return "protocol_error", str(code)
        if "result" in msg:  # a non-object result: an answer, though not one a method with a shape gives
            return ("protocol_error", "wrong_result") if method in _RESULT_LISTS else ("ok", None)
    if status in (503, 429):
        return "overload", f"http_{status}"
    if 200 <= status < 300:
        return "transport_error", f"no_answer_http_{status}"
    return "protocol_error", f"http_{status}"


def _tool_error_detail(result: dict[str, Any]) -> str | None:
    # The first line of the first text block, numbers folded, so "refused 512.0 MiB" and "refused 640.0 MiB"
    # count as one kind of failure.
    content = result.get("content")
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        return None
    text = content[0].get("text")
    if not isinstance(text, str):
        return None
    line = text.split("\n", 1)[0][:120].encode()
    return _DIGITS.sub(b"N", line).decode(errors="replace")


# -- HTTP -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an HTTP MCP server listens."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parse `http[s]://HOST[:PORT][/PATH]`; raises ValueError for anything else."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as e:
            raise ValueError(f"bad port in {url!r}: {e}") from None
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(parts.scheme, parts.hostname, port, path)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host_header}"

    def ssl_context(self) -> ssl_module.SSLContext | None:
        return ssl_module.create_default_context() if self.scheme == "https" else None


@dataclass(slots=True)
class HttpAnswer:
    """One HTTP response: its status, headers (lower-case names), the JSON-RPC answer if any, the raw body."""

    status: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    message: Any = None
    body: bytes = b""


class _Sse:
    """An incremental `text/event-stream` parser that picks out the JSON-RPC response with a wanted id.

    A response with another id is held: the call's answer if the stream never brings the wanted one (a wrong
    id), else tallied as `unknown_id`; a second wanted one is a `duplicate`. With `want` None (a raw payload),
    the first response is the answer and nothing is tallied.
    """

    __slots__ = ("_buf", "_data", "_on_request", "_tally", "foreign", "found")

    def __init__(self, tally: Tally | None = None, on_request: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._tally = tally
        self._on_request = on_request  # sees the server's requests on the stream (a task's questions)
        self.found: Any = None
        self.foreign: Any = None  # the first response with another id, while the wanted one has not come

    def feed(self, chunk: bytes, want: Any) -> bool:
        """Consume a chunk; True once the wanted response (any response, if `want` is None) has been seen."""
        buf = self._buf + chunk
        held = b""
        if buf.endswith(b"\r"):  # maybe half of a CRLF: wait for the next byte before ending the line
            buf, held = buf[:-1], b"\r"
        lines = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._buf = lines.pop() + held
        if len(self._buf) > MAX_ANSWER_BYTES:
            raise TransportError("an SSE line longer than the answer limit", "answer_too_large")
        for line in lines:
            if not line:  # end of an event
                if self._data:
                    self._event(b"\n".join(self._data), want)
                self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return self.found is not None

    def _event(self, data: bytes, want: Any) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not (isinstance(msg, dict) and "method" not in msg and ("result" in msg or "error" in msg)):
            if self._on_request is not None and isinstance(msg, dict) and "method" in msg and "id" in msg:
                self._on_request(msg)
            return  # a notification or a request of the server's: not an answer
        if want is None:
            if self.found is None:
                self.found = msg
            return
        mine = msg.get("id") == want
        tally = self._tally
        if mine and self.found is None:
            self.found = msg
            if self.foreign is not None and tally is not None:
                tally.add("unknown_id")  # the one held: the stream did bring the call's own answer
        elif mine:
            if tally is not None:
                tally.add("duplicate")
        elif self.found is None and self.foreign is None:
            self.foreign = msg
        elif tally is not None:
            tally.add("unknown_id")

    def answer(self) -> Any:
        """The stream's answer once it has ended: the wanted response, else the one with another id, else None."""
        return self.found if self.found is not None else self.foreign


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection carrying one exchange at a time (no pipelining).

    Bytes that arrive with no request outstanding are an unsolicited response: tallied, and the connection is
    dropped unread, so they can never be taken for the next request's answer.
    """

    def __init__(self, tally: Tally | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self._tally = tally
        self._received = 0  # bytes of the current response so far (MAX_ANSWER_BYTES)
        self.closed = False
        self.busy = False  # a request is out and its response has not completely arrived
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[HttpAnswer] | None = None
        self._want: Any = None
        self._headers: dict[bytes, bytes] = {}
        self._body = bytearray()
        self._sse: _Sse | None = None
        self._headers_done = False
        self._on_done: Callable[[_Conn], None] | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._on_request: Callable[[dict[str, Any]], None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            if self._tally is not None:
                self._tally.add("unsolicited")
            self.close()
            return
        self._received += len(data)
        if self._received > MAX_ANSWER_BYTES:
            self._fail(TransportError(f"an answer over {MAX_ANSWER_BYTES} bytes", "answer_too_large"))
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(TransportError(f"malformed HTTP response: {e}", "malformed_http"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.busy = False
        if self._grace is not None:
            self._grace.cancel()
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        sse = self._sse
        if self._headers_done and b"content-length" not in self._headers and sse is None:
            self._finish()  # a body delimited by the close of the connection
        elif sse is not None and sse.foreign is not None:
            self._finish()  # the stream ended with an answer to another id: the call's (wrong) answer
        elif exc is None:
            self._fail(TransportError("the server closed the connection", "connection_closed"))
        else:
            self._fail(TransportError(f"connection lost: {exc!r}", error_label(exc)))

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = bytearray()
        self._sse = None
        self._headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._headers.get(b"content-type", b"").startswith(b"text/event-stream"):
            self._sse = _Sse(self._tally, self._on_request)

    def on_body(self, body: bytes) -> None:
        sse = self._sse
        if sse is None:
            self._body += body
            return
        try:
            done = sse.feed(body, self._want)
        except TransportError as e:  # an SSE line past the answer limit
            self._fail(e)
            self.close()
            return
        if done:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(HttpAnswer(self._parser.get_status_code(), self._headers, sse.found))

    def on_message_complete(self) -> None:
        self.busy = False
        self._finish()
        if not self._parser.should_keep_alive():
            self.close()
        elif self._on_done is not None:
            if self._grace is not None:
                self._grace.cancel()
            callback, self._on_done = self._on_done, None
            callback(self)

    # used by the pool

    def send(
        self, data: bytes, want: Any, on_request: Callable[[dict[str, Any]], None] | None = None
    ) -> asyncio.Future[HttpAnswer]:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise TransportError("the connection is closed", "connection_closed")
        waiter: asyncio.Future[HttpAnswer] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._want = want
        self._on_request = on_request
        self._received = 0
        self.busy = True
        transport.write(data)
        return waiter

    def expire(self) -> None:
        """The deadline passed: fail the wait and drop the connection, so no late answer is ever read as ours."""
        transport = self.transport
        if transport is not None and not transport.is_closing() and transport.get_write_buffer_size() > 0:
            self._fail(RequestTimeout("the server did not read the request", "unread"))
        else:
            self._fail(RequestTimeout())
        self.close()

    def when_done(self, callback: Callable[[_Conn], None], grace: float) -> None:
        """Call back once the current response has fully arrived; drop the connection if that takes too long."""
        self._on_done = callback
        self._grace = asyncio.get_running_loop().call_later(grace, self.close)

    def close(self) -> None:
        self.closed = True
        self._on_done = None
        if self._grace is not None:
            self._grace.cancel()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once, unsent bytes and all (a client vanishing mid-call)."""
        self.closed = True
        self._on_done = None
        if self._grace is not None:
            self._grace.cancel()
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is None or waiter.done():
            return
        status = self._parser.get_status_code()
        sse = self._sse
        if sse is not None:
            waiter.set_result(HttpAnswer(status, self._headers, sse.answer()))
            return
        body = bytes(self._body)
        message: Any = None
        if body:
            try:
                message = orjson.loads(body)
            except orjson.JSONDecodeError:
                message = None
        waiter.set_result(HttpAnswer(status, self._headers, message, body))

    def _fail(self, error: ClientError) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


def error_label(exc: BaseException) -> str:
    """A short label for a connection-level exception."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, ConnectionResetError):
        return "connection_reset"
    if isinstance(exc, BrokenPipeError):
        return "broken_pipe"
    return type(exc).__name__


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def _header_value(value: str) -> str:
    """A header value as the 2026-07-28 rules want it: plain when safe ASCII, else `=?base64?...?=`."""
    if value.isascii() and value.isprintable() and value == value.strip() and not value.startswith("=?base64?"):
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


class HttpClient:
    """Talks to one Streamable HTTP endpoint in one revision; hands out `HttpSession`s that share it.

    For a handshake-era revision, `initialize()` opens one MCP session that every `HttpSession` of this
    client then joins; `--workers` processes can join it too by passing `mcp_session_id`. Request ids come
    from one `RequestIds` sequence based at `id_base`, so they never repeat within the MCP session (give each
    worker process its own base, `number << 40`). `tally` counts what the server sent that no call can carry.
    """

    def __init__(
        self,
        url: str,
        revision: str = MODERN,
        *,
        mcp_session_id: str | None = None,
        id_base: int = 0,
        client_info: Mapping[str, Any] = CLIENT_INFO,
        connect_timeout: float = 10.0,
    ) -> None:
        self.endpoint = Endpoint.parse(url)
        self.url = url
        self.client_info = dict(client_info)
        self.connect_timeout = connect_timeout
        self.mcp_session_id = mcp_session_id
        self._owns_mcp_session = False
        self.ids = RequestIds(id_base)
        self.tally = Tally()
        self._ssl = self.endpoint.ssl_context()
        self._sessions: set[HttpSession] = set()
        self._heads: dict[tuple[str, str | None], bytes] = {}
        self._meta = stateless_meta(self.client_info)
        self._task_meta = stateless_meta(self.client_info, TASK_CAPABILITIES)
        self.revision = revision
        self.closed = False

    @property
    def revision(self) -> str:
        return self._revision

    @revision.setter
    def revision(self, value: str) -> None:
        self._revision = value
        self._stateless = is_stateless(value)
        self._heads.clear()

    def next_id(self) -> int:
        return self.ids.next()

    def session(self) -> HttpSession:
        """A new session: its own keep-alive connections, opened on first use (one per concurrent call)."""
        if self.closed:
            raise TransportError("the client is closed", "closed")
        session = HttpSession(self)
        self._sessions.add(session)
        return session

    # -- framing ------------------------------------------------------------------------------------

    def frame(
        self,
        method: str,
        req_id: Any,
        params: dict[str, Any] | None,
        *,
        name: str | None = None,
        tasks: bool = False,
    ) -> bytes:
        """A complete POST carrying one JSON-RPC request (or notification, when `req_id` is None); `tasks`: the
        2026-07-28 envelope declares the tasks extension and elicitation (`TASK_CAPABILITIES`)."""
        if self._stateless:
            meta = self._task_meta if tasks else self._meta
            params = {**params, "_meta": meta} if params else {"_meta": meta}
            if name is None and params is not None:
                key = _NAME_PARAM.get(method)
                value = params.get(key) if key else None
                name = value if isinstance(value, str) else None
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if req_id is not None:
            msg["id"] = req_id
        if params is not None:
            msg["params"] = params
        return self.post(orjson.dumps(msg), method, name)

    def post(self, body: bytes, method: str | None, name: str | None) -> bytes:
        cached = self._heads.get((method or "", name))
        if cached is not None:
            head = cached
        elif method is not None and method.startswith("tasks/"):
            head = self._head(method, name)  # named by a task id: one head per task, not worth keeping
        else:
            head = self._heads[(method or "", name)] = self._head(method, name)
        return head + b"%d\r\n\r\n" % len(body) + body

    def _head(self, method: str | None, name: str | None) -> bytes:
        ep = self.endpoint
        lines = [
            f"POST {ep.path} HTTP/1.1",
            f"Host: {ep.host_header}",
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
        ]
        if method != "initialize":  # the handshake-era header names the version the handshake agreed
            lines.append(f"MCP-Protocol-Version: {self._revision}")
        if self._stateless:
            if method:
                lines.append(f"Mcp-Method: {_header_value(method)}")
            if name is not None:
                lines.append(f"Mcp-Name: {_header_value(name)}")
        elif self.mcp_session_id is not None:
            lines.append(f"Mcp-Session-Id: {self.mcp_session_id}")
        lines.append("Content-Length: ")
        return "\r\n".join(lines).encode("latin-1")

    # -- revisions ----------------------------------------------------------------------------------

    async def discover(self, *, timeout: float) -> dict[str, Any]:
        """`server/discover` with the 2026-07-28 envelope; returns the whole answer (raises ClientError)."""
        saved = self.revision
        self.revision = MODERN
        try:
            return await self._control_request("server/discover", None, timeout)
        finally:
            self.revision = saved

    async def initialize(
        self, *, timeout: float, version: str = LEGACY, capabilities: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The handshake: `initialize`, then `notifications/initialized`. Returns the initialize answer.

        On success the client speaks the version the server chose and joins the session it minted. The load
        declares no capabilities; the tasks phase's own session declares elicitation (`capabilities`).
        """
        self.revision = version
        self.mcp_session_id = None
        params = {"protocolVersion": version, "capabilities": dict(capabilities or {}), "clientInfo": self.client_info}
        session = self.session()
        try:
            req_id = self.next_id()
            answer = await session.exchange(self.frame("initialize", req_id, params), req_id, timeout)
            msg = answer.message
            if not isinstance(msg, dict) or not isinstance(msg.get("result"), dict):
                if isinstance(msg, dict):
                    return msg
                raise TransportError(f"HTTP {answer.status} without a JSON-RPC answer", "bad_answer")
            result = msg["result"]
            sid = answer.headers.get(b"mcp-session-id")
            self.mcp_session_id = sid.decode("latin-1") if sid else None
            self._owns_mcp_session = sid is not None
            agreed = result.get("protocolVersion")
            self.revision = agreed if isinstance(agreed, str) else version  # also drops the cached heads
            done = await session.exchange(self.frame("notifications/initialized", None, None), None, timeout)
            if done.status >= 300:
                raise TransportError(f"notifications/initialized: HTTP {done.status}", f"http_{done.status}")
            return msg
        finally:
            await session.close()

    async def _control_request(self, method: str, params: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        session = self.session()
        try:
            return await session.request(method, params, timeout=timeout)
        finally:
            await session.close()

    async def close(self) -> None:
        """Close every session; end the MCP session this client opened (DELETE), if any."""
        if self.closed:
            return
        if self._owns_mcp_session and self.mcp_session_id is not None:
            with contextlib.suppress(ClientError, OSError):
                session = self.session()
                try:
                    ep = self.endpoint
                    data = (
                        f"DELETE {ep.path} HTTP/1.1\r\nHost: {ep.host_header}\r\n"
                        f"Mcp-Session-Id: {self.mcp_session_id}\r\nMCP-Protocol-Version: {self.revision}\r\n"
                        "Content-Length: 0\r\n\r\n"
                    ).encode("latin-1")
                    await session.exchange(data, None, 2.0)
                finally:
                    await session.close()
        self.closed = True
        for session in list(self._sessions):
            await session.close()

    # -- connections --------------------------------------------------------------------------------

    async def connect(self, timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        try:
            async with asyncio.timeout(min(timeout, self.connect_timeout)):
                _, conn = await loop.create_connection(
                    self._new_conn, ep.host, ep.port, ssl=self._ssl, server_hostname=ep.host if self._ssl else None
                )
        except TimeoutError:
            raise RequestTimeout("no connection within the timeout") from None
        except OSError as e:
            raise ConnectError(f"cannot connect to {ep.host_header}: {_reason(e)}", error_label(e)) from None
        return conn

    def _new_conn(self) -> _Conn:
        return _Conn(self.tally)

    def _forget(self, session: HttpSession) -> None:
        self._sessions.discard(session)


class HttpSession:
    """`model.Session` over HTTP: a pool of keep-alive connections, one per concurrent call."""

    def __init__(self, client: HttpClient) -> None:
        self._client = client
        self._idle: list[_Conn] = []
        self._all: set[_Conn] = set()
        self._closed = False

    async def call_tool(
        self, name: str, arguments: dict[str, Any], *, timeout: float, intended: float | None = None
    ) -> CallResult:
        client = self._client
        req_id = client.next_id()
        start = time.monotonic()
        data = client.frame("tools/call", req_id, {"name": name, "arguments": arguments}, name=name)
        outcome, detail = await self._classified(data, req_id, timeout, "tools/call")
        return CallResult(name, start if intended is None else intended, start, time.monotonic(), outcome, detail)

    async def call_method(
        self, method: str, params: dict[str, Any] | None, *, kind: str, timeout: float, intended: float | None = None
    ) -> CallResult:
        client = self._client
        req_id = client.next_id()
        start = time.monotonic()
        outcome, detail = await self._classified(client.frame(method, req_id, params), req_id, timeout, method)
        return CallResult(kind, start if intended is None else intended, start, time.monotonic(), outcome, detail)

    async def request(self, method: str, params: dict[str, Any] | None, *, timeout: float) -> dict[str, Any]:
        req_id = self._client.next_id()
        answer = await self.exchange(self._client.frame(method, req_id, params), req_id, timeout)
        if not isinstance(answer.message, dict):
            raise TransportError(
                f"{method}: HTTP {answer.status} without a JSON-RPC answer: {answer.body[:200]!r}",
                f"http_{answer.status}",
            )
        return answer.message

    async def task_request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        timeout: float,
        on_request: Callable[[dict[str, Any]], None] | None = None,
    ) -> tuple[Outcome, str | None, Any]:
        """A raw request of the tasks protocol (2026-07-28: declaring the extension): its outcome and detail
        (classified as any call's, without a result shape to check) and the JSON-RPC answer (None without one).

        `on_request` sees each request the server sends on the answer's SSE stream (2025-11-25: a task's questions
        on `tasks/result`); answer them with `respond`. Raises ClientError when no answer came.
        """
        client = self._client
        req_id = client.next_id()
        data = client.frame(method, req_id, params, tasks=True)
        answer = await self.exchange(data, req_id, timeout, on_request=on_request)
        outcome, detail = _matched(answer, req_id, None)
        return outcome, detail, answer.message

    async def respond(self, req_id: Any, result: dict[str, Any], *, timeout: float) -> int:
        """Answer a request the server sent (2025-11-25: POST the JSON-RPC response); the HTTP status."""
        client = self._client
        body = orjson.dumps({"jsonrpc": "2.0", "id": req_id, "result": result})
        answer = await self.exchange(client.post(body, None, None), None, timeout)
        return answer.status

    async def send_raw(self, payload: bytes, *, kind: str, timeout: float) -> CallResult:
        start = time.monotonic()
        outcome, detail = await self._classified(
            self._client.post(payload, None, None), None, timeout, None, reuse=False
        )
        return CallResult(kind, start, start, time.monotonic(), outcome, detail)

    async def call_and_disconnect(self, name: str, arguments: dict[str, Any], *, after: float) -> CallResult:
        """Start a call on a connection of its own and drop that connection `after` seconds later.

        An answer that comes first is classified as usual; otherwise the outcome is "ok" with detail
        "disconnected" (the disconnect happened as planned). This session stays usable: the pool is untouched.
        """
        client = self._client
        req_id = client.next_id()
        start = time.monotonic()
        try:
            conn = await client.connect(max(after, 1.0))
        except ClientError as e:
            return CallResult("chaos:disconnect", start, start, time.monotonic(), *failure(e))
        try:
            waiter = conn.send(client.frame("tools/call", req_id, {"name": name, "arguments": arguments}), req_id)
            done, _ = await asyncio.wait({waiter}, timeout=after)
            if done:
                try:
                    outcome, detail = _matched(waiter.result(), req_id, "tools/call")
                except ClientError as e:
                    outcome, detail = failure(e)
            else:
                outcome, detail = "ok", "disconnected"
                waiter.cancel()
        except ClientError as e:
            outcome, detail = failure(e)
        finally:
            conn.abort()
        return CallResult("chaos:disconnect", start, start, time.monotonic(), outcome, detail)

    @property
    def connections(self) -> int:
        """Connections this session holds open (in use or idle)."""
        return sum(1 for conn in self._all if not conn.closed)

    async def close(self) -> None:
        self._closed = True
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._idle.clear()
        self._client._forget(self)

    # -- the exchange -------------------------------------------------------------------------------

    async def _classified(
        self, data: bytes, want: Any, timeout: float, method: str | None, *, reuse: bool = True
    ) -> tuple[Outcome, str | None]:
        try:
            answer = await self.exchange(data, want, timeout, reuse=reuse)
        except ClientError as e:
            return failure(e)
        return _matched(answer, want, method)

    async def exchange(
        self,
        data: bytes,
        want: Any,
        timeout: float,
        *,
        reuse: bool = True,
        on_request: Callable[[dict[str, Any]], None] | None = None,
    ) -> HttpAnswer:
        """Send one prepared request and wait for its response; raises ClientError (RequestTimeout on time-out).

        `reuse=False` closes the connection afterwards (chaos payloads leave it in a state not worth trusting);
        `on_request` sees the server's requests on the answer's SSE stream.
        """
        if self._closed:
            raise TransportError("the session is closed", "closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self._take_idle(loop.time())
        if conn is None:
            conn = await self._client.connect(timeout)
            self._all.add(conn)
            if self._closed:  # closed while we connected
                self._drop(conn)
                raise TransportError("the session is closed", "closed")
        try:
            waiter = conn.send(data, want, on_request)
        except ClientError:
            self._drop(conn)
            raise
        timer = loop.call_at(deadline, conn.expire)
        try:
            answer = await waiter
        except BaseException:  # timed out, lost, or the caller was cancelled: never reuse this connection
            self._drop(conn)
            raise
        finally:
            timer.cancel()
        if not reuse:
            conn.close()
        self._release(conn)
        return answer

    def _take_idle(self, now: float) -> _Conn | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < _MAX_IDLE:
                return conn
            self._drop(conn)
        return None

    def _release(self, conn: _Conn) -> None:
        transport = conn.transport
        # An answer that came before the whole request was written (a 413 to a large body, say) leaves the
        # rest of the body on the wire: that connection is not reused.
        if conn.closed or self._closed or (transport is not None and transport.get_write_buffer_size() > 0):
            self._drop(conn)
        elif conn.busy:  # an SSE answer arrived before the end of its stream
            conn.when_done(self._put_idle, _SSE_TAIL_GRACE)
        else:
            self._put_idle(conn)

    def _put_idle(self, conn: _Conn) -> None:
        if self._closed or conn.closed:
            self._drop(conn)
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.append(conn)

    def _drop(self, conn: _Conn) -> None:
        conn.close()
        self._all.discard(conn)


def _matched(answer: HttpAnswer, want: Any, method: str | None) -> tuple[Outcome, str | None]:
    """Classify an HTTP answer to the request with id `want` (None: a raw payload, any id will do).

    A connection carries one request at a time and is never reused with an answer pending, so an answer with
    another id is this call's, wrong: a protocol error, never a success. An error with a null id is allowed (the
    server may not have read the id), a result with one is not.
    """
    msg = answer.message
    if want is not None and isinstance(msg, dict):
        got = msg.get("id")
        if got != want and (got is not None or "error" not in msg):
            return "protocol_error", "wrong_id"
    return classify(msg, answer.status, method)


def failure(error: ClientError) -> tuple[Outcome, str | None]:
    """The outcome and detail of a call that got no usable answer."""
    if isinstance(error, RequestTimeout):
        return "timeout", None if error.detail == "timeout" else error.detail
    return "transport_error", error.detail


async def http_get(
    endpoint: Endpoint, path: str, *, timeout: float, headers: Mapping[str, str] | None = None
) -> HttpAnswer:
    """One GET on a fresh connection (health checks, /metrics scrapes); raises ClientError."""
    loop = asyncio.get_running_loop()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    data = f"GET {path} HTTP/1.1\r\nHost: {endpoint.host_header}\r\n{extra}Connection: close\r\n\r\n".encode("latin-1")
    try:
        async with asyncio.timeout(timeout):
            ssl = endpoint.ssl_context()
            try:
                _, conn = await loop.create_connection(
                    _Conn, endpoint.host, endpoint.port, ssl=ssl, server_hostname=endpoint.host if ssl else None
                )
            except OSError as e:
                raise ConnectError(f"cannot connect to {endpoint.host_header}: {_reason(e)}", error_label(e)) from None
            try:
                return await conn.send(data, None)
            finally:
                conn.close()
    except TimeoutError:
        raise RequestTimeout(f"GET {path}: no answer within {timeout:g}s") from None
