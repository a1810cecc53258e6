"""An MCP server that misbehaves on purpose, over Streamable HTTP or stdio, for the stress tester's own tests.

    python -m tests.stress.hostile_server --transport http --port N --mode MODE [--after N] [--seed S]
    python -m tests.stress.hostile_server --transport stdio --mode MODE

It speaks just enough 2026-07-28 MCP to be found and loaded (`server/discover`, `tools/list`, `tools/call` of a
read-only `echo`) and is honest about everything except what `--mode` names, which touches only `tools/call`:

- `honest`: nothing (the control);
- `wrong-id`: every answer carries the request's id + 1;
- `duplicate`: every call is answered twice;
- `never-sent`: before each real answer, one to an id the client never sent (HTTP: in the same SSE stream);
- `bad-result`: answers a `tools/call` with a `tools/list` result (the right id, the wrong kind of answer);
- `hostile-schemas`: `tools/list` also offers `evil`, whose schema has the pattern `(a+)+[^\\s\\S]` (nothing
  matches it, and Python's `re` backtracks exponentially trying), and `huge`, which asks for 10**9 characters;
- `many-tools`: `tools/list` offers 20,000 tools (echo and 19,999 copies of it under other names);
- `random-close`: (HTTP) a seeded 30% of calls have their connection closed instead of an answer;
- `stop-reading`: after `--after` calls, it never reads its input again (and stays alive);
- `garbage`: every answer, the discovery too, is a line of noise: the target is hopeless.

Standard library only, so it cannot share a bug with the tester it tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from typing import Any

MODERN = "2026-07-28"
ECHO = {
    "name": "echo",
    "description": "returns its text",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    "annotations": {"readOnlyHint": True},
}
EVIL = {
    "name": "evil",
    "description": "a pattern no string matches, written to make a backtracking matcher hang",
    "inputSchema": {
        "type": "object",
        "properties": {"text": {"type": "string", "pattern": r"(a+)+[^\s\S]"}},
        "required": ["text"],
    },
    "annotations": {"readOnlyHint": True},
}
HUGE = {
    "name": "huge",
    "description": "asks for a gigabyte of text",
    "inputSchema": {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 10**9}},
        "required": ["text"],
    },
    "annotations": {"readOnlyHint": True},
}


class Hostile:
    """The JSON-RPC side: what to answer to one message, as a list of messages (empty for a notification)."""

    def __init__(self, mode: str, after: int, seed: int) -> None:
        self.mode = mode
        self.after = after
        self.calls = 0
        self.rng = random.Random(seed)

    def tools(self) -> list[dict[str, Any]]:
        if self.mode == "many-tools":
            return [ECHO, *({**ECHO, "name": f"echo{i}"} for i in range(1, 20_000))]
        return [ECHO, EVIL, HUGE] if self.mode == "hostile-schemas" else [ECHO]

    def answer(self, msg: Any) -> list[dict[str, Any]]:
        if not isinstance(msg, dict) or "method" not in msg:
            return [{"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid Request"}}]
        if "id" not in msg:
            return []  # a notification
        req_id, method = msg["id"], msg["method"]
        if method == "server/discover":
            return [_result(req_id, {"supportedVersions": [MODERN], "capabilities": {"tools": {}}, **_INFO})]
        if method == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, **_INFO}
            return [_result(req_id, result)]
        if method == "tools/list":
            return [_result(req_id, {"tools": self.tools()})]
        if method == "ping":
            return [_result(req_id, {})]
        if method != "tools/call":
            return [{"jsonrpc": "2.0", "id": req_id, "error": {"code": -32601, "message": "Method not found"}}]
        self.calls += 1
        params = msg.get("params") or {}
        text = str((params.get("arguments") or {}).get("text", ""))
        good = _result(req_id, {"content": [{"type": "text", "text": text}]})
        if self.mode == "wrong-id" and isinstance(req_id, int):
            return [{**good, "id": req_id + 1}]
        if self.mode == "duplicate":
            return [good, good]
        if self.mode == "never-sent":
            return [{**good, "id": 7_000_000_000_000 + self.calls}, good]
        if self.mode == "bad-result":
            return [_result(req_id, {"tools": self.tools()})]
        return [good]

    def should_close(self) -> bool:
        return self.mode == "random-close" and self.rng.random() < 0.3

    def stop_reading_now(self) -> bool:
        return self.mode == "stop-reading" and self.calls >= self.after


_INFO = {"serverInfo": {"name": "hostile", "version": "1"}}


def _result(req_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def _dump(msg: Any) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode()


# -- stdio ------------------------------------------------------------------------------------------------


async def serve_stdio(server: Hostile) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    while True:
        if server.stop_reading_now():
            transport.pause_reading()  # not even into a buffer: the pipe fills up
            await asyncio.Event().wait()  # alive, never reading again
        line = await reader.readline()
        if not line:
            return
        if server.mode == "garbage":
            out.write(b"\x00garbage\xff\n")
            out.flush()
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            msg = None
        for answer in server.answer(msg):
            out.write(_dump(answer) + b"\n")
        out.flush()


# -- HTTP -------------------------------------------------------------------------------------------------


async def serve_http(server: Hostile, port: int) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                if server.stop_reading_now():
                    transport = writer.transport
                    assert isinstance(transport, asyncio.ReadTransport)
                    transport.pause_reading()  # the socket's buffers fill up
                    await asyncio.Event().wait()
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path = [*request_line.split(" "), "", ""][:2]
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if path.startswith("/metrics"):
                    _respond(writer, 404, b"", "text/plain")
                elif method == "DELETE":
                    _respond(writer, 200, b"", "text/plain")
                elif method != "POST":
                    _respond(writer, 405, b"", "text/plain")
                else:
                    if server.mode == "garbage":
                        _respond(writer, 200, b"\x00garbage\xff", "application/json")
                        await writer.drain()
                        continue
                    try:
                        msg = json.loads(body)
                    except ValueError:
                        msg = None
                    answers = server.answer(msg)
                    if isinstance(msg, dict) and msg.get("method") == "tools/call" and server.should_close():
                        writer.close()
                        return
                    if not answers:
                        _respond(writer, 202, b"", "text/plain")
                    elif len(answers) == 1:
                        _respond(writer, 200, _dump(answers[0]), "application/json")
                    else:  # several answers to one POST: an SSE stream
                        events = b"".join(b"event: message\r\ndata: " + _dump(a) + b"\r\n\r\n" for a in answers)
                        _respond(writer, 200, events, "text/event-stream")
                await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()

    srv = await asyncio.start_server(connection, "127.0.0.1", port)
    print(f"hostile server ({server.mode}) on http://127.0.0.1:{port}/mcp", flush=True)
    async with srv:
        await srv.serve_forever()


def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
    reason = {200: "OK", 202: "Accepted", 404: "Not Found", 405: "Method Not Allowed"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--transport", choices=["http", "stdio"], required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", default="honest")
    p.add_argument("--after", type=int, default=200, help="stop-reading: calls served first")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()

    async def run() -> None:
        server = Hostile(args.mode, args.after, args.seed)
        if args.transport == "stdio":
            await serve_stdio(server)
        else:
            await serve_http(server, args.port)

    asyncio.run(run())


if __name__ == "__main__":
    main()
