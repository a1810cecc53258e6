"""Interop: the official `mcp` SDK `Client` against real BE-MCP server processes.

Every test runs over stdio and Streamable HTTP, on both protocol revisions:
`legacy` (2025-11-25, initialize handshake, sessions) and `2026-07-28`
(stateless per-request `_meta`, multi round-trip input requests).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import orjson
import pytest
from mcp import Client, MCPDeprecationWarning, MCPError, StdioServerParameters
from mcp import types as t
from mcp.client.session import ClientRequestContext

from tests.procs import BEMCP, ROOT, HttpServer, http_server

pytestmark = pytest.mark.anyio

DEMO = "tests.apps.demo:app"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
COMBOS = [("stdio", "legacy"), ("stdio", MODERN), ("http", "legacy"), ("http", MODERN)]
COMBO_IDS = [f"{tr}-{'legacy' if mode == 'legacy' else 'modern'}" for tr, mode in COMBOS]

# Tools the demo app registers, plus the always-on builtin.
DEMO_TOOLS = {"echo", "add", "point", "slow", "sleep", "block", "fail", "log", "ask", "think", "server_health"}


# -- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def http_srv() -> Iterator[HttpServer]:
    """One HTTP server process shared by the module's HTTP tests."""
    with http_server(app=DEMO) as srv:
        yield srv


def _stdio_params() -> StdioServerParameters:
    return StdioServerParameters(
        command=BEMCP,
        args=["serve", "--transport", "stdio", "--app", DEMO],
        env={"PYTHONUNBUFFERED": "1"},
        cwd=str(ROOT),
    )


@pytest.fixture(params=COMBOS, ids=COMBO_IDS)
def combo(request: pytest.FixtureRequest) -> tuple[str, str]:
    transport, mode = request.param
    return transport, mode


def _target_for(request: pytest.FixtureRequest, transport: str) -> StdioServerParameters | str:
    """The server to connect to: a fresh stdio process, or the shared HTTP server's URL."""
    if transport == "stdio":
        return _stdio_params()
    srv: HttpServer = request.getfixturevalue("http_srv")
    assert srv.alive()
    return srv.url


@pytest.fixture
def target(request: pytest.FixtureRequest, combo: tuple[str, str]) -> StdioServerParameters | str:
    return _target_for(request, combo[0])


@pytest.fixture
def mode(combo: tuple[str, str]) -> str:
    return combo[1]


@asynccontextmanager
async def connect(target: StdioServerParameters | str, mode: str, **kwargs: Any) -> AsyncIterator[Client]:
    async with Client(target, mode=mode, cache=None, read_timeout_seconds=20, **kwargs) as client:
        yield client


def _text(result: t.CallToolResult | t.GetPromptResult | t.ReadResourceResult) -> str:
    """The text of the first content block."""
    block: object
    if isinstance(result, t.CallToolResult):
        block = result.content[0]
    elif isinstance(result, t.GetPromptResult):
        block = result.messages[0].content
    else:
        block = result.contents[0]
    assert isinstance(block, (t.TextContent, t.TextResourceContents)), block
    return block.text


async def _health(client: Client) -> dict[str, Any]:
    res = await client.call_tool("server_health")
    assert not res.is_error, res
    assert isinstance(res.structured_content, dict)
    return res.structured_content


# `server_health` reports 0 calls in flight when idle (older builds counted the health call itself: 1).
IDLE = (0, 1)


async def _wait_idle(client: Client, idle: int, timeout: float = 5.0) -> dict[str, Any]:
    """Poll `server_health` until nothing but the health call is in flight."""
    health: dict[str, Any] = {}
    for _ in range(int(timeout / 0.05)):
        health = await _health(client)
        if health["in_flight"] == idle:
            return health
        await anyio.sleep(0.05)
    raise AssertionError(f"calls still in flight after {timeout}s: {health}")


# -- connecting --------------------------------------------------------------


async def test_connect_negotiates_revision(target: StdioServerParameters | str, mode: str) -> None:
    async with connect(target, mode) as client:
        if mode == "legacy":
            assert client.protocol_version == LEGACY
            assert client.server_info is not None
            assert (client.server_info.name, client.server_info.version) == ("demo", "1.0.0")
            assert client.instructions == "A demo app for tests."
            assert client.server_capabilities.tools is not None
            assert client.server_capabilities.prompts is not None
            assert client.server_capabilities.resources is not None
        else:
            # Pinned: no probe, so nothing is known about the server until a result arrives.
            assert client.protocol_version == MODERN
        res = await client.call_tool("echo", {"text": "up"})
        assert _text(res) == "up"


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_auto_mode_lands_on_2026(request: pytest.FixtureRequest, transport: str) -> None:
    async with connect(_target_for(request, transport), "auto") as client:
        assert client.protocol_version == MODERN
        # The `server/discover` probe carries the server's identity and capabilities.
        assert client.server_info is not None
        assert (client.server_info.name, client.server_info.version) == ("demo", "1.0.0")
        assert client.server_capabilities.tools is not None
        assert client.instructions == "A demo app for tests."
        assert _text(await client.call_tool("echo", {"text": "auto"})) == "auto"


# -- tools -------------------------------------------------------------------


async def test_list_tools(target: StdioServerParameters | str, mode: str) -> None:
    async with connect(target, mode) as client:
        res = await client.list_tools()
        tools = {tool.name: tool for tool in res.tools}
        assert set(tools) == DEMO_TOOLS
        echo = tools["echo"]
        assert echo.description == "Return the text unchanged."
        assert echo.input_schema["type"] == "object"
        assert echo.input_schema["properties"]["text"]["type"] == "string"
        assert echo.input_schema["required"] == ["text"]
        assert echo.annotations is not None and echo.annotations.read_only_hint is True
        add = tools["add"]
        assert set(add.input_schema["properties"]) == {"a", "b"}
        assert add.input_schema["properties"]["a"]["type"] == "integer"
        # A `ctx: Context` parameter is injected, never part of the schema.
        assert "ctx" not in tools["slow"].input_schema.get("properties", {})
        assert "delay" not in tools["slow"].input_schema.get("required", [])
        point = tools["point"].output_schema
        assert point is not None
        assert point["type"] == "object"
        assert point["properties"]["x"]["type"] == "integer"
        assert point["properties"]["y"]["type"] == "integer"
        assert sorted(point["required"]) == ["x", "y"]
        assert tools["echo"].output_schema is not None  # str results are wrapped as {"result": ...}
        if mode != "legacy":
            assert res.ttl_ms is not None and res.ttl_ms >= 0
            assert res.cache_scope in ("public", "private")


async def test_call_tools(target: StdioServerParameters | str, mode: str) -> None:
    async with connect(target, mode) as client:
        res = await client.call_tool("echo", {"text": "héllo wörld"})
        assert not res.is_error
        assert _text(res) == "héllo wörld"
        assert res.structured_content == {"result": "héllo wörld"}

        res = await client.call_tool("add", {"a": 40, "b": 2})  # sync tool, worker pool
        assert not res.is_error
        assert _text(res) == "42"
        assert res.structured_content == {"result": 42}

        res = await client.call_tool("point", {"x": 3, "y": -4})
        assert not res.is_error
        assert res.structured_content == {"x": 3, "y": -4}
        assert orjson.loads(_text(res)) == {"x": 3, "y": -4}


async def test_concurrent_calls(target: StdioServerParameters | str, mode: str) -> None:
    async with connect(target, mode) as client:
        await client.list_tools()
        results: dict[int, tuple[str, Any]] = {}

        async def one(i: int) -> None:
            if i % 2:
                res = await client.call_tool("add", {"a": i, "b": 1000})
                results[i] = (_text(res), res.structured_content)
            else:
                res = await client.call_tool("echo", {"text": f"msg-{i}"})
                results[i] = (_text(res), res.structured_content)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(one, i)
        assert len(results) == 50
        for i, (text, structured) in results.items():
            if i % 2:
                assert (text, structured) == (str(i + 1000), {"result": i + 1000})
            else:
                assert (text, structured) == (f"msg-{i}", {"result": f"msg-{i}"})


async def test_progress(target: StdioServerParameters | str, mode: str) -> None:
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    async with connect(target, mode) as client:
        res = await client.call_tool("slow", {"steps": 3, "delay": 0.01}, progress_callback=on_progress)
        assert _text(res) == "done"
        assert events == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_cancellation(target: StdioServerParameters | str, mode: str) -> None:
    async with connect(target, mode) as client:
        before = await _health(client)
        idle = before["in_flight"]
        assert idle in IDLE
        caught: list[bool] = []

        async def sleeper() -> None:
            with anyio.move_on_after(0.3) as scope:
                await client.call_tool("sleep", {"seconds": 30})
            caught.append(scope.cancelled_caught)

        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await anyio.sleep(0.15)
            during = await _health(client)  # the sleep is counted while it runs
        assert caught == [True]
        assert time.monotonic() - start < 5
        assert during["in_flight"] == idle + 1

        # The server is alive and the connection still serves calls.
        assert _text(await client.call_tool("echo", {"text": "after"})) == "after"

        # The sleeping call was cancelled server-side, not left running.
        health = await _wait_idle(client, idle)
        cancelled_before = before["completed"].get("cancelled", 0)
        assert health["completed"].get("cancelled", 0) == cancelled_before + 1
        assert health["status"] == "ok"


async def test_cancellation_http_server_survives(http_srv: HttpServer) -> None:
    """Cancels whose clients then disconnect leave the HTTP process up, with nothing left running."""
    async with connect(http_srv.url, MODERN) as client:
        before = await _health(client)
    idle = before["in_flight"]
    assert idle in IDLE
    for mode in ("legacy", MODERN):
        async with connect(http_srv.url, mode) as client:
            with anyio.move_on_after(0.3) as scope:
                await client.call_tool("sleep", {"seconds": 30})
            assert scope.cancelled_caught
    assert http_srv.alive()
    async with connect(http_srv.url, MODERN) as client:
        health = await _wait_idle(client, idle)
    assert health["completed"].get("cancelled", 0) == before["completed"].get("cancelled", 0) + 2


async def test_tool_errors(target: StdioServerParameters | str, mode: str) -> None:
    async with connect(target, mode) as client:
        res = await client.call_tool("fail", {})
        assert res.is_error is True
        text = _text(res)
        assert "unexpected failure" in text
        assert "RuntimeError" in text
        assert "Traceback" not in text and 'File "' not in text

        res = await client.call_tool("fail", {"mode": "tool"})
        assert res.is_error is True
        assert _text(res) == "this tool failed on purpose"

        # Bad arguments are a tool error the model can correct, not a protocol error.
        res = await client.call_tool("add", {"a": "not a number", "b": 1})
        assert res.is_error is True
        assert "Invalid arguments for tool add" in _text(res)

        with pytest.raises(MCPError) as info:
            await client.call_tool("no_such_tool", {})
        assert info.value.code == -32602
        assert "no_such_tool" in info.value.message

        # The connection is still good after the errors.
        assert _text(await client.call_tool("add", {"a": 1, "b": 2})) == "3"


# -- resources and prompts ---------------------------------------------------


async def test_resources(target: StdioServerParameters | str, mode: str) -> None:
    async with connect(target, mode) as client:
        listed = await client.list_resources()
        by_uri = {str(r.uri): r for r in listed.resources}
        assert set(by_uri) == {"demo://greeting"}
        assert by_uri["demo://greeting"].name == "greeting"
        assert by_uri["demo://greeting"].mime_type == "text/plain"
        assert by_uri["demo://greeting"].description == "A static greeting."

        templates = await client.list_resource_templates()
        assert [tp.uri_template for tp in templates.resource_templates] == ["demo://items/{item_id}"]
        assert templates.resource_templates[0].name == "item"

        read = await client.read_resource("demo://greeting")
        assert len(read.contents) == 1
        assert str(read.contents[0].uri) == "demo://greeting"
        assert read.contents[0].mime_type == "text/plain"
        assert _text(read) == "hello"

        read = await client.read_resource("demo://items/7")
        assert str(read.contents[0].uri) == "demo://items/7"
        assert read.contents[0].mime_type == "application/json"
        assert orjson.loads(_text(read)) == {"id": 7}

        with pytest.raises(MCPError) as info:
            await client.read_resource("demo://nothing-here")
        assert info.value.code == (-32002 if mode == "legacy" else -32602)


async def test_prompts(target: StdioServerParameters | str, mode: str) -> None:
    async with connect(target, mode) as client:
        listed = await client.list_prompts()
        prompts = {p.name: p for p in listed.prompts}
        assert set(prompts) == {"greet"}
        greet = prompts["greet"]
        assert greet.description == "Greet someone."
        assert greet.arguments is not None
        assert [(a.name, a.required) for a in greet.arguments] == [("name", True)]

        got = await client.get_prompt("greet", {"name": "Ada"})
        assert got.description == "Greet someone."
        assert len(got.messages) == 1
        assert got.messages[0].role == "user"
        assert _text(got) == "Say hello to Ada."

        with pytest.raises(MCPError) as info:
            await client.get_prompt("nope", {})
        assert info.value.code == -32602


# -- sampling and elicitation --------------------------------------------------


async def test_sampling(target: StdioServerParameters | str, mode: str) -> None:
    seen: list[t.CreateMessageRequestParams] = []

    async def sampling(context: ClientRequestContext, params: t.CreateMessageRequestParams) -> t.CreateMessageResult:
        seen.append(params)
        content = params.messages[0].content
        assert isinstance(content, t.TextContent)
        return t.CreateMessageResult(
            role="assistant",
            content=t.TextContent(type="text", text=content.text.upper()),
            model="fake-model",
            stop_reason="endTurn",
        )

    async with connect(target, mode, sampling_callback=sampling) as client:
        res = await client.call_tool("think", {"prompt": "what is two plus two"})
        assert not res.is_error, res
        assert _text(res) == "model said: WHAT IS TWO PLUS TWO"
    assert len(seen) == 1
    assert seen[0].max_tokens == 50
    assert seen[0].messages[0].role == "user"


async def test_sampling_without_capability(target: StdioServerParameters | str, mode: str) -> None:
    """A client that declared no sampling capability gets an error, never a request it cannot answer."""
    async with connect(target, mode) as client:
        with pytest.raises(MCPError) as info:
            await client.call_tool("think", {"prompt": "hi"})
        assert info.value.code == -32021
        assert _text(await client.call_tool("echo", {"text": "ok"})) == "ok"


async def test_elicitation(target: StdioServerParameters | str, mode: str) -> None:
    seen: list[t.ElicitRequestParams] = []
    answers = iter([t.ElicitResult(action="accept", content={"answer": "blue"}), t.ElicitResult(action="decline")])

    async def elicit(context: ClientRequestContext, params: t.ElicitRequestParams) -> t.ElicitResult:
        seen.append(params)
        return next(answers)

    async with connect(target, mode, elicitation_callback=elicit) as client:
        res = await client.call_tool("ask", {"question": "Favourite colour?"})
        assert not res.is_error, res
        assert _text(res) == "answer: blue"
        res = await client.call_tool("ask", {"question": "Second question?"})
        assert _text(res) == "user chose decline"
    assert [p.message for p in seen] == ["Favourite colour?", "Second question?"]
    first = seen[0]
    assert isinstance(first, t.ElicitRequestFormParams)
    assert first.requested_schema["properties"]["answer"]["type"] == "string"
    assert first.requested_schema["required"] == ["answer"]


# -- logging -----------------------------------------------------------------


class _LogSink:
    """A logging callback that records messages and signals the first one."""

    def __init__(self) -> None:
        self.got: list[t.LoggingMessageNotificationParams] = []
        self.arrived = anyio.Event()

    async def __call__(self, params: t.LoggingMessageNotificationParams) -> None:
        self.got.append(params)
        self.arrived.set()

    async def settle(self) -> None:
        """Wait for the first message, then a moment more for anything that should not come."""
        with anyio.fail_after(2):
            await self.arrived.wait()
        await anyio.sleep(0.1)


async def test_logging(target: StdioServerParameters | str, mode: str) -> None:
    sink = _LogSink()
    async with connect(target, mode, logging_callback=sink, log_level="warning") as client:
        if mode == "legacy":
            # Handshake era: the session's level is set with logging/setLevel.
            with pytest.warns(MCPDeprecationWarning):
                await client.set_logging_level("warning")
        res = await client.call_tool("log", {"level": "info", "message": "below the level"})
        assert _text(res) == "logged"
        res = await client.call_tool("log", {"level": "error", "message": "disk on fire"})
        assert _text(res) == "logged"
        await sink.settle()
    assert [(m.level, m.data, m.logger) for m in sink.got] == [("error", "disk on fire", "demo")]


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_logging_modern_needs_opt_in(request: pytest.FixtureRequest, transport: str) -> None:
    """2026-07-28: no `logLevel` in a request's `_meta` means no log messages for it."""
    sink = _LogSink()
    async with connect(_target_for(request, transport), MODERN, logging_callback=sink) as client:
        assert _text(await client.call_tool("log", {"level": "emergency", "message": "x"})) == "logged"
        # A per-request opt-in via _meta works without a client-wide level.
        meta = cast(t.RequestParamsMeta, {"io.modelcontextprotocol/logLevel": "debug"})
        res = await client.call_tool("log", {"level": "debug", "message": "opted in"}, meta=meta)
        assert _text(res) == "logged"
        await sink.settle()
    assert [(m.level, m.data) for m in sink.got] == [("debug", "opted in")]
