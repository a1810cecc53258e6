"""`app.http_app()` mounted in FastAPI and Starlette, served by a real uvicorn, driven by the official SDK client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from tests.procs import free_port

pytestmark = pytest.mark.anyio

UVICORN = str(Path(sys.executable).with_name("uvicorn"))

COMMON = '''
import contextlib, pathlib
from bemcp import App, Context

@contextlib.asynccontextmanager
async def tools_lifespan(app):
    pathlib.Path("events.log").write_text("tools started\\n")
    yield {"greeting": "hello"}
    with open("events.log", "a") as f:
        f.write("tools stopped\\n")

tools = App("embedded", version="2.0.0", lifespan=tools_lifespan)

@tools.tool(read_only=True)
async def greet(name: str, ctx: Context) -> str:
    """Greet someone with the lifespan's greeting."""
    return f"{ctx.state['greeting']}, {name}"

@tools.tool
def add(a: int, b: int) -> int:
    return a + b
'''

FASTAPI_APP = (
    COMMON
    + """
from fastapi import FastAPI

mcp_app = tools.http_app(path="/mcp")

@contextlib.asynccontextmanager
async def lifespan(app):
    # The parent's own startup work, with the MCP app's lifespan inside it.
    async with mcp_app.lifespan(app):
        yield

api = FastAPI(lifespan=lifespan)
api.mount("/tools", mcp_app)

@api.get("/hello")
async def hello() -> dict:
    return {"from": "fastapi"}
"""
)

STARLETTE_APP = (
    COMMON
    + """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

mcp_app = tools.http_app(path="/")

async def home(request):
    return PlainTextResponse("home")

api = Starlette(routes=[Route("/", home), Mount("/deep/prefix", app=mcp_app)], lifespan=mcp_app.lifespan)
"""
)

NO_LIFESPAN_APP = (
    COMMON
    + """
from starlette.applications import Starlette
from starlette.routing import Mount

mcp_app = tools.http_app()
api = Starlette(routes=[Mount("/x", app=mcp_app)])  # the MCP app's lifespan is not passed on
"""
)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("BEMCP_")}


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"uvicorn exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} not up in {timeout}s")


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    source, ready_path = request.param
    (tmp_path / "site_app.py").write_text(source)
    port = free_port()
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [UVICORN, "site_app:api", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base + ready_path, proc)
        yield base, tmp_path, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        log.close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        body: bytes = r.read()
        return body


async def _use(url: str) -> None:
    for mode in ("legacy", "2026-07-28"):
        async with Client(url, mode=mode, read_timeout_seconds=20) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"greet", "add"} <= names
            res = await client.call_tool("greet", {"name": "Ada"})
            assert not res.is_error and res.structured_content == {"result": "hello, Ada"}
            res = await client.call_tool("add", {"a": 2, "b": 40})
            assert not res.is_error and res.structured_content == {"result": 42}


def _stopped_cleanly(folder: Path, proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled, once shut down
    assert (folder / "events.log").read_text() == "tools started\ntools stopped\n"
    log = (folder / "uvicorn.log").read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


@pytest.mark.parametrize("served", [(FASTAPI_APP, "/hello")], indirect=True)
async def test_fastapi_mount_at_tools_mcp(served: tuple[str, Path, subprocess.Popen[bytes]]) -> None:
    base, folder, proc = served
    assert _get(base + "/hello") == b'{"from":"fastapi"}'
    await _use(base + "/tools/mcp")
    assert _get(base + "/tools/healthz") == b'{"status":"ok"}'  # the ops endpoints sit under the prefix too
    _stopped_cleanly(folder, proc)


@pytest.mark.parametrize("served", [(STARLETTE_APP, "/")], indirect=True)
async def test_starlette_mount_at_a_deep_prefix(served: tuple[str, Path, subprocess.Popen[bytes]]) -> None:
    base, folder, proc = served
    await _use(base + "/deep/prefix/")
    _stopped_cleanly(folder, proc)


@pytest.mark.parametrize("served", [(NO_LIFESPAN_APP, "/x/healthz")], indirect=True)
async def test_a_parent_that_forgets_the_lifespan_still_serves(
    served: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    base, folder, _ = served
    await _use(base + "/x/mcp")
    assert "was not started by a lifespan" in (folder / "uvicorn.log").read_text()
