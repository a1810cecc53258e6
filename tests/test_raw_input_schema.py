"""Tools with their own input JSON Schema (`@app.tool(input_schema=...)`): served verbatim, enforced by a
JSON Schema validator, bad calls a tool error; run in-process through `Server.handle_request`."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from bemcp import App, Context, Text
from bemcp.protocol.exchange import Exchange, Peer
from bemcp.protocol.server import Server
from bemcp.runtime.runtime import Runtime
from tests.conformance.app_schema import CONTACT_SCHEMA


def _app() -> tuple[App, list[dict[str, Any]]]:
    app = App("raw", version="1.0")
    seen: list[dict[str, Any]] = []

    @app.tool(name="contact", description="Contact someone", input_schema=CONTACT_SCHEMA)
    async def contact(**arguments: Any) -> Text:
        seen.append(arguments)
        return Text("ok")

    @app.tool(
        input_schema={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 10}},
            "required": ["a"],
        }
    )
    def add(a: int, ctx: Context, b: int = 1) -> int:
        assert isinstance(ctx, Context)
        return a + b

    return app, seen


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    rt = Runtime()
    rt.start()
    yield rt
    rt.stop()


async def _rpc(server: Server, method: str, params: dict[str, Any]) -> dict[str, Any]:
    peer = Peer("2025-11-25")
    peer.initialized = True
    res = await server.handle_request(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, Exchange(peer, 1, method, None)
    )
    assert res is not None
    result: dict[str, Any] = res["result"]
    return result


async def _call(server: Server, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return await _rpc(server, "tools/call", {"name": name, "arguments": arguments})


async def test_listing_serves_the_schema_verbatim(runtime: Runtime) -> None:
    app, _ = _app()
    tools = {t["name"]: t for t in (await _rpc(Server(app, runtime), "tools/list", {}))["tools"]}
    assert tools["contact"]["inputSchema"] == CONTACT_SCHEMA
    assert tools["contact"]["description"] == "Contact someone"
    schema = tools["contact"]["inputSchema"]
    assert schema["$defs"]["address"]["$anchor"] == "addressDef"
    assert schema["additionalProperties"] is False
    assert list(schema) == list(CONTACT_SCHEMA)  # key order too


def test_the_served_schema_is_a_copy() -> None:
    mine = copy.deepcopy(CONTACT_SCHEMA)
    app = App("copy")
    tool = app.add_tool(lambda **kw: None, name="t", input_schema=mine)
    mine["properties"]["name"]["type"] = "integer"
    del mine["additionalProperties"]
    assert tool.wire["inputSchema"] == CONTACT_SCHEMA


async def test_valid_call_reaches_the_function(runtime: Runtime) -> None:
    app, seen = _app()
    server = Server(app, runtime)
    args = {"name": "Ada", "contactMethod": "phone", "phone": "123", "address": {"city": "London"}}
    res = await _call(server, "contact", args)
    assert res == {"content": [{"type": "text", "text": "ok"}]}
    assert seen == [args]  # **kwargs: every argument, as sent


async def test_named_parameters_get_their_arguments_and_defaults(runtime: Runtime) -> None:
    app, _ = _app()
    server = Server(app, runtime)
    assert (await _call(server, "add", {"a": 2, "b": 3}))["structuredContent"] == {"result": 5}
    # An absent argument takes the Python default: a schema's "default" is only an annotation.
    assert (await _call(server, "add", {"a": 2}))["structuredContent"] == {"result": 3}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"email": "x", "address": {"city": 5}}, "address.city: 5 is not of type 'string'"),
        ({"email": "x", "zip": "1"}, "(arguments): Additional properties are not allowed ('zip' was unexpected)"),
        ({"contactMethod": "phone", "email": "x"}, "(arguments): 'phone' is a required property"),  # if/then
        ({"name": "Ada"}, "'email' is a required property"),  # else
        ({"email": "x", "contactMethod": "fax"}, "contactMethod: 'fax' is not one of ['phone', 'email']"),
    ],
    ids=["type-in-ref", "additional", "then", "else", "enum"],
)
async def test_invalid_arguments_are_a_tool_error_with_the_path(
    runtime: Runtime, arguments: dict[str, Any], expected: str
) -> None:
    app, seen = _app()
    res = await _call(Server(app, runtime), "contact", arguments)
    assert res["isError"] is True
    text = res["content"][0]["text"]
    assert text.startswith("Invalid arguments for tool contact: ")
    assert expected in text
    assert seen == []


async def test_error_text_is_bounded(runtime: Runtime) -> None:
    app, _ = _app()
    res = await _call(Server(app, runtime), "contact", {f"k{i}": "x" * 1000 for i in range(100)})
    assert res["isError"] is True
    assert len(res["content"][0]["text"]) < 5000


@pytest.mark.parametrize(
    ("schema", "error"),
    [
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "not a valid JSON Schema"),
        ({"type": "object", "required": "a"}, "not a valid JSON Schema"),
        ({"type": "array"}, 'must have "type": "object"'),
        ({"properties": {}}, 'must have "type": "object"'),
        ({"type": "object", "$schema": "https://example.com/mine"}, "is not a known JSON Schema draft"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "does not resolve"),
        ({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}, "does not resolve"),
        ({"type": "object", "properties": {"a": {"type": "string", "default": {1, 2}}}}, "is not JSON"),
    ],
    ids=["bad-type", "bad-required", "not-object", "no-type", "dialect", "ref", "remote-ref", "not-json"],
)
def test_bad_schema_is_rejected_at_registration(schema: dict[str, Any], error: str) -> None:
    app = App("bad")
    with pytest.raises(ValueError, match="tool t: ") as info:
        app.add_tool(lambda **kw: None, name="t", input_schema=schema)
    assert error in str(info.value)
    assert app.tools == {}


def test_other_drafts_and_anchors_are_accepted() -> None:
    app = App("ok")
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "definitions": {"x": {}},
        "properties": {"a": {"$ref": "#/definitions/x"}},
    }
    assert app.add_tool(lambda a=None: a, name="d7", input_schema=draft7).wire["inputSchema"] == draft7
    anchored = {
        "type": "object",
        "$defs": {"x": {"$anchor": "ex", "type": "string"}},
        "properties": {"a": {"$ref": "#ex"}},
    }
    app.add_tool(lambda a=None: a, name="anchor", input_schema=anchored)


def test_function_must_fit_the_schema() -> None:
    app = App("fit")
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}

    def only_a(a: str) -> None: ...

    with pytest.raises(TypeError, match=r"declares b, which .*only_a has no parameter"):
        app.add_tool(only_a, input_schema=schema)

    def needs_c(a: str, b: str, c: str) -> None: ...

    with pytest.raises(TypeError, match="needs c, which input_schema does not declare"):
        app.add_tool(needs_c, input_schema=schema)

    def positional(a: str, /, b: str) -> None: ...

    with pytest.raises(TypeError, match="no \\*args or positional-only"):
        app.add_tool(positional, input_schema=schema)

    def clash(a: str, b: str, ctx: Context) -> None: ...

    with pytest.raises(TypeError, match="Context parameter"):
        app.add_tool(clash, input_schema={**schema, "properties": {**schema["properties"], "ctx": {}}})

    def kwargs(a: str, **rest: Any) -> None: ...

    app.add_tool(kwargs, input_schema=schema)  # **kwargs takes what has no parameter
    assert set(app.tools) == {"kwargs"}


async def test_typed_tools_keep_their_pydantic_validation(runtime: Runtime) -> None:
    app = App("typed")

    @app.tool
    def mul(a: int, b: int) -> int:
        return a * b

    res = await _call(Server(app, runtime), "mul", {"a": "six", "b": 2})
    assert res["isError"] is True
    assert "a: Input should be a valid integer" in res["content"][0]["text"]
