"""The servers the benchmarks drive: one no-op async tool (`noop() -> str`, returns "ok"), served four ways.

- BE-MCP: `bemcp_app`, run by `python -m bemcp serve --app benchmarks.apps:bemcp_app`.
- The official SDK (`mcp` v2): `sdk_server()`, an `MCPServer` at its best setting.
- FastMCP, when it is installed: `fastmcp_server()`.
- The ceiling: `echo_app`, a raw ASGI app that parses the JSON-RPC body with orjson and answers a
  tools/call-shaped result with no MCP machinery at all; `echo_stdio` does the same over stdio.

Run one of the non-BE-MCP servers (from the repository root):

    python -m benchmarks.apps sdk --port 8001 --json-response   # streamable HTTP on 127.0.0.1:8001/mcp
    python -m benchmarks.apps sdk --stdio                       # newline-delimited JSON-RPC on stdin/stdout
    python -m benchmarks.apps fastmcp --port 8002 --json-response
    python -m benchmarks.apps echo --port 8003
    python -m benchmarks.apps echo --stdio

Every HTTP server here uses uvicorn with uvloop, httptools, no access log and log level warning, so the
comparison is between MCP implementations and not between server settings. `--json-response` selects the SDK's
(and FastMCP's) plain-JSON responses: measured 1.6x (2026-07-28) to 2.3x (2025-11-25) faster than their default
SSE-capable mode, so it is their best setting for a benchmark (at the price of never streaming progress).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import orjson

from bemcp import App

bemcp_app = App("bench-bemcp", version="0.1.0")


@bemcp_app.tool
async def noop() -> str:
    """Does nothing."""
    return "ok"


def sdk_server() -> Any:
    """The SDK's `MCPServer` with the same async tool; WARNING keeps per-request INFO logging off the hot path."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bench-sdk", version="0.1.0", log_level="WARNING")

    # The default structured_output infers an outputSchema from `-> str`, exactly as BE-MCP does, so both
    # answer with content plus structuredContent {"result": "ok"}.
    @server.tool()
    async def noop() -> str:
        """Does nothing."""
        return "ok"

    return server


def fastmcp_available() -> bool:
    try:
        import fastmcp  # noqa: F401
    except ImportError:
        return False
    return True


def fastmcp_server() -> Any:
    """FastMCP with the same async tool; raises ImportError when FastMCP is not installed."""
    # FastMCP reads its log level from the environment at import time.
    os.environ.setdefault("FASTMCP_LOG_LEVEL", "WARNING")
    from fastmcp import FastMCP

    server = FastMCP("bench-fastmcp", version="0.1.0")

    @server.tool
    async def noop() -> str:
        """Does nothing."""
        return "ok"

    return server


# -- the ceiling: raw ASGI JSON-RPC echo --------------------------------------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_ECHO_RESULT = {
    "content": [{"type": "text", "text": "ok"}],
    "structuredContent": {"result": "ok"},
    "isError": False,
    "resultType": "complete",
}
_ECHO_HEADERS = [(b"content-type", b"application/json")]


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Parse the body and answer a tools/call-shaped result: the least any Python server must do."""
    if scope["type"] != "http":
        return  # uvicorn runs this with lifespan off; nothing else reaches here
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    msg = orjson.loads(body)
    if "id" not in msg:  # a notification
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    out = orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": _ECHO_RESULT})
    headers = [*_ECHO_HEADERS, (b"content-length", b"%d" % len(out))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})


async def echo_stdio() -> None:
    """The stdio ceiling: read a line, parse it, write a tools/call-shaped result, through the loop's pipes."""
    import asyncio

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    write = await _stdout_writer(loop)
    while line := await reader.readline():
        msg = orjson.loads(line)
        if "id" in msg:
            write(orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": _ECHO_RESULT}) + b"\n")


async def _stdout_writer(loop: Any) -> Callable[[bytes], None]:
    # The loop can only wrap a pipe or socket (uvloop aborts on a regular file); the benchmark always gives a pipe.
    if stat.S_ISFIFO(os.fstat(1).st_mode) or stat.S_ISSOCK(os.fstat(1).st_mode):
        import asyncio

        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout.buffer)
        return transport.write  # type: ignore[no-any-return]
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    return write


# -- launcher -----------------------------------------------------------------------------------------


def _serve_http(app: Any, port: int, lifespan: Literal["on", "off"]) -> None:
    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.apps", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["sdk", "fastmcp", "echo"])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stdio", action="store_true", help="serve over stdio instead of HTTP")
    parser.add_argument("--json-response", action="store_true", help="HTTP: answer plain JSON, never SSE")
    args = parser.parse_args(argv)
    if args.kind == "echo":
        if args.stdio:
            import uvloop

            uvloop.run(echo_stdio())
        else:
            _serve_http(echo_app, args.port, "off")
        return 0
    server = sdk_server() if args.kind == "sdk" else fastmcp_server()
    if args.stdio:
        if args.kind == "sdk":
            server.run()
        else:
            server.run(transport="stdio", show_banner=False)
        return 0
    if args.kind == "sdk":
        app = server.streamable_http_app(streamable_http_path="/mcp", json_response=args.json_response)
    else:
        app = server.http_app(path="/mcp", json_response=args.json_response)
    # Both apps need their lifespan: it starts the session manager's task group.
    _serve_http(app, args.port, "on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
