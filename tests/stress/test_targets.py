"""Targets: the embedded server's whole life, URL and stdio targets, revision detection, and clear errors.

Revision detection runs against servers written elsewhere too: the official SDK's `MCPServer` over HTTP and
stdio (dual-era: 2026-07-28 when probed, 2025-11-25 when forced), and a legacy-only stdio server that
either refuses `server/discover` or ignores it.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from bemcp.stress.client import LEGACY, MODERN, Endpoint, HttpClient, http_get
from bemcp.stress.stdio_client import StdioClient
from bemcp.stress.targets import (
    EmbeddedTarget,
    HttpTarget,
    StdioTarget,
    TargetError,
    detect_revision,
    parse_target,
)
from tests.procs import ROOT, free_port, http_server
from tests.stress.sdk_app import running_http, stdio_argv

LEGACY_SERVER = textwrap.dedent(
    """
    import json, sys
    silent = "--silent" in sys.argv
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg:
            continue
        method = msg.get("method")
        if method == "initialize":
            result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                      "serverInfo": {"name": "legacy-only", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": [{"name": "hello", "inputSchema": {"type": "object"},
                                 "annotations": {"readOnlyHint": True}}]}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": "hi"}]}
        elif silent:
            continue  # a server that ignores what it does not know
        else:
            print(json.dumps({"jsonrpc": "2.0", "id": msg["id"],
                              "error": {"code": -32601, "message": "Method not found"}}), flush=True)
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
    """
)


def _running_with(proc: psutil.Process, arg: str) -> bool:
    try:
        return arg in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- embedded ------------------------------------------------------------------------------------------


async def test_embedded_lifecycle(tmp_path: Path) -> None:
    target = parse_target("embedded", serve_args=["--max-concurrency", "77"], log_dir=tmp_path)
    assert isinstance(target, EmbeddedTarget) and target.kind == "embedded" and target.spec == "embedded"
    async with target:
        info = target.info
        assert info is not None and info.revision == MODERN and info.stateless
        assert info.server_info["name"] == "bemcp" and "tools" in info.capabilities
        pid = target.pid
        assert pid is not None and "--max-concurrency" in psutil.Process(pid).cmdline()
        assert target.metrics_url is not None
        metrics = await http_get(Endpoint.parse(target.metrics_url), "/metrics", timeout=5)
        assert metrics.status == 200 and b"bemcp_" in metrics.body
        assert await target.alive()
        session = target.session()
        assert (await session.call_tool("echo", {"text": "x"}, timeout=5)).outcome == "ok"
        health = await session.request("tools/call", {"name": "server_health", "arguments": {}}, timeout=5)
        assert health["result"]["structuredContent"]["limit"] == 77
    assert not await target.alive()
    assert _gone(pid)
    assert (tmp_path / "embedded-server.log").exists()
    await target.close()  # twice is fine


async def test_embedded_is_torn_down_when_the_run_fails() -> None:
    target = EmbeddedTarget()
    pids: list[int | None] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with target:
            pids.append(target.pid)
            raise RuntimeError("boom")
    assert pids[0] is not None and _gone(pids[0])


async def test_embedded_start_cleans_up_after_itself() -> None:
    target = EmbeddedTarget(serve_args=["--path", "/elsewhere"])  # /mcp is then a 404: not MCP
    with pytest.raises(TargetError, match="does not speak MCP"):
        await target.start()  # no `async with`: start() itself must not leave the server running
    assert not [c for c in psutil.Process().children(recursive=True) if _running_with(c, "/elsewhere")]


async def test_embedded_bad_flags_fail_fast() -> None:
    started = time.monotonic()
    with pytest.raises(TargetError, match="exited at start"):
        async with EmbeddedTarget(serve_args=["--max-concurrency", "lots"]):
            pass
    assert time.monotonic() - started < 10


# -- HTTP URLs -----------------------------------------------------------------------------------------


async def test_http_target_on_bemcp_both_revisions() -> None:
    with http_server("--stress-tools") as srv:
        async with parse_target(srv.url) as auto:
            assert isinstance(auto, HttpTarget) and auto.kind == "http"
            assert auto.revision == MODERN
            assert auto.pid == srv.proc.pid  # found by its listening loopback port
            assert auto.metrics_url == f"{srv.base}/metrics"
        async with HttpTarget(srv.url, revision=LEGACY) as legacy:
            assert legacy.revision == LEGACY and legacy.mcp_session_id
            s = legacy.session()
            assert (await s.call_tool("echo", {"text": "x"}, timeout=5)).outcome == "ok"
            params = legacy.client_params()  # a worker process joins the same MCP session
            assert params == {"url": srv.url, "revision": LEGACY, "mcp_session_id": legacy.mcp_session_id}
            worker = HttpClient(**params, id_base=1 << 40)
            assert (await worker.session().call_tool("echo", {"text": "w"}, timeout=5)).outcome == "ok"
            await worker.close()
        assert srv.alive()  # not ours: never stopped


async def test_sdk_http_target_is_detected_in_both_revisions() -> None:
    with running_http() as url:
        async with parse_target(url) as auto:
            assert auto.info is not None and auto.revision == MODERN
            assert auto.info.server_info == {"name": "stress-sdk", "version": "0.1.0"}
            assert auto.metrics_url is None
            assert (await auto.session().call_tool("ping", {}, timeout=5)).outcome == "ok"
        async with HttpTarget(url, revision=LEGACY) as legacy:  # the SDK answers 2025-11-25 POSTs with SSE
            assert legacy.revision == LEGACY
            s = legacy.session()
            results = [await s.call_tool("ping", {}, timeout=5) for _ in range(5)]
            assert [r.outcome for r in results] == ["ok"] * 5


# -- stdio ---------------------------------------------------------------------------------------------


async def test_sdk_stdio_target(tmp_path: Path) -> None:
    target = StdioTarget(stdio_argv(), cwd=ROOT, log_path=tmp_path / "sdk.log")
    assert target.spec.startswith("stdio:") and target.kind == "stdio"
    async with target:
        assert target.revision == MODERN
        assert target.info is not None and target.info.server_info["name"] == "stress-sdk"
        pid = target.pid
        assert pid is not None and await target.alive()
        assert (await target.session().call_tool("ping", {}, timeout=5)).outcome == "ok"
    assert not await target.alive() and _gone(pid)
    async with StdioTarget(stdio_argv(), cwd=ROOT, revision=LEGACY) as legacy:
        assert legacy.revision == LEGACY
        assert (await legacy.session().call_tool("ping", {}, timeout=5)).outcome == "ok"


async def test_stdio_spec_runs_bemcp_and_reports_death() -> None:
    spec = f"stdio:{sys.executable} -m bemcp serve --transport stdio --stress-tools"
    target = parse_target(spec)
    assert isinstance(target, StdioTarget) and target.argv[-1] == "--stress-tools"
    async with target:
        assert target.revision == MODERN and await target.alive()
        assert target.client is not None
        await target.client.kill()
        assert not await target.alive()
        lost = await target.session().call_tool("echo", {"text": "x"}, timeout=2)
        assert lost.outcome == "transport_error"


@pytest.mark.parametrize("silent", [False, True], ids=["refuses-discover", "ignores-discover"])
async def test_legacy_only_server_falls_back_to_initialize(tmp_path: Path, silent: bool) -> None:
    script = tmp_path / "legacy.py"
    script.write_text(LEGACY_SERVER)
    client = StdioClient([sys.executable, str(script), *(["--silent"] if silent else [])])
    await client.start()
    try:
        info = await detect_revision(client, timeout=5, probe_timeout=0.5)
        assert info.revision == "2025-06-18"  # the server's counter-offer is what we speak
        assert info.server_info["name"] == "legacy-only" and not info.stateless
        assert client.revision == "2025-06-18"
        assert (await client.session().call_tool("hello", {}, timeout=5)).outcome == "ok"
    finally:
        await client.close()
    if not silent:
        async with StdioTarget([sys.executable, str(script)]) as target:
            assert target.revision == "2025-06-18"
        with pytest.raises(TargetError, match="server/discover failed"):
            async with StdioTarget([sys.executable, str(script)], revision=MODERN):
                pass


# -- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ftp://example.com/mcp", "unknown target"),
        ("localhost:8000", "unknown target"),
        ("stdio:", "needs a command"),
        ('stdio:python "unclosed', "bad stdio command"),
        ("http://127.0.0.1:notaport/mcp", "bad target URL"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_target(spec)


async def test_unusable_targets_give_one_line_errors() -> None:
    cases = [
        (f"http://127.0.0.1:{free_port()}/mcp", "cannot reach the target.*connection refused"),
        ("stdio:/nonexistent/server --flag", "cannot run '/nonexistent/server'"),
        (f'stdio:{sys.executable} -c "import sys; sys.exit(3)"', "exited with 3"),
    ]
    for spec, pattern in cases:
        with pytest.raises(TargetError, match=pattern) as caught:
            async with parse_target(spec):
                pass
        assert "\n" not in str(caught.value)
    with http_server() as srv:  # a real HTTP server, but /healthz does not speak MCP
        with pytest.raises(TargetError, match="does not speak MCP: initialize got") as caught:
            async with parse_target(f"{srv.base}/healthz"):
                pass
        assert "\n" not in str(caught.value)
