"""A user's first steps, through the installed `bemcp` console script and `python server.py`.

Every server here runs from a temporary folder of the user's own, outside the repository, with no PYTHONPATH:
what a user's shell has, and nothing more.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from mcp import Client, StdioServerParameters

from tests.procs import BEMCP, free_port

PYTHON = sys.executable
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}

WEATHER = '''
from bemcp import App

app = App("weather", version="1.0.0")

@app.tool(read_only=True)
async def forecast(city: str, days: int = 1) -> str:
    """Forecast for a city."""
    return f"{city}: sunny for {days} days"

if __name__ == "__main__":
    app.run()
'''

# A package whose module imports a sibling relatively: served by path, it must be imported as pkg.server.
PKG_INIT = ""
PKG_HELPERS = "GREETING = 'hello from a sibling module'\n"
PKG_SERVER = """
from bemcp import App
from .helpers import GREETING

tools = App("pkg-app")

@tools.tool
def greet() -> str:
    return GREETING
"""

LIFESPAN = """
import contextlib, pathlib
from bemcp import App, Context

@contextlib.asynccontextmanager
async def lifespan(app):
    marker = pathlib.Path("lifespan.log")
    marker.write_text("started\\n")
    yield {"pool": "db-pool-1", "app": app.name}
    marker.write_text(marker.read_text() + "stopped\\n")

app = App("stateful", lifespan=lifespan)

@app.tool(read_only=True)
async def pool(ctx: Context) -> str:
    return f"{ctx.state['app']}:{ctx.state['pool']}"

if __name__ == "__main__":
    app.run()
"""

HTTP_RUN = """
import sys
from bemcp import App

app = App("by-run")

@app.tool(read_only=True)
async def ping_me() -> str:
    return "pong"

if __name__ == "__main__":
    app.run(transport="http", port=int(sys.argv[1]), max_concurrency=7)
"""


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("BEMCP_")}
    env.update(extra)
    return env


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    d = tmp_path / "project"
    d.mkdir()
    (d / "weather.py").write_text(WEATHER)
    (d / "pkg").mkdir()
    (d / "pkg" / "__init__.py").write_text(PKG_INIT)
    (d / "pkg" / "helpers.py").write_text(PKG_HELPERS)
    (d / "pkg" / "server.py").write_text(PKG_SERVER)
    (d / "stateful.py").write_text(LIFESPAN)
    (d / "by_run.py").write_text(HTTP_RUN)
    # Shadows a stdlib module: served by path, it must still be this file.
    (d / "site.py").write_text(WEATHER.replace('"weather"', '"site-app"'))
    return d


def stdio_exchange(
    cmd: list[str], cwd: Path, *calls: dict[str, Any], timeout: float = 30
) -> tuple[dict[Any, Any], str]:
    """Initialize, make the calls, close stdin; the responses by id and the server's stderr."""
    lines = [INIT, INITIALIZED, *calls]
    payload = b"".join(orjson.dumps(m) + b"\n" for m in lines)
    proc = subprocess.run(cmd, input=payload, capture_output=True, cwd=cwd, env=user_env(), timeout=timeout)
    assert proc.returncode == 0, proc.stderr.decode()
    answers = {}
    for line in proc.stdout.splitlines():
        msg = orjson.loads(line)
        if "id" in msg and "method" not in msg:
            answers[msg["id"]] = msg
    return answers, proc.stderr.decode()


def call(id_: int, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": {"name": name, "arguments": arguments or {}}}


def text_of(answer: dict[str, Any]) -> str:
    result = answer["result"]
    assert not result.get("isError"), result
    return str(result["content"][0]["text"])


@pytest.mark.parametrize(
    "target",
    ["weather:app", "weather", "weather.py", "weather.py:app", "./weather.py", "ABSOLUTE", "--app=weather:app"],
)
def test_serve_the_users_module_or_file_over_stdio(user_dir: Path, target: str) -> None:
    arg = str(user_dir / "weather.py") if target == "ABSOLUTE" else target
    answers, stderr = stdio_exchange(
        [BEMCP, "serve", arg, "--transport", "stdio"], user_dir, call(2, "forecast", {"city": "Oslo", "days": 3})
    )
    assert answers[1]["result"]["serverInfo"]["name"] == "weather"
    assert text_of(answers[2]) == "Oslo: sunny for 3 days"
    assert "over stdio" in stderr  # the start line


def test_a_file_inside_a_package_keeps_its_relative_imports(user_dir: Path) -> None:
    answers, _ = stdio_exchange([BEMCP, "serve", "pkg/server.py", "--transport", "stdio"], user_dir, call(2, "greet"))
    assert text_of(answers[2]) == "hello from a sibling module"
    answers, _ = stdio_exchange(
        [BEMCP, "serve", "pkg.server:tools", "--transport", "stdio"], user_dir, call(2, "greet")
    )
    assert text_of(answers[2]) == "hello from a sibling module"


def test_a_file_named_like_a_stdlib_module_is_still_the_users(user_dir: Path) -> None:
    answers, _ = stdio_exchange([BEMCP, "serve", "site.py", "--transport", "stdio"], user_dir)
    assert answers[1]["result"]["serverInfo"]["name"] == "site-app"


def test_app_dir_from_another_folder(user_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = [BEMCP, "serve", "weather:app", "--app-dir", str(user_dir), "--transport", "stdio"]
    answers, _ = stdio_exchange(cmd, elsewhere, call(2, "forecast", {"city": "Rome"}))
    assert text_of(answers[2]) == "Rome: sunny for 1 days"


def test_env_and_toml_name_the_app(user_dir: Path) -> None:
    (user_dir / "bemcp.toml").write_text('[serve]\napp = "weather.py"\ntransport = "stdio"\n')
    answers, _ = stdio_exchange([BEMCP, "serve", "--config", "bemcp.toml"], user_dir)
    assert answers[1]["result"]["serverInfo"]["name"] == "weather"


BAD_TARGETS = [
    ("nope", "nope: no module named 'nope' in"),
    ("nope.py", "nope.py: no such file nope.py"),
    ("weather:nope", "weather:nope: weather has no attribute 'nope' (its bemcp.Apps: app)"),
    ("weather:forecast", "weather:forecast: weather:forecast is a function, not a bemcp.App"),
    ("weather.py:", "weather.py:: nothing after ':'"),
    (":app", ":app: nothing before ':'"),
    ("my-app", "my-app: not a module name, a .py file or MODULE:ATTR"),
    ("pkg", "pkg: pkg has no bemcp.App at module level; name one with pkg:ATTR"),
    ("two.py", "two.py: two has 2 bemcp.Apps; name one: two.py:a, two.py:b"),
    ("broken.py", "broken.py: importing broken.py raised ZeroDivisionError at broken.py:2: division by zero"),
    ("syntax.py", "syntax.py:1: syntax error"),
    ("needs_dep.py", "importing needs_dep.py failed: No module named 'not_installed_anywhere'"),
    ("notes.txt", "notes.txt: notes.txt is not a .py file"),
    ("pkg/", "pkg/: pkg/ is a folder"),
]


@pytest.mark.parametrize(("target", "expected"), BAD_TARGETS, ids=[t for t, _ in BAD_TARGETS])
def test_a_bad_target_is_one_line_and_exit_2(user_dir: Path, target: str, expected: str) -> None:
    (user_dir / "two.py").write_text("from bemcp import App\na = App('a')\nb = App('b')\n")
    (user_dir / "broken.py").write_text("from bemcp import App\nx = 1 / 0\n")
    (user_dir / "syntax.py").write_text("def f(:\n")
    (user_dir / "needs_dep.py").write_text("import not_installed_anywhere\n")
    (user_dir / "notes.txt").write_text("hi\n")
    proc = subprocess.run(
        [BEMCP, "serve", target, "--transport", "stdio"],
        capture_output=True,
        text=True,
        cwd=user_dir,
        env=user_env(),
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bemcp serve: ")
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr


BAD_FLAGS = [
    (["--port", "70000"], "--port must be a whole number from 0 to 65535, not '70000'"),
    (["--port", "http"], "--port must be a whole number from 0 to 65535, not 'http'"),
    (["--memory-fraction", "2"], "--memory-fraction must be a number greater than 0 and at most 1, not '2'"),
    (["--call-timeout", "-1"], "--call-timeout must be a number greater than 0, not '-1'"),
    (["--max-body-bytes", "10"], "--max-body-bytes must be a whole number at least 1024, not '10'"),
    (["--transport", "pigeon"], "--transport must be one of stdio, http, not 'pigeon'"),
    (["--stall-threshold", "5", "--emergency-threshold", "4"], "--emergency-threshold (4 s) must be greater than"),
    (["weather:app", "--app", "other:app"], "two apps given (weather:app and --app other:app); give one"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_an_out_of_range_flag_is_one_line_and_exit_2(user_dir: Path, args: list[str], expected: str) -> None:
    proc = subprocess.run(
        [BEMCP, "serve", *args], capture_output=True, text=True, cwd=user_dir, env=user_env(), timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"bemcp serve: {expected}" or (
        len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr
    ), proc.stderr


def test_out_of_range_env_value_is_one_line(user_dir: Path) -> None:
    proc = subprocess.run(
        [BEMCP, "serve"], capture_output=True, text=True, cwd=user_dir, env=user_env(BEMCP_PORT="70000"), timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bemcp serve: BEMCP_PORT must be a whole number from 0 to 65535, not '70000'"


def test_version_and_help() -> None:
    from bemcp import __version__

    out = subprocess.run([BEMCP, "--version"], capture_output=True, text=True, env=user_env(), timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == f"bemcp {__version__}"
    out = subprocess.run([BEMCP, "serve", "--help"], capture_output=True, text=True, env=user_env(), timeout=30)
    assert out.returncode == 0
    assert "TARGET" in out.stdout and "--app-dir" in out.stdout and "--protections" not in out.stdout


@pytest.fixture
def http_proc(user_dir: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [BEMCP, "serve", "weather.py", "--port", str(port), "--max-concurrency", "64", "--queue-size", "8"],
        cwd=user_dir,
        env=user_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)


def _read_start_line(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "bemcp.start" in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no start line (exit {proc.poll()})")


def test_serve_a_file_over_http_prints_where_it_listens(http_proc: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = http_proc
    line = _read_start_line(proc)
    assert f"on http://127.0.0.1:{port}/mcp" in line
    assert "weather 1.0.0 (1 tool, 0 resources, 0 prompts + server_health)" in line
    assert "MCP 2026-07-28 + 2025-11-25" in line
    assert "64 calls at once, 8 queued" in line
    assert re.search(r"memory budget [\d.]+ \wiB \(80% of [\d.]+ \wiB, \w+\)", line), line
    body = orjson.dumps(call(2, "forecast", {"city": "Lima"}))
    init = urllib.request.Request(
        f"http://127.0.0.1:{port}/mcp",
        data=orjson.dumps(INIT),
        headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
    )
    with urllib.request.urlopen(init, timeout=10) as r:
        sid = r.headers["mcp-session-id"]
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/mcp",
        data=body,
        headers={
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-session-id": sid,
        },
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert text_of(orjson.loads(r.read())) == "Lima: sunny for 1 days"


def test_port_zero_prints_the_port_really_bound(user_dir: Path) -> None:
    proc = subprocess.Popen(
        [BEMCP, "serve", "weather.py", "--port", "0"], cwd=user_dir, env=user_env(), stderr=subprocess.PIPE, text=True
    )
    try:
        line = _read_start_line(proc)
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/mcp", line).group(1))  # type: ignore[union-attr]
        assert port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


@pytest.mark.anyio
async def test_python_server_py_over_stdio_with_the_sdk_client(user_dir: Path) -> None:
    params = StdioServerParameters(command=PYTHON, args=["weather.py"], cwd=str(user_dir), env={})
    for mode in ("legacy", "2026-07-28"):
        async with Client(params, mode=mode, read_timeout_seconds=20) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "forecast" in tools
            res = await client.call_tool("forecast", {"city": "Kyiv", "days": 2})
            assert not res.is_error
            assert res.structured_content == {"result": "Kyiv: sunny for 2 days"}


def test_lifespan_state_reaches_tools_and_stops_after_the_last_call(user_dir: Path) -> None:
    marker = user_dir / "lifespan.log"
    answers, _ = stdio_exchange([PYTHON, "stateful.py"], user_dir, call(2, "pool"))
    assert text_of(answers[2]) == "stateful:db-pool-1"
    assert marker.read_text() == "started\nstopped\n"


def test_lifespan_with_bemcp_serve_too(user_dir: Path) -> None:
    answers, _ = stdio_exchange([BEMCP, "serve", "stateful.py", "--transport", "stdio"], user_dir, call(2, "pool"))
    assert text_of(answers[2]) == "stateful:db-pool-1"
    assert (user_dir / "lifespan.log").read_text() == "started\nstopped\n"


def test_a_failing_lifespan_stops_the_start_with_its_error(user_dir: Path) -> None:
    (user_dir / "fails.py").write_text(
        textwrap.dedent(
            """
            import contextlib
            from bemcp import App

            @contextlib.asynccontextmanager
            async def lifespan(app):
                raise ConnectionError("database is down")
                yield

            app = App("fails", lifespan=lifespan)
            """
        )
    )
    proc = subprocess.run(
        [BEMCP, "serve", "fails.py", "--transport", "stdio"],
        capture_output=True,
        text=True,
        cwd=user_dir,
        env=user_env(),
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "ConnectionError: database is down" in proc.stderr


def test_app_run_over_http(user_dir: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "by_run.py", str(port)], cwd=user_dir, env=user_env(), stderr=subprocess.PIPE, text=True
    )
    try:
        line = _read_start_line(proc)
        assert f"http://127.0.0.1:{port}/mcp" in line and "7 calls at once" in line
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/mcp",
            data=orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": {
                        "name": "ping_me",
                        "arguments": {},
                        "_meta": {
                            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                            "io.modelcontextprotocol/clientCapabilities": {},
                        },
                    },
                }
            ),
            headers={
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
                "mcp-protocol-version": "2026-07-28",
                "mcp-method": "tools/call",
                "mcp-name": "ping_me",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert text_of(orjson.loads(r.read())) == "pong"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_an_unguarded_app_run_does_not_start_a_second_server(user_dir: Path) -> None:
    # FastMCP-style files often end in a bare `app.run()`; `bemcp serve` imports the file and serves it itself.
    (user_dir / "bare.py").write_text(WEATHER.replace('if __name__ == "__main__":\n    app.run()', "app.run()"))
    cmd = [BEMCP, "serve", "bare.py", "--transport", "stdio"]
    answers, stderr = stdio_exchange(cmd, user_dir, call(2, "forecast", {"city": "Baku"}))
    assert text_of(answers[2]) == "Baku: sunny for 1 days"
    assert stderr.count("bemcp.start") == 1, stderr  # one server, not one inside the import and one after
    answers, _ = stdio_exchange([PYTHON, "bare.py"], user_dir, call(2, "forecast", {"city": "Baku"}))
    assert text_of(answers[2]) == "Baku: sunny for 1 days"
