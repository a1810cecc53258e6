"""Discovery: the safety policy, BE-MCP's workload factories, and generated arguments real servers accept.

The official SDK's `MCPServer` validates arguments with pydantic, so calls with generated arguments that come back
"ok" are an independent check of `argsgen` on schemas nobody here wrote.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bemcp.stress.client import LEGACY, MODERN
from bemcp.stress.discovery import (
    Discovery,
    NoCallableTools,
    Tool,
    Workload,
    discover,
    is_builtin,
    list_tools,
    skip_reason,
)
from bemcp.stress.model import CallResult
from bemcp.stress.targets import HttpTarget, StdioTarget, Target, TargetError
from tests.procs import ROOT
from tests.stress.sdk_app import running_http, stdio_argv

BEMCP = [sys.executable, "-m", "bemcp", "serve", "--transport", "stdio"]


@pytest.fixture
async def bemcp() -> AsyncIterator[Target]:
    async with StdioTarget([*BEMCP, "--stress-tools"], cwd=ROOT) as target:
        yield target


async def _run(target: Target, name: str, arguments: dict[str, Any], timeout: float = 5) -> CallResult:
    return await target.session().call_tool(name, arguments, timeout=timeout)


# -- BE-MCP's workload ---------------------------------------------------------------------------------


async def test_bemcp_workload_and_safety(bemcp: Target) -> None:
    found = await discover(bemcp.session())
    names = {t.name for t in found.tools}
    assert {"echo", "sleep", "allocate_memory", "io_write", "hang", "server_health"} <= names
    assert "io_write" in found.skipped and "readOnlyHint" in found.skipped["io_write"]
    wl = found.workload
    assert wl is not None and wl.has("echo") and not wl.has("io_write")
    with pytest.raises(LookupError, match="--allow-writes"):
        wl.io_write(1)
    expected = {
        "echo": (wl.echo("hello"), "ok"),
        "sleep": (wl.sleep(0.01), "ok"),
        "cpu_burn": (wl.cpu_burn(5), "ok"),
        "allocate_memory": (wl.allocate_memory(1, hold_seconds=0.01), "ok"),
        "block_event_loop": (wl.block_event_loop(5), "ok"),
        "recursive_fanout": (wl.recursive_fanout(2, 3), "ok"),
        "fail": (wl.fail(), "tool_error"),
        "server_health": (wl.server_health(), "ok"),
    }
    for name, (call, outcome) in expected.items():
        assert call.name == name
        result = await _run(bemcp, call.name, call.arguments)
        assert result.outcome == outcome, (name, result)
    hang = wl.hang()
    assert (await _run(bemcp, hang.name, hang.arguments, timeout=0.1)).outcome == "timeout"
    assert found.load_tool().name == "echo"
    assert found.to_dict()["skipped_tools"] == found.skipped


async def test_bemcp_allow_writes_and_generated_mix(bemcp: Target) -> None:
    found = await discover(bemcp.session(), allow_writes=True)
    assert not found.skipped and found.workload is not None and found.workload.has("io_write")
    call = found.workload.io_write(4, files=2)
    assert (await _run(bemcp, call.name, call.arguments)).outcome == "ok"
    rng = random.Random(7)
    heavy = frozenset({"hang", "block_event_loop", "recursive_fanout"})
    calls = [found.random_call(rng, exclude=heavy) for _ in range(60)]
    assert not heavy & {c.name for c in calls}
    results = await asyncio.gather(*(_run(bemcp, c.name, c.arguments) for c in calls))
    outcomes: dict[str, set[str]] = {}
    for call, result in zip(calls, results, strict=True):
        outcomes.setdefault(call.name, set()).add(result.outcome)
    assert outcomes.pop("fail", {"tool_error"}) == {"tool_error"}
    assert all(o == {"ok"} for o in outcomes.values()), outcomes  # BE-MCP's pydantic accepted every argument


async def test_bemcp_without_stress_tools() -> None:
    async with StdioTarget(BEMCP, cwd=ROOT) as target:
        found = await discover(target.session())
    assert found.workload is None
    assert [t.name for t in found.callable] == ["server_health"]
    # The real server_health, as BE-MCP lists it, is recognised as the built-in, and never chosen for load.
    assert is_builtin(found.callable[0])
    assert found.ranked() == [] and found.load_tool() is None
    with pytest.raises(LookupError, match="no tool of its own"):
        found.random_call(random.Random(0))


# -- servers written elsewhere -------------------------------------------------------------------------


async def _check_sdk(target: Target) -> None:
    found = await discover(target.session())
    assert [t.name for t in found.callable] == ["ping", "search", "pause"]
    assert found.skipped == {
        "delete_everything": "destructiveHint: never called",
        "write_note": "not marked readOnlyHint: called only with --allow-writes",
    }
    assert found.workload is None
    assert [t.name for t in found.ranked()] == ["ping", "pause", "search"]  # cheap names, then fewest arguments
    search = found.tool("search")
    assert search is not None
    rng = random.Random(3)
    session = target.session()
    for _ in range(40):
        call = search.call(rng)
        result = await session.call_tool(call.name, call.arguments, timeout=5)
        assert result.outcome == "ok", (call.arguments, result)
    writes = await discover(target.session(), allow_writes=True)
    assert "write_note" in [t.name for t in writes.callable]
    assert "delete_everything" in writes.skipped  # destructive stays out, whatever the flag


async def test_sdk_over_http_modern() -> None:
    with running_http() as url:
        async with HttpTarget(url) as target:
            assert target.revision == MODERN
            await _check_sdk(target)


async def test_sdk_over_stdio_legacy() -> None:
    async with StdioTarget(stdio_argv(), cwd=ROOT, revision=LEGACY) as target:
        assert target.revision == LEGACY
        await _check_sdk(target)


async def test_unannotated_tools_need_allow_writes() -> None:
    async with StdioTarget(stdio_argv("benchmarks.apps sdk"), cwd=ROOT) as target:
        with pytest.raises(NoCallableTools, match=r"noop \(not marked readOnlyHint: called only with --allow-writes\)"):
            await discover(target.session())
        found = await discover(target.session(), allow_writes=True)
        tool = found.load_tool()
        assert tool is not None and tool.name == "noop"
        call = found.random_call(random.Random(0))
        assert (await target.session().call_tool(call.name, call.arguments, timeout=5)).outcome == "ok"


# -- listing and policy (no server) --------------------------------------------------------------------


class _Pages:
    """A fake `Session` answering tools/list from canned pages keyed by cursor."""

    def __init__(self, pages: dict[Any, dict[str, Any]]) -> None:
        self.pages = pages
        self.cursors: list[Any] = []

    async def request(self, method: str, params: dict[str, Any] | None, *, timeout: float) -> dict[str, Any]:
        assert method == "tools/list"
        cursor = (params or {}).get("cursor")
        self.cursors.append(cursor)
        return {"jsonrpc": "2.0", "id": 1, **self.pages[cursor]}


def _tool(name: str, **annotations: Any) -> dict[str, Any]:
    return {"name": name, "inputSchema": {"type": "object"}, "annotations": annotations}


async def test_pagination_follows_next_cursor_and_stops_on_a_loop() -> None:
    pages = _Pages(
        {
            None: {"result": {"tools": [_tool("a", readOnlyHint=True)], "nextCursor": "p2"}},
            "p2": {"result": {"tools": [_tool("b", readOnlyHint=True), {"no": "name"}], "nextCursor": "p3"}},
            "p3": {"result": {"tools": [_tool("c", readOnlyHint=True)], "nextCursor": "p2"}},  # a loop
        }
    )
    tools = await list_tools(pages, timeout=1)  # type: ignore[arg-type]
    assert [t["name"] for t in tools] == ["a", "b", "c"]
    assert pages.cursors == [None, "p2", "p3"]  # a cursor seen before is not followed again
    with pytest.raises(TargetError, match="tools/list failed: error -32601"):
        await list_tools(_Pages({None: {"error": {"code": -32601, "message": "nope"}}}), timeout=1)  # type: ignore[arg-type]
    with pytest.raises(NoCallableTools, match="lists no tools"):
        await discover(_Pages({None: {"result": {"tools": []}}}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("annotations", "allow_writes", "reason"),
    [
        ({"readOnlyHint": True}, False, None),
        ({"readOnlyHint": True, "destructiveHint": True}, True, "destructiveHint"),
        ({"destructiveHint": True}, True, "destructiveHint"),
        ({}, False, "readOnlyHint"),
        ({}, True, None),
        ({"readOnlyHint": False, "destructiveHint": False}, False, "readOnlyHint"),
        ({"readOnlyHint": "yes"}, False, "readOnlyHint"),  # only a real true counts
    ],
)
def test_skip_reason(annotations: dict[str, Any], allow_writes: bool, reason: str | None) -> None:
    got = skip_reason(Tool.from_wire(_tool("t", **annotations)), allow_writes=allow_writes)
    assert (got is None) if reason is None else (got is not None and reason in got)


def test_skip_reason_for_schemas_and_tasks() -> None:
    bad = Tool.from_wire(
        {
            "name": "t",
            "annotations": {"readOnlyHint": True},
            "inputSchema": {"type": "object", "properties": {"x": {"$ref": "http://x/s.json"}}, "required": ["x"]},
        }
    )
    assert "cannot generate arguments" in (skip_reason(bad, allow_writes=True) or "")
    tasks = Tool.from_wire({**_tool("t", readOnlyHint=True), "execution": {"taskSupport": "required"}})
    assert "task" in (skip_reason(tasks, allow_writes=True) or "")


def _schema_tool(name: str, required: int, **annotations: Any) -> Tool:
    props = {f"p{i}": {"type": "string"} for i in range(required)}
    return Tool(
        name, input_schema={"type": "object", "properties": props, "required": list(props)}, annotations=annotations
    )


BUILTIN_HEALTH = _schema_tool("server_health", 0, readOnlyHint=True, idempotentHint=True, openWorldHint=False)


def _names(tools: list[Tool]) -> list[str]:
    return [t.name for t in tools]


def test_ranking_prefers_echo_then_cheap_names_then_simple_schemas() -> None:
    t = _schema_tool
    found = Discovery([], [t("search", 2), t("get_status", 1), t("translate", 0), t("echo_back", 3)], {})
    assert _names(found.ranked()) == ["echo_back", "get_status", "translate", "search"]
    plain = Discovery([], [t("search", 2), t("translate", 0), t("lookup", 1)], {})
    assert _names(plain.ranked()) == ["translate", "lookup", "search"]


def test_the_builtin_server_health_is_never_ranked_but_a_health_tool_of_another_server_is() -> None:
    user = Discovery([], [BUILTIN_HEALTH, _schema_tool("lookup", 1, readOnlyHint=True)], {})
    assert _names(user.ranked()) == ["lookup"]  # however cheap its name looks, the built-in carries no load
    assert is_builtin(BUILTIN_HEALTH)
    # Another server's own `health`, or a `server_health` that takes arguments or reaches out: the user's tools.
    theirs = _schema_tool("health", 0, readOnlyHint=True)
    lookalike = _schema_tool("server_health", 1, readOnlyHint=True, openWorldHint=False)
    open_world = _schema_tool("server_health", 0, readOnlyHint=True)
    assert not any(is_builtin(x) for x in (theirs, lookalike, open_world))
    assert _names(Discovery([], [_schema_tool("search", 2), theirs], {}).ranked()) == ["health", "search"]
    assert _names(Discovery([], [open_world], {}).ranked()) == ["server_health"]


def test_workload_tools_give_way_to_the_servers_own() -> None:
    workload_names = ("echo", "sleep", "cpu_burn", "allocate_memory", "hang", "fail")
    workload = [_schema_tool(n, 0) for n in workload_names]
    wl = Workload(frozenset(workload_names))
    embedded = Discovery([], [BUILTIN_HEALTH, *workload], {}, wl)  # `bemcp serve --stress-tools`: echo leads
    assert embedded.ranked()[0].name == "echo" and "server_health" not in _names(embedded.ranked())
    mine = _schema_tool("lookup", 1)
    app = Discovery([], [BUILTIN_HEALTH, *workload, mine], {}, wl)  # a user's app served with --stress-tools
    assert _names(app.ranked()) == ["lookup"]
