"""The load generator's stdio client: one server subprocess shared by many concurrent callers.

Requests are multiplexed by JSON-RPC id over the one pipe; a reader task dispatches each answer to its waiter.
Framing and classification are those of `client` (either revision; see there).

Over one pipe an answer's id is all that says whose it is, so ids are scattered (`client.RequestIds`: an id
a server gets slightly wrong names no call in flight) and an answer that finds no waiter is sorted out only
then, off the hot path: a late answer to a call the tester gave up on is dropped (the cancellation raced it),
an answer to an id answered before is a `duplicate`, any other an `unknown_id`, both tallied. The call whose
answer went astray times out. Writes never wait past the call's deadline: a server that stops reading its
input makes calls time out with detail "unread", never the tester hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from bemcp.protocol import codes
from bemcp.stress.client import (
    CLIENT_INFO,
    LEGACY,
    MODERN,
    TASK_CAPABILITIES,
    ClientError,
    RequestIds,
    RequestTimeout,
    Tally,
    TransportError,
    classify,
    error_label,
    failure,
    is_stateless,
    stateless_meta,
)
from bemcp.stress.model import CallResult, Outcome

_STDIO_HIGH_WATER = 1024 * 1024
# Ids of calls given up on (timed out or cancelled) whose answer may still come: a late answer is no violation.
_GIVEN_UP_KEPT = 65536


class StdioClient:
    """One server subprocess speaking newline-delimited JSON-RPC, shared by any number of concurrent callers.

    Requests are multiplexed by id; one reader task (owned here, cancelled in `close`) hands each answer to
    its waiter. A caller that gives up (timeout or cancel) sends `notifications/cancelled`, as stdio requires,
    and the late answer is dropped. `close()` closes stdin, waits, then terminates and kills.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        stderr: IO[Any] | int | None = asyncio.subprocess.DEVNULL,
        id_base: int = 0,
        client_info: Mapping[str, Any] = CLIENT_INFO,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if not argv:
            raise ValueError("an empty command")
        self.argv = list(argv)
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._stderr = stderr
        self._limit = max_message_bytes
        self.client_info = dict(client_info)
        self._meta = stateless_meta(self.client_info)
        self._task_meta = stateless_meta(self.client_info, TASK_CAPABILITIES)
        self.ids = RequestIds(id_base)
        self.tally = Tally()
        self._given_up: set[Any] = set()
        self._given_up_order: deque[Any] = deque()
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._null_waiters: deque[asyncio.Future[dict[str, Any]]] = deque()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._dead: str | None = None  # why the pipe is unusable, once it is
        self.revision = MODERN

    @property
    def stray_lines(self) -> int:
        """stdout lines that were not JSON-RPC: a protocol violation worth reporting."""
        return self.tally.counts.get("stray_output", 0)

    @property
    def revision(self) -> str:
        return self._revision

    @revision.setter
    def revision(self, value: str) -> None:
        self._revision = value
        self._stateless = is_stateless(value)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and self._dead is None

    async def start(self) -> None:
        """Spawn the server; raises OSError when the command cannot be run."""
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env=self._env,
            cwd=self._cwd,
            limit=self._limit,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(), name="bemcp-stress-stdio-reader")

    def session(self) -> StdioSession:
        return StdioSession(self)

    # -- requests -----------------------------------------------------------------------------------

    def next_id(self) -> int:
        return self.ids.next()

    def frame(
        self,
        method: str,
        req_id: Any,
        params: dict[str, Any] | None,
        *,
        stateless: bool | None = None,
        tasks: bool = False,
    ) -> bytes:
        """One JSON-RPC line; `tasks`: the 2026-07-28 envelope declares the tasks extension and elicitation."""
        if self._stateless if stateless is None else stateless:
            meta = self._task_meta if tasks else self._meta
            params = {**params, "_meta": meta} if params else {"_meta": meta}
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if req_id is not None:
            msg["id"] = req_id
        if params is not None:
            msg["params"] = params
        return orjson.dumps(msg) + b"\n"

    async def roundtrip(self, data: bytes, req_id: Any, timeout: float) -> dict[str, Any]:
        """Write one line and wait for the answer with `req_id` (None: the next answer with a null id)."""
        if self._dead is not None:
            raise TransportError(f"the server's stdio is closed ({self._dead})", "eof")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
        if req_id is None:
            self._null_waiters.append(waiter)
        else:
            self._pending[req_id] = waiter
        try:
            await self._write(data, deadline)
        except BaseException:
            if self._forget(req_id, waiter):
                self._gave_up(req_id)  # the line may yet reach the server, and its answer come back
            raise
        timer = loop.call_at(deadline, self._expire, req_id, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if self._forget(req_id, waiter):
                self._gave_up(req_id)
                self._cancel_remote(req_id, "the client gave up")
            raise
        finally:
            timer.cancel()

    async def notify(self, method: str, params: dict[str, Any] | None, *, timeout: float = 10.0) -> None:
        await self._write(self.frame(method, None, params), asyncio.get_running_loop().time() + timeout)

    async def discover(self, *, timeout: float) -> dict[str, Any]:
        req_id = self.next_id()
        return await self.roundtrip(self.frame("server/discover", req_id, None, stateless=True), req_id, timeout)

    async def initialize(self, *, timeout: float, version: str = LEGACY) -> dict[str, Any]:
        """The handshake (`initialize`, `notifications/initialized`); the process then speaks the agreed version."""
        params = {"protocolVersion": version, "capabilities": {}, "clientInfo": self.client_info}
        req_id = self.next_id()
        msg = await self.roundtrip(self.frame("initialize", req_id, params, stateless=False), req_id, timeout)
        result = msg.get("result")
        if isinstance(result, dict):
            agreed = result.get("protocolVersion")
            self.revision = agreed if isinstance(agreed, str) else version
            deadline = asyncio.get_running_loop().time() + timeout
            await self._write(self.frame("notifications/initialized", None, None, stateless=False), deadline)
        return msg

    # -- plumbing -----------------------------------------------------------------------------------

    async def _write(self, data: bytes, deadline: float) -> None:
        """Write one line; past the high-water mark, wait for the pipe to drain, but never past `deadline`
        (RequestTimeout "unread": the server stopped reading)."""
        proc = self._proc
        stdin = proc.stdin if proc is not None else None
        if stdin is None or stdin.is_closing() or self._dead is not None:
            raise TransportError("the server's stdin is closed", "eof")
        try:
            stdin.write(data)
            transport = stdin.transport
            if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size() > _STDIO_HIGH_WATER:
                try:
                    async with asyncio.timeout_at(deadline):
                        await stdin.drain()
                except TimeoutError:
                    raise RequestTimeout("the server did not read its input in time", "unread") from None
        except (ConnectionError, RuntimeError) as e:
            self._mark_dead(f"write failed: {e!r}")
            raise TransportError(f"cannot write to the server: {e!r}", error_label(e)) from None

    def _cancel_remote(self, req_id: Any, reason: str) -> None:
        if req_id is None or self._dead is not None:
            return
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        data = self.frame("notifications/cancelled", None, {"requestId": req_id, "reason": reason})
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write(data)

    def _expire(self, req_id: Any, waiter: asyncio.Future[dict[str, Any]]) -> None:
        if self._forget(req_id, waiter) and not waiter.done():
            waiter.set_exception(self._timeout())
            self._gave_up(req_id)
            self._cancel_remote(req_id, "timeout")

    def _timeout(self) -> RequestTimeout:
        """A timeout; "unread" when what was written has not all been read (the pipe is full)."""
        proc = self._proc
        transport = proc.stdin.transport if proc is not None and proc.stdin is not None else None
        if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size() > 0:
            return RequestTimeout("the server did not read its input in time", "unread")
        return RequestTimeout()

    def _gave_up(self, req_id: Any) -> None:
        """Remember a call whose answer may still come, so that it is dropped as late, not tallied."""
        if req_id is None:
            return
        self._given_up.add(req_id)
        self._given_up_order.append(req_id)
        if len(self._given_up_order) > _GIVEN_UP_KEPT:
            self._given_up.discard(self._given_up_order.popleft())

    def _forget(self, req_id: Any, waiter: asyncio.Future[dict[str, Any]]) -> bool:
        """Stop waiting for an answer; True if it was still awaited (no answer had been handed to it).

        Registration, not `waiter.done()`, says so: cancelling the task that awaits the waiter cancels it too.
        """
        if req_id is None:
            try:
                self._null_waiters.remove(waiter)
            except ValueError:
                return False
            return True
        if self._pending.get(req_id) is waiter:
            del self._pending[req_id]
            return True
        return False

    def _unmatched(self, req_id: Any, msg: dict[str, Any]) -> None:
        """An answer no call waits for: late (dropped), a duplicate or an unknown id (tallied). An error with a
        null id is dropped too: JSON-RPC allows one for a request whose id the server could not read."""
        if req_id is None and "error" in msg:
            return
        if not isinstance(req_id, (str, int)):
            self.tally.add("unknown_id")  # no id we send looks like that (a float, a list, null on a result)
        elif req_id in self._given_up:
            self._given_up.discard(req_id)  # one late answer is expected; a second would be a duplicate
        elif self.ids.issued(req_id):
            self.tally.add("duplicate")
        else:
            self.tally.add("unknown_id")

    async def _read_loop(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        stdout = proc.stdout
        try:
            while True:
                try:
                    line = await stdout.readuntil(b"\n")
                except asyncio.IncompleteReadError as e:
                    if e.partial.strip():
                        self._dispatch(e.partial)
                    return
                except asyncio.LimitOverrunError as e:
                    await _skip_line(stdout, e.consumed)
                    self.tally.add("stray_output")
                    continue
                self._dispatch(line)
        except (ConnectionError, OSError) as e:
            self._mark_dead(f"read failed: {e!r}")
        finally:
            self._mark_dead("the server closed its stdout")

    def _dispatch(self, line: bytes) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():
                self.tally.add("stray_output")
            return
        if not isinstance(msg, dict):
            self.tally.add("stray_output")
            return
        if "method" in msg:
            if "id" in msg:  # a server-to-client request: we offered no capabilities, so say no (ping: yes)
                self._answer_server_request(msg)
            return
        req_id = msg.get("id")
        if req_id is None:
            waiter = self._null_waiters.popleft() if self._null_waiters else None
        elif isinstance(req_id, (str, int)):
            waiter = self._pending.pop(req_id, None)
        else:
            waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)
        elif "result" in msg or "error" in msg:
            self._unmatched(req_id, msg)

    def _answer_server_request(self, msg: dict[str, Any]) -> None:
        if msg.get("method") == "ping":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": msg["id"], "result": {}}
        else:
            reply = {
                "jsonrpc": "2.0",
                "id": msg["id"],
                "error": {"code": codes.METHOD_NOT_FOUND, "message": "Method not found"},
            }
        proc = self._proc
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                proc.stdin.write(orjson.dumps(reply) + b"\n")

    def _mark_dead(self, why: str) -> None:
        if self._dead is None:
            self._dead = why
        error = TransportError(f"the server's stdio is closed ({self._dead})", "eof")
        pending, self._pending = self._pending, {}
        for waiter in [*pending.values(), *self._null_waiters]:
            if not waiter.done():
                waiter.set_exception(error)
        self._null_waiters.clear()

    async def close(self, timeout: float = 5.0) -> int | None:
        """Close stdin (the server should exit at EOF), then terminate, then kill; returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 3.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        self._mark_dead("closed")
        return proc.returncode

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code once the process has exited, waiting up to `timeout`; None if it still runs."""
        proc = self._proc
        if proc is None:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout)
        return proc.returncode

    async def kill(self) -> None:
        """Kill the server at once (tests, and a tester that must stop now)."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        await self.close(timeout=5.0)


async def _skip_line(reader: asyncio.StreamReader, consumed: int) -> None:
    # Discard an over-long line up to and including its newline.
    while True:
        await reader.readexactly(consumed)
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as e:
            consumed = e.consumed


class StdioSession:
    """`model.Session` over a shared `StdioClient`. Closing a session leaves the process to its client."""

    def __init__(self, client: StdioClient) -> None:
        self._client = client

    async def call_tool(
        self, name: str, arguments: dict[str, Any], *, timeout: float, intended: float | None = None
    ) -> CallResult:
        client = self._client
        req_id = client.next_id()
        start = time.monotonic()
        data = client.frame("tools/call", req_id, {"name": name, "arguments": arguments})
        return await self._timed(name, data, req_id, timeout, start, intended, "tools/call")

    async def call_method(
        self, method: str, params: dict[str, Any] | None, *, kind: str, timeout: float, intended: float | None = None
    ) -> CallResult:
        client = self._client
        req_id = client.next_id()
        start = time.monotonic()
        return await self._timed(kind, client.frame(method, req_id, params), req_id, timeout, start, intended, method)

    async def _timed(
        self,
        kind: str,
        data: bytes,
        req_id: Any,
        timeout: float,
        start: float,
        intended: float | None = None,
        method: str | None = None,
    ) -> CallResult:
        """Send `data`, wait for the answer to `req_id`, and classify it as one timed call (of `method`)."""
        outcome: Outcome
        detail: str | None
        try:
            msg = await self._client.roundtrip(data, req_id, timeout)
        except ClientError as e:
            outcome, detail = failure(e)
        else:
            outcome, detail = classify(msg, 200, method)
        return CallResult(kind, start if intended is None else intended, start, time.monotonic(), outcome, detail)

    async def request(self, method: str, params: dict[str, Any] | None, *, timeout: float) -> dict[str, Any]:
        client = self._client
        req_id = client.next_id()
        return await client.roundtrip(client.frame(method, req_id, params), req_id, timeout)

    async def task_request(self, method: str, params: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """A raw request of the tasks protocol (2026-07-28: declaring the extension); the whole response message.

        Over stdio the server's requests are answered by the client's reader (method not found): a 2025-11-25 task
        cannot ask its questions here (the handshake declared no elicitation)."""
        client = self._client
        req_id = client.next_id()
        return await client.roundtrip(client.frame(method, req_id, params, tasks=True), req_id, timeout)

    async def send_raw(self, payload: bytes, *, kind: str, timeout: float) -> CallResult:
        """Write the payload as one line (newlines inside it become spaces) and classify the answer.

        The answer is matched by the payload's own id when it has one, else it is the next null-id answer
        (what a server says to a line it could not parse).
        """
        line = payload.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n"
        return await self._timed(kind, line, _payload_id(payload), timeout, time.monotonic())

    async def call_and_disconnect(self, name: str, arguments: dict[str, Any], *, after: float) -> CallResult:
        """stdio has one pipe for everyone, so a disconnect of one call is its cancel: the call is sent, and
        `after` seconds later `notifications/cancelled` goes out. "ok"/"disconnected" unless an answer came first.
        """
        client = self._client
        req_id = client.next_id()
        start = time.monotonic()
        data = client.frame("tools/call", req_id, {"name": name, "arguments": arguments})
        outcome: Outcome
        detail: str | None
        try:
            msg = await client.roundtrip(data, req_id, after)
        except RequestTimeout:  # the client has sent notifications/cancelled
            outcome, detail = "ok", "disconnected"
        except ClientError as e:
            outcome, detail = failure(e)
        else:
            outcome, detail = classify(msg, 200, "tools/call")
        return CallResult("chaos:disconnect", start, start, time.monotonic(), outcome, detail)

    async def close(self) -> None:
        return None


def _payload_id(payload: bytes) -> Any:
    try:
        msg = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(msg, dict) and isinstance(msg.get("id"), (str, int)) and "method" in msg:
        return msg["id"]
    return None
