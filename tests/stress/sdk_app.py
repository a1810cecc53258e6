"""An official-SDK `MCPServer` for the stress tester's tests: annotated tools and pydantic-validated schemas.

    python -m tests.stress.sdk_app --port 8001     # Streamable HTTP on 127.0.0.1:8001/mcp
    python -m tests.stress.sdk_app --stdio         # stdio

The server validates arguments with pydantic, so a generated argument it refuses shows up as a tool error:
that makes it an independent check of `bemcp.stress.argsgen` on schemas nobody here wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import anyio
from pydantic import BaseModel, Field

from tests.procs import ROOT, free_port, stop


class Point(BaseModel):
    x: Annotated[int, Field(ge=-5, le=5)]
    y: Annotated[float, Field(gt=0, lt=1)]
    label: str | None = None


class Query(BaseModel):
    text: Annotated[str, Field(min_length=2, max_length=12, pattern=r"^[a-z]+$")]
    mode: Literal["fast", "exact", "fuzzy"]
    limit: Annotated[int, Field(ge=1, le=50, multiple_of=5)] = 10
    tags: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=3)]
    where: Point
    near: list[Point] = []
    strict: bool = False


def build() -> Any:
    from mcp.server.mcpserver import MCPServer
    from mcp.types import ToolAnnotations

    server = MCPServer("stress-sdk", version="0.1.0", log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True)

    @server.tool(annotations=read_only)
    async def ping() -> str:
        """Answer at once."""
        return "pong"

    @server.tool(annotations=read_only)
    async def search(query: Query, page: Annotated[int, Field(ge=0, le=3)], score: float | None = None) -> str:
        """A pydantic-validated query with nested models, enums, bounds, patterns and lists."""
        return f"{query.mode}:{query.text}:{page}"

    @server.tool(annotations=read_only)
    async def pause(seconds: Annotated[float, Field(ge=0, le=30)]) -> str:
        """Sleep (for timeouts)."""
        await anyio.sleep(seconds)
        return "done"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    async def delete_everything(confirm: bool) -> str:
        """Destructive: the tester must never call this."""
        raise RuntimeError("the stress tester called a destructive tool")

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def write_note(text: str) -> str:
        """Writes, but does not destroy: callable only with --allow-writes."""
        return "written"

    return server


@contextlib.contextmanager
def running_http(app: str = "tests.stress.sdk_app", ready_timeout: float = 30.0) -> Iterator[str]:
    """Run `python -m APP --port N` (this app, or e.g. `benchmarks.apps sdk`) and yield its MCP URL."""
    port = free_port()
    cmd = [sys.executable, "-m", *app.split(), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app} not listening after {ready_timeout}s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)
        if proc.stderr is not None:
            proc.stderr.close()


def stdio_argv(app: str = "tests.stress.sdk_app") -> list[str]:
    return [sys.executable, "-m", *app.split(), "--stdio"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress.sdk_app")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--stdio", action="store_true")
    args = parser.parse_args(argv)
    server = build()
    if args.stdio:
        server.run()
        return 0
    import uvicorn

    app = server.streamable_http_app(streamable_http_path="/mcp")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
