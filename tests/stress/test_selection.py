"""Which calls carry the load: `--tool`/`--args` parsing and checking, the ranking's default, protocol methods when no
tool may be called, and the weighted mix drawn up front for the load steps."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import pytest

from bemcp.stress.client import LEGACY, MODERN
from bemcp.stress.discovery import Call, Discovery, discover
from bemcp.stress.load import CALLS_PER_CALLER, closed_calls, open_calls
from bemcp.stress.mix import MAX_PERIOD, Mix, MixEntry, slots_for, smooth_cycle
from bemcp.stress.selection import (
    LoadPlan,
    SelectionError,
    ToolSpec,
    parse_args,
    parse_flags,
    parse_tool,
    plan_load,
)

HEALTH = {
    "name": "server_health",
    "inputSchema": {"type": "object", "properties": {}},
    "annotations": {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
}


def _tool(name: str, *, required: tuple[str, ...] = (), **annotations: Any) -> dict[str, Any]:
    props = {r: {"type": "string"} for r in required}
    return {
        "name": name,
        "inputSchema": {"type": "object", "properties": props, "required": list(required)},
        "annotations": annotations,
    }


UNSATISFIABLE = {
    "name": "fetch",
    "annotations": {"readOnlyHint": True},
    "inputSchema": {"type": "object", "properties": {"x": {"$ref": "http://x/s.json"}}, "required": ["x"]},
}


class _Listing:
    """A `Session` that answers tools/list with a fixed list (the listing is all discovery reads)."""

    def __init__(self, tools: list[dict[str, Any]]) -> None:
        self.tools = tools

    async def request(self, method: str, params: dict[str, Any] | None, *, timeout: float) -> dict[str, Any]:
        assert method == "tools/list"
        return {"jsonrpc": "2.0", "id": 1, "result": {"tools": self.tools}}


async def _found(*tools: dict[str, Any], allow_writes: bool = False) -> Discovery:
    return await discover(_Listing(list(tools)), allow_writes=allow_writes, require_callable=False)  # type: ignore[arg-type]


# -- parsing the flags -----------------------------------------------------------------------------------


def test_parse_tool_and_its_weight() -> None:
    assert parse_tool("lookup") == ToolSpec("lookup", 1.0)
    assert parse_tool("lookup=3") == ToolSpec("lookup", 3.0)
    assert parse_tool("lookup=0.25") == ToolSpec("lookup", 0.25)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lookup=0", "the weight must be a positive number"),
        ("lookup=-2", "the weight must be a positive number"),
        ("lookup=inf", "the weight must be a positive number"),
        ("lookup=nan", "the weight must be a positive number"),
        ("lookup=lots", "the weight 'lots' is not a number"),
        ("=3", "give a tool name"),
    ],
)
def test_parse_tool_refuses_bad_weights(value: str, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        parse_tool(value)


def test_parse_args() -> None:
    assert parse_args('search={"q": "x=y", "n": 2}') == ("search", {"q": "x=y", "n": 2})
    with pytest.raises(SelectionError, match="not valid JSON"):
        parse_args("search={q: 1}")
    with pytest.raises(SelectionError, match="must be a JSON object, not list"):
        parse_args("search=[1]")
    with pytest.raises(SelectionError, match="write it as NAME=JSON"):
        parse_args("search")


def test_parse_flags_refuses_a_tool_named_twice() -> None:
    specs, fixed = parse_flags(["a=3", "b"], ['a={"x": 1}'])
    assert specs == [ToolSpec("a", 3.0), ToolSpec("b", 1.0)] and fixed == {"a": {"x": 1}}
    with pytest.raises(SelectionError, match="--tool a: given twice"):
        parse_flags(["a", "a=2"], [])
    with pytest.raises(SelectionError, match="--args a: given twice"):
        parse_flags([], ["a={}", "a={}"])


# -- checking them against the target --------------------------------------------------------------------


async def test_tool_checks_name_the_problem_and_the_flag() -> None:
    tools = (
        HEALTH,
        _tool("lookup", readOnlyHint=True),
        _tool("save", required=("text",)),
        _tool("wipe", destructiveHint=True),
        UNSATISFIABLE,
    )
    cases = [
        ([ToolSpec("nope")], {}, "--tool nope: the target has no tool named 'nope' (it lists: server_health, lookup"),
        ([ToolSpec("wipe")], {}, "--tool wipe: the target marks it destructiveHint"),
        ([ToolSpec("save")], {}, "--tool save: it is not marked readOnlyHint; add --allow-writes to call it"),
        ([ToolSpec("fetch")], {}, "give them with --args fetch=JSON"),
        ([], {"nope": {}}, "--args nope: the target has no tool named"),
        ([], {"save": {"text": "x"}}, "--args save: it is not marked readOnlyHint; add --allow-writes"),
        ([ToolSpec("lookup")], {"fetch": {"x": 1}}, "--args fetch: fetch is not among the --tool tools (lookup)"),
        ([], {"fetch": {}}, "--args fetch: missing required argument(s) x"),
    ]
    for specs, fixed, message in cases:
        with pytest.raises(SelectionError) as e:
            plan_load(await _found(*tools), tools=specs, args=fixed)
        assert message in str(e.value), (specs, fixed, str(e.value))
        assert "\n" not in str(e.value)


async def test_tool_picks_exactly_what_it_names_builtins_included() -> None:
    found = await _found(HEALTH, _tool("lookup", readOnlyHint=True), _tool("save", required=("text",)))
    plan = plan_load(found, tools=[ToolSpec("server_health", 1), ToolSpec("lookup", 3)])
    assert plan.source == "--tool" and plan.mix.names == ["server_health", "lookup"]
    assert plan.note == "server_health (weight 1), lookup (weight 3), as --tool asked"
    drawn = Counter(plan.mix(random.Random(0)).name for _ in range(plan.mix.period * 25))
    assert drawn == {"lookup": 75, "server_health": 25}
    # Not read-only: allowed with --allow-writes, and it then gets generated arguments.
    writes = await _found(_tool("save", required=("text",)), allow_writes=True)
    call = plan_load(writes, tools=[ToolSpec("save")], allow_writes=True).mix(random.Random(1))
    assert call.name == "save" and isinstance(call.arguments["text"], str)


async def test_args_fix_the_arguments_and_make_an_unsatisfiable_tool_callable() -> None:
    found = await _found(UNSATISFIABLE, _tool("lookup", readOnlyHint=True))
    assert "fetch" in found.skipped
    plan = plan_load(found, tools=[ToolSpec("fetch")], args={"fetch": {"x": 42}})
    assert plan.mix(random.Random(0)) == Call("fetch", {"x": 42})
    assert plan.section({})["mix"][0]["arguments"] == "fixed"
    assert "fetch" not in found.skipped and found.tool("fetch") is not None
    # Every phase sees them: chaos's random calls to the target's own tools use the fixed arguments too.
    rng = random.Random(3)
    assert {found.random_call(rng).arguments.get("x") for _ in range(40)} >= {42}


async def test_without_tool_the_best_ranked_own_tool_carries_the_load() -> None:
    found = await _found(
        HEALTH, _tool("search", required=("q", "page"), readOnlyHint=True), _tool("lookup", readOnlyHint=True)
    )
    plan = plan_load(found)
    assert plan.source == "ranked" and plan.mix.names == ["lookup"]
    assert "(--tool picks others, or a mix)" in plan.note
    only = plan_load(await _found(HEALTH, _tool("lookup", readOnlyHint=True)))
    assert only.mix.names == ["lookup"] and "only callable tool" in only.note


@pytest.mark.parametrize(
    ("revision", "methods"), [(MODERN, ["tools/list", "server/discover"]), (LEGACY, ["ping", "tools/list"])]
)
async def test_no_callable_tool_means_protocol_methods_and_says_which_flag(revision: str, methods: list[str]) -> None:
    found = await _found(HEALTH, _tool("save", required=("text",)), _tool("wipe", destructiveHint=True), UNSATISFIABLE)
    plan = plan_load(found, revision=revision)
    assert plan.source == "protocol" and plan.mix.names == methods  # ping is gone from 2026-07-28
    calls = [plan.mix(random.Random(0)) for _ in range(4)]
    assert {(c.method, c.kind) for c in calls} == {(m, f"rpc:{m}") for m in methods}
    assert "save: not marked readOnlyHint" in plan.note and "wipe: destructiveHint" in plan.note
    assert "server_health: BE-MCP's built-in" in plan.note
    assert plan.hint is not None
    assert "--allow-writes would call save" in plan.hint
    assert "--args NAME=JSON would call fetch" in plan.hint
    assert "--tool server_health" in plan.hint
    empty = plan_load(await _found(), revision=revision)
    assert "lists no tools" in empty.note and empty.hint is None


def test_the_load_section_counts_tools_and_methods_apart() -> None:
    mix = Mix([MixEntry("a", 3, lambda r: Call("a")), MixEntry("b", 1, lambda r: Call("b"))])
    section = LoadPlan("--tool", mix, "a (weight 3), b (weight 1), as --tool asked").section(
        {"a": 300, "b": 100, "chaos:malformed": 7, "rpc:ping": 5, "allocate_memory": 0}
    )
    assert [(e["name"], e["share"]) for e in section["mix"]] == [("a", 0.75), ("b", 0.25)]
    assert section["tool_calls"] == 400 and section["method_calls"] == 5
    assert [(t["name"], t["calls"], t["share"]) for t in section["tools"]] == [
        ("a", 300, 0.75),
        ("b", 100, 0.25),
        ("allocate_memory", 0, 0.0),
    ]
    assert section["methods"] == [{"name": "ping", "calls": 5, "share": 1.0}]


# -- the mix ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "slots"),
    [
        ([3, 1], [3, 1]),
        ([6, 2], [3, 1]),
        ([0.7, 0.3], [7, 3]),
        ([1, 1, 1], [1, 1, 1]),
        ([1 / 3, 2 / 3], [1, 2]),
        ([5, 3, 2], [5, 3, 2]),
    ],
)
def test_slots_keep_the_ratio_exactly_when_it_fits(weights: list[float], slots: list[int]) -> None:
    assert slots_for(weights, MAX_PERIOD) == slots


def test_slots_approximate_a_ratio_that_does_not_fit() -> None:
    weights = [0.371, 0.629]
    slots = slots_for(weights, MAX_PERIOD)
    assert sum(slots) <= MAX_PERIOD and all(n >= 1 for n in slots)
    assert abs(slots[0] / sum(slots) - 0.371) <= 1 / MAX_PERIOD
    tiny = slots_for([1000, 1], MAX_PERIOD)  # every entry keeps at least one slot
    assert tiny[1] == 1 and sum(tiny) == MAX_PERIOD


def test_smooth_cycle_spreads_the_entries() -> None:
    assert smooth_cycle([3, 1]) == (0, 0, 1, 0)
    cycle = smooth_cycle([5, 3, 2])
    assert Counter(cycle) == {0: 5, 1: 3, 2: 2}
    assert all(a != b or a == 0 for a, b in itertools.pairwise(cycle))  # no repeats but the heaviest


@pytest.mark.parametrize("concurrency", [1, 3, 7, 64])
def test_every_caller_and_every_open_schedule_holds_the_mix_exactly(concurrency: int) -> None:
    mix = Mix([MixEntry("a", 3, lambda r: Call("a")), MixEntry("b", 1, lambda r: Call("b"))])
    callers = closed_calls(concurrency, mix, random.Random(0), period=mix.period)
    for mine in callers:
        assert len(mine) % mix.period == 0 and len(mine) >= CALLS_PER_CALLER
        assert Counter(c.name for c in mine) == {"a": len(mine) * 3 // 4, "b": len(mine) // 4}
    schedule = open_calls(333.0, 1.0, mix, random.Random(0), period=mix.period)
    assert len(schedule) % mix.period == 0
    assert Counter(c.name for c in schedule) == {"a": len(schedule) * 3 // 4, "b": len(schedule) // 4}


def test_a_mix_refuses_bad_weights() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Mix([])
    with pytest.raises(ValueError, match="positive"):
        Mix([MixEntry("a", 0, lambda r: Call("a"))])
