"""Real server subprocesses for tests: `bemcp serve` over HTTP or stdio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The console script a user runs, not `python -m bemcp`: `-m` puts the current folder on the import path
# by itself and would hide a server that cannot import the user's app from where the user stands.
BEMCP = str(Path(sys.executable).with_name("bemcp"))


def _env() -> dict[str, str]:
    """The user's environment: no PYTHONPATH; apps like `tests.apps.demo:app` import from the current folder."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("BEMCP_")}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class HttpServer:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextlib.contextmanager
def http_server(
    *args: str, app: str | None = None, tmp: Path | None = None, ready_timeout: float = 20.0
) -> Iterator[HttpServer]:
    """Start `bemcp serve --transport http` on a free port; stop it (SIGTERM, then SIGKILL) afterwards."""
    port = free_port()
    log = (tmp or Path("/tmp")) / f"bemcp-server-{port}.log"
    cmd = [BEMCP, "serve", "--transport", "http", "--port", str(port), *args]
    if app:
        cmd += ["--app", app]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
    server = HttpServer(proc, port, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(f"{server.base}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in {ready_timeout}s: {log.read_text()}")
            time.sleep(0.05)
        yield server
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class StdioServer:
    """`bemcp serve --transport stdio` with line-level access to its stdin/stdout."""

    def __init__(self, *args: str, app: str | None = None) -> None:
        cmd = [BEMCP, "serve", "--transport", "stdio", *args]
        if app:
            cmd += ["--app", app]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout

    def send(self, msg: Any) -> None:
        self.send_raw(orjson.dumps(msg) + b"\n")

    def send_raw(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def recv(self) -> Any:
        line = self.stdout.readline()
        if not line:
            raise EOFError(f"server closed stdout (rc={self.proc.poll()})")
        return orjson.loads(line)

    def request(self, msg: dict[str, Any]) -> Any:
        """Send a request and return its response, skipping notifications."""
        self.send(msg)
        while True:
            got = self.recv()
            if "id" in got and got.get("id") == msg["id"] and "method" not in got:
                return got

    def initialize(self, version: str = "2025-11-25") -> Any:
        res = self.request(
            {
                "jsonrpc": "2.0",
                "id": "init",
                "method": "initialize",
                "params": {
                    "protocolVersion": version,
                    "capabilities": {},
                    "clientInfo": {"name": "tests", "version": "0"},
                },
            }
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return res

    def close(self, timeout: float = 10.0) -> int:
        with contextlib.suppress(BrokenPipeError):
            self.stdin.close()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> StdioServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.stdout.close()


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


async def post_call(port: int, tool: str, arguments: dict[str, Any], req_id: int = 1) -> int:
    """One 2026-07-28 `tools/call` on a fresh connection (raw HTTP, so as many as wanted run at once); the status."""
    body = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": req_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": MODERN_META},
        }
    )
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n"
        f"Mcp-Method: tools/call\r\nMcp-Name: {tool}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        status = await reader.readline()
        await reader.read()
        return int(status.split()[1])
    finally:
        writer.close()
