"""Newline-delimited JSON-RPC over stdin/stdout.

Nothing but protocol is written to stdout. Writes go through the event loop's
pipe transport with flow control, so a client that stops reading slows the
server's writers down instead of growing an unbounded buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import stat
import sys
from typing import Any, BinaryIO

from bemcp.protocol import codes, jsonrpc
from bemcp.protocol.exchange import Exchange, Peer
from bemcp.protocol.jsonrpc import Kind, Message
from bemcp.protocol.server import Server
from bemcp.transports import inflight

log = logging.getLogger("bemcp.stdio")

_WRITE_HIGH_WATER = 1024 * 1024


class _Writer:
    """Serialises messages onto stdout; `drain` applies back-pressure."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if _pollable(self._stream):
            transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, self._stream)
            transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
            self._writer = asyncio.StreamWriter(transport, protocol, None, loop)

    async def send(self, msg: Message) -> None:
        data = jsonrpc.dumps(msg) + b"\n"
        w = self._writer
        if w is None:  # a regular file: writes do not block for long
            self._stream.write(data)
            self._stream.flush()
            return
        if w.is_closing():
            return
        w.write(data)
        if w.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            await w.drain()

    async def close(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()
            self._writer.close()


class StdioTransport:
    """Serves one client over a pair of byte streams (stdin/stdout by default)."""

    def __init__(
        self,
        server: Server,
        *,
        stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
        drain_timeout: float = 10.0,
    ) -> None:
        self.server = server
        self._stdin = stdin or sys.stdin.buffer
        self._out = _Writer(stdout or sys.stdout.buffer)
        self.max_message_bytes = max_message_bytes
        self.drain_timeout = drain_timeout
        self.peer = Peer()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reading: asyncio.Task[Any] | None = None
        # The serving loop, from serve(): asyncio.get_running_loop() costs a getpid() syscall per call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._drained = False

    async def serve(self) -> None:
        """Serve until stdin closes (or `stop_reading()`), then drain (see `drain`) and return."""
        self._loop = loop = asyncio.get_running_loop()
        await self._out.open()
        self.peer.standalone = self._out.send
        self.server.peers.add(self.peer)
        reader = asyncio.StreamReader(limit=self.max_message_bytes, loop=loop)
        if _pollable(self._stdin):
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), self._stdin)
        else:  # a regular file or /dev/null cannot be watched by the loop; read it in a thread
            reader = await _file_reader(self._stdin, loop, self.max_message_bytes)
        self._reading = asyncio.current_task()
        try:
            await self._read_loop(reader)
        except asyncio.CancelledError:
            if not self._stop_requested:
                raise
        finally:
            self._reading = None
            await self._finish()

    def stop_reading(self) -> None:
        """Stop taking new messages; `serve()` then finishes in-flight requests and returns."""
        self._stop_requested = True
        if self._reading is not None:
            self._reading.cancel()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                if e.partial.strip():
                    await self._on_line(e.partial)
                return
            except asyncio.LimitOverrunError as e:
                await self._skip_oversized(reader, e.consumed)
                continue
            if line.strip():
                await self._on_line(line)

    async def _skip_oversized(self, reader: asyncio.StreamReader, consumed: int) -> None:
        # Discard up to and including the next newline, then say so once.
        while True:
            await reader.readexactly(consumed)
            try:
                await reader.readuntil(b"\n")
                break
            except asyncio.LimitOverrunError as e:
                consumed = e.consumed
            except asyncio.IncompleteReadError:
                break
        await self._out.send(
            jsonrpc.error(
                None, codes.INVALID_REQUEST, f"Invalid request: message exceeds {self.max_message_bytes} bytes"
            )
        )

    async def _on_line(self, line: bytes) -> None:
        try:
            msg = jsonrpc.loads(line)
        except ValueError as e:
            await self._out.send(jsonrpc.parse_error(str(e)))
            return
        if isinstance(msg, list):
            await self._out.send(
                jsonrpc.error(None, codes.INVALID_REQUEST, "Invalid request: JSON-RPC batches are not supported")
            )
            return
        kind, reason = jsonrpc.classify(msg, line)
        if kind is Kind.REQUEST:
            ex = Exchange(self.peer, msg["id"], msg["method"], self._out.send)
            refused = inflight.enter(ex)
            if refused is not None:
                await self._out.send(refused)
                return
            task = (self._loop or asyncio.get_running_loop()).create_task(self._serve_request(msg, ex))
            ex.task = task
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._request_done, ex))
        elif kind is Kind.INVALID:
            await self._out.send(jsonrpc.invalid_request(msg, reason))
        else:
            await self.server.handle_message(msg, self.peer)

    def _request_done(self, ex: Exchange, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        # Also here, not only in `_serve_request`: a task cancelled before its first step
        # (a cancel read in the same chunk as its request) never runs its body or `finally`.
        # Any other task has run its `finally` already.
        if task.cancelled():
            inflight.leave(ex)

    async def _serve_request(self, msg: Message, ex: Exchange) -> None:
        try:
            response = await self.server.handle_request(msg, ex)  # the exception boundary: it answers cancels
            if response is not None:
                await self._out.send(response)
        finally:
            inflight.leave(ex)

    async def drain(self, refuse_new: bool = True) -> None:
        """Give the requests in flight `drain_timeout` seconds, then the runtime's drain: calls still running
        are answered `drain_timeout`, abandoned work is waited for within the same timeout. Then cancel any
        other request still running, and leave behind, unanswered, what ignores that. Never waits longer
        than the drain timeout and two deadline graces.

        `refuse_new` (a signal, while stdin is still read): calls that arrive meanwhile get `draining`. At
        end of input nothing more can arrive, and the requests already read are served as usual.
        """
        if self._drained:
            return
        self._drained = True
        self.server.notifier.end_listeners()  # subscriptions/listen streams answer and end at once
        runtime = self.server.runtime
        if refuse_new:
            runtime.start_draining()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        while (pending := [t for t in self._tasks if not t.done()]) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(pending, timeout=left)
        await runtime.drain(max(0.0, deadline - loop.time()))
        pending = [t for t in self._tasks if not t.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, left_behind = await asyncio.wait(pending, timeout=runtime.config.deadline_grace)
        if left_behind:
            log.warning("%d requests ignored their cancellation and are left behind, unanswered", len(left_behind))

    async def _finish(self) -> None:
        await self.drain(refuse_new=False)
        self.server.peers.discard(self.peer)
        self.peer.close()
        await self._out.close()


def _pollable(stream: BinaryIO) -> bool:
    """Whether the event loop can watch `stream`: a pipe, socket or terminal, not a file or /dev/null.

    uvloop (libuv) aborts the process instead of raising when asked to watch the others.
    """
    fd = stream.fileno()
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd))


async def _file_reader(stream: BinaryIO, loop: asyncio.AbstractEventLoop, limit: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    data = await loop.run_in_executor(None, stream.read)
    reader.feed_data(data)
    reader.feed_eof()
    return reader
