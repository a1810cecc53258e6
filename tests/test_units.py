"""Unit tests without subprocesses: schemas, JSON-RPC framing, config, requestState, App, Server dispatch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Annotated, Any

import pydantic
import pytest
from pydantic import BaseModel, Field

from bemcp import App, CompletionRequest, Context, Text, ToolError, ToolResult
from bemcp.errors import InvalidParams
from bemcp.protocol import inputrequests, jsonrpc
from bemcp.protocol.exchange import Exchange, Peer
from bemcp.protocol.jsonrpc import Kind
from bemcp.protocol.server import Server
from bemcp.runtime.runtime import Runtime, RuntimeConfig
from bemcp.schema import analyse, output_for

# -- schema.analyse -------------------------------------------------------------


def test_analyse_types_defaults_required_and_context() -> None:
    def fn(a: int, ctx: Context, b: str = "x", c: list[float] | None = None, flag: bool = False) -> None: ...

    sig = analyse(fn, "fn_arguments")
    assert sig.context_param == "ctx"
    assert sig.param_names == ("a", "b", "c", "flag")
    props = sig.input_schema["properties"]
    assert set(props) == {"a", "b", "c", "flag"}  # the Context parameter is not part of the schema
    assert sig.input_schema["type"] == "object"
    assert sig.input_schema["required"] == ["a"]
    assert props["a"]["type"] == "integer"
    assert props["b"] == {"default": "x", "title": "B", "type": "string"}
    assert props["c"]["default"] is None
    assert {"type": "array", "items": {"type": "number"}} in props["c"]["anyOf"]
    assert props["flag"]["type"] == "boolean"
    assert sig.bind({"a": "3", "unknown": 1}) == {"a": 3, "b": "x", "c": None, "flag": False}
    with pytest.raises(pydantic.ValidationError):
        sig.bind({"b": "no a"})


def test_analyse_without_parameters() -> None:
    async def only_ctx(ctx: Context) -> str:
        return ""

    sig = analyse(only_ctx, "m")
    assert sig.input_schema == {"type": "object", "properties": {}}
    assert sig.context_param == "ctx"
    assert sig.validator is None
    assert sig.bind({"ignored": 1}) == {}


def test_analyse_rejects_var_args() -> None:
    def star(*args: int) -> None: ...

    def starstar(**kwargs: int) -> None: ...

    with pytest.raises(TypeError, match=r"\*args"):
        analyse(star, "m")
    with pytest.raises(TypeError, match=r"\*args"):
        analyse(starstar, "m")


# -- schema.output_for ----------------------------------------------------------


class Point(BaseModel):
    x: int
    y: int


def test_output_for_wraps_non_objects() -> None:
    def f() -> str:
        return ""

    out = output_for(f)
    assert out is not None
    assert out.wrapped
    assert out.schema == {"type": "object", "properties": {"result": {"type": "string"}}, "required": ["result"]}
    assert out.structure("hi") == {"result": "hi"}
    with pytest.raises(pydantic.ValidationError):
        out.structure(["not", "a", "string"])


def test_output_for_model_is_not_wrapped() -> None:
    def f() -> Point:
        return Point(x=1, y=2)

    out = output_for(f)
    assert out is not None
    assert not out.wrapped
    assert out.schema["type"] == "object"
    assert set(out.schema["properties"]) == {"x", "y"}
    assert out.structure(Point(x=1, y=2)) == {"x": 1, "y": 2}


def test_output_for_list_of_models_keeps_defs_at_the_root() -> None:
    def f() -> list[Point]:
        return []

    out = output_for(f)
    assert out is not None and out.wrapped
    assert "Point" in out.schema["$defs"]
    assert out.schema["properties"]["result"]["items"] == {"$ref": "#/$defs/Point"}
    assert out.structure([Point(x=0, y=1)]) == {"result": [{"x": 0, "y": 1}]}


def test_output_for_content_and_untyped_returns_none() -> None:
    def text() -> Text: ...
    def result() -> ToolResult: ...
    def texts() -> list[Text]: ...
    def maybe() -> Text | None: ...
    def nothing() -> None: ...
    def untyped(): ...  # deliberately unannotated
    def anything() -> Any: ...

    for fn in (text, result, texts, maybe, nothing, untyped, anything):
        assert output_for(fn) is None, fn.__name__


# -- jsonrpc.classify -----------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "kind"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, Kind.REQUEST),
        ({"jsonrpc": "2.0", "id": "a", "method": "ping", "params": {}}, Kind.REQUEST),
        ({"jsonrpc": "2.0", "id": 0, "method": "x"}, Kind.REQUEST),
        ({"jsonrpc": "2.0", "method": "notifications/initialized"}, Kind.NOTIFICATION),
        ({"jsonrpc": "2.0", "id": 1, "result": {}}, Kind.RESPONSE),
        ({"jsonrpc": "2.0", "id": "s-1", "error": {"code": 1, "message": "m"}}, Kind.RESPONSE),
    ],
)
def test_classify_kinds(msg: Any, kind: Kind) -> None:
    assert jsonrpc.classify(msg) == (kind, "")


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        ([], "message must be a JSON object"),
        ("ping", "message must be a JSON object"),
        ({"id": 1, "method": "ping"}, 'jsonrpc must be "2.0"'),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, 'jsonrpc must be "2.0"'),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, "method must be a string"),
        ({"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1]}, "params must be an object"),
        ({"jsonrpc": "2.0", "id": True, "method": "x"}, "id must be a string or an integer"),
        ({"jsonrpc": "2.0", "id": None, "method": "x"}, "id must be a string or an integer"),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "x"}, "id must be a string or an integer"),
        ({"jsonrpc": "2.0", "id": [1], "method": "x"}, "id must be a string or an integer"),
        ({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {}}, "a response has either result or error"),
        ({"jsonrpc": "2.0", "id": 1}, "not a request, notification or response"),
        ({"jsonrpc": "2.0", "result": {}}, "not a request, notification or response"),
    ],
)
def test_classify_invalid(msg: Any, reason: str) -> None:
    assert jsonrpc.classify(msg) == (Kind.INVALID, reason)


def test_invalid_request_and_parse_error_ids() -> None:
    assert jsonrpc.invalid_request({"id": 7}, "r") == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32600, "message": "Invalid request: r"},
    }
    assert jsonrpc.invalid_request({"id": True}, "r")["id"] is None
    assert jsonrpc.invalid_request([1], "r")["id"] is None
    assert jsonrpc.parse_error("bad") == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse error: bad"},
    }


# -- inputrequests.StateSigner -------------------------------------------------------------


BINDING = inputrequests.binding_of("tools/call", {"name": "ask", "arguments": {"q": "x"}})
ANSWERS = {"elicit": {"action": "accept", "content": {"answer": "42"}}}


def test_state_round_trip() -> None:
    signer = inputrequests.StateSigner()
    token = signer.seal(BINDING, ANSWERS)
    assert signer.open(token, BINDING) == ANSWERS


def test_binding_ignores_key_order_but_not_values() -> None:
    a = inputrequests.binding_of("tools/call", {"name": "t", "arguments": {"a": 1, "b": 2}})
    b = inputrequests.binding_of("tools/call", {"name": "t", "arguments": {"b": 2, "a": 1}})
    c = inputrequests.binding_of("tools/call", {"name": "t", "arguments": {"a": 1, "b": 3}})
    d = inputrequests.binding_of("prompts/get", {"name": "t", "arguments": {"a": 1, "b": 2}})
    assert a == b
    assert len({a, c, d}) == 3


def _flip(s: str, i: int) -> str:
    return s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1 :]


def test_state_tampering_is_rejected() -> None:
    signer = inputrequests.StateSigner()
    token = signer.seal(BINDING, ANSWERS)
    body, mac = token.split(".")
    for bad in (_flip(body, 5) + "." + mac, body + "." + _flip(mac, 3)):
        with pytest.raises(InvalidParams, match="signature mismatch"):
            signer.open(bad, BINDING)
    with pytest.raises(InvalidParams, match="signature mismatch"):
        inputrequests.StateSigner().open(token, BINDING)  # another process's key
    for junk in (None, 5, "no-dot", "a.b.c"):
        with pytest.raises(InvalidParams, match="invalid requestState"):
            signer.open(junk, BINDING)


def test_state_bound_to_its_request() -> None:
    signer = inputrequests.StateSigner()
    token = signer.seal(BINDING, ANSWERS)
    other = inputrequests.binding_of("tools/call", {"name": "ask", "arguments": {"q": "y"}})
    with pytest.raises(InvalidParams, match="different request") as exc:
        signer.open(token, other)
    assert exc.value.code == -32602


def test_state_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = inputrequests.StateSigner(b"k" * 32)
    now = 1_000_000.0
    monkeypatch.setattr(inputrequests.time, "time", lambda: now)
    token = signer.seal(BINDING, ANSWERS)
    monkeypatch.setattr(inputrequests.time, "time", lambda: now + inputrequests.STATE_TTL_S - 1)
    assert signer.open(token, BINDING) == ANSWERS
    monkeypatch.setattr(inputrequests.time, "time", lambda: now + inputrequests.STATE_TTL_S + 1)
    with pytest.raises(InvalidParams, match="expired"):
        signer.open(token, BINDING)


# -- App decorators -----------------------------------------------------------------


def test_tool_annotations_title_and_description() -> None:
    app = App("t")

    @app.tool(read_only=True, destructive=False, idempotent=True, open_world=False, title="Look up")
    def lookup(key: str) -> str:
        """Find a value.

        Longer text.
        """
        return key

    @app.tool
    def plain(x: int) -> int:
        return x

    @app.tool(name="renamed", description="Given text wins.", annotations={"openWorldHint": True})
    def documented() -> None:
        """Docstring loses."""

    wire = app.tools["lookup"].wire
    assert wire["annotations"] == {
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": False,
        "title": "Look up",
    }
    assert wire["title"] == "Look up"
    assert wire["description"] == "Find a value.\n\nLonger text."
    assert wire["inputSchema"]["required"] == ["key"]
    assert wire["outputSchema"]["properties"]["result"] == {"type": "string"}
    assert app.tools["lookup"].read_only
    assert "annotations" not in app.tools["plain"].wire
    assert "description" not in app.tools["plain"].wire
    assert not app.tools["plain"].read_only
    assert "documented" not in app.tools
    assert app.tools["renamed"].wire["description"] == "Given text wins."
    assert app.tools["renamed"].wire["annotations"] == {"openWorldHint": True}
    assert "outputSchema" not in app.tools["renamed"].wire


def test_resource_templates_match_only_their_shape() -> None:
    app = App("t")

    @app.resource("demo://greeting", mime_type="text/plain")
    def greeting() -> str:
        """Hello."""
        return "hi"

    @app.resource("demo://items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.resource("files://a.b/{folder}/{name}")
    def file(folder: str, name: str) -> str:
        return ""

    assert app.resources["demo://greeting"].wire == {
        "name": "greeting",
        "description": "Hello.",
        "mimeType": "text/plain",
        "uri": "demo://greeting",
    }
    assert app.templates["demo://items/{item_id}"].wire["uriTemplate"] == "demo://items/{item_id}"
    found = app.find_resource("demo://greeting")
    assert found is not None and found[0].fn is greeting and found[1] == {}
    found = app.find_resource("demo://items/17")
    assert found is not None and found[0].fn is item and found[1] == {"item_id": "17"}
    found = app.find_resource("files://a.b/docs/readme.md")
    assert found is not None and found[1] == {"folder": "docs", "name": "readme.md"}
    for uri in (
        "demo://items/",
        "demo://items/1/2",
        "demo://items",
        "xdemo://items/1",
        "demo://items/1?x",  # matches: a variable takes anything but '/', so check the value
        "files://aXb/docs/readme.md",  # the '.' in the template is literal
        "files://a.b/readme.md",
        "demo://nothing",
    ):
        got = app.find_resource(uri)
        if uri == "demo://items/1?x":
            assert got is not None and got[1] == {"item_id": "1?x"}
        else:
            assert got is None, uri


def test_prompt_arguments() -> None:
    app = App("t")

    @app.prompt(title="Review")
    def review(
        code: Annotated[str, Field(description="The code to review")],
        ctx: Context,
        language: Annotated[str, Field(description="Programming language")] = "python",
        strict: bool = False,
    ) -> str:
        """Review some code."""
        return code

    wire = app.prompts["review"].wire
    assert wire == {
        "name": "review",
        "title": "Review",
        "description": "Review some code.",
        "arguments": [
            {"name": "code", "required": True, "description": "The code to review"},
            {"name": "language", "required": False, "description": "Programming language"},
            {"name": "strict", "required": False},
        ],
    }


# -- Server.handle_request in-process -------------------------------------------------


def _sync_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("bemcp-sync")}


def _unit_app() -> App:
    app = App("unit", version="9.9")

    @app.tool
    def mul(a: int, b: int) -> int:
        return a * b

    @app.tool
    def where() -> str:
        return threading.current_thread().name

    @app.tool
    async def refuse() -> str:
        raise ToolError("nope, not today")

    @app.tool
    async def boom() -> str:
        raise RuntimeError("kaboom")

    @app.prompt
    def greet(name: str) -> str:
        return f"hi {name}"

    @app.completion
    async def complete(req: CompletionRequest) -> list[str]:
        if req.argument == "few":
            return ["a", "b"]
        return [f"{req.ref}:{req.value}{i}" for i in range(150)]

    return app


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    rt = Runtime()
    rt.start()
    yield rt
    rt.stop()


def _peer() -> Peer:
    peer = Peer("2025-11-25")
    peer.initialized = True
    return peer


async def _call(server: Server, method: str, params: dict[str, Any], req_id: int = 1) -> dict[str, Any]:
    msg = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
    res = await server.handle_request(msg, Exchange(_peer(), req_id, method, None))
    assert res is not None
    assert res["id"] == req_id
    return res


async def test_sync_tool_runs_in_the_pool(runtime: Runtime) -> None:
    server = Server(_unit_app(), runtime)
    res = await _call(server, "tools/call", {"name": "mul", "arguments": {"a": 6, "b": 7}})
    assert res["result"] == {"content": [{"type": "text", "text": "42"}], "structuredContent": {"result": 42}}
    res = await _call(server, "tools/call", {"name": "where", "arguments": {}})
    assert res["result"]["structuredContent"]["result"].startswith("bemcp-sync")


async def test_the_call_path_s_inlined_admission_and_timing_balance() -> None:
    """`_run` inlines Admission.enter()/leave() and the histogram update: whatever a call ends in (a result, a
    tool error, an exception, a queued slot), the slot comes back and the call is timed once."""
    rt = Runtime(RuntimeConfig(max_concurrency=2, task_log=False))
    rt.start()
    try:
        server = Server(_unit_app(), rt)
        adm = rt.admission
        assert adm.lane == 2  # a fixed limit: the fast lane is open
        for name in ("mul", "refuse", "boom"):
            await _call(server, "tools/call", {"name": name, "arguments": {"a": 1, "b": 2}})
        # Four sync calls at once through a limit of two: two take the lane, two queue for a slot.
        calls = [
            asyncio.create_task(_call(server, "tools/call", {"name": "mul", "arguments": {"a": i, "b": 1}}, i))
            for i in range(4)
        ]
        await asyncio.sleep(0)
        assert (adm.in_flight, adm.queued, adm.lane) == (2, 2, 0)  # the lane closes while anyone queues
        results = await asyncio.gather(*calls)
        assert [r["result"]["structuredContent"]["result"] for r in results] == [0, 1, 2, 3]
        assert (adm.in_flight, adm.queued, adm.lane, adm.peak_in_flight) == (0, 0, 2, 2)
        assert adm.admitted == 7
        assert rt.metrics.latency.count("tools/call") == 7
        assert rt.calls.in_flight == 0
    finally:
        rt.stop()


async def test_invalid_arguments_are_a_tool_error(runtime: Runtime) -> None:
    server = Server(_unit_app(), runtime)
    res = (await _call(server, "tools/call", {"name": "mul", "arguments": {"a": "six"}}))["result"]
    assert res["isError"] is True
    text = res["content"][0]["text"]
    assert text.startswith("Invalid arguments for tool mul: ")
    assert "a: Input should be a valid integer" in text
    assert "b: Field required" in text


async def test_tool_error_message_is_shown(runtime: Runtime) -> None:
    server = Server(_unit_app(), runtime)
    res = (await _call(server, "tools/call", {"name": "refuse"}))["result"]
    assert res == {"content": [{"type": "text", "text": "nope, not today"}], "isError": True}


async def test_unexpected_exception_hides_traceback_unless_debug(runtime: Runtime) -> None:
    server = Server(_unit_app(), runtime)
    res = (await _call(server, "tools/call", {"name": "boom", "arguments": {}}))["result"]
    assert res["isError"] is True
    assert res["content"][0]["text"] == "Tool boom failed: RuntimeError: kaboom"
    assert "Traceback" not in res["content"][0]["text"]

    debug_rt = Runtime(RuntimeConfig(debug=True))
    debug_rt.start()
    try:
        res = (await _call(Server(_unit_app(), debug_rt), "tools/call", {"name": "boom"}))["result"]
    finally:
        debug_rt.stop()
    text = res["content"][0]["text"]
    assert text.startswith("Tool boom failed: RuntimeError: kaboom\nTraceback (most recent call last):")
    assert 'raise RuntimeError("kaboom")' in text


async def test_unknown_method_and_unknown_tool(runtime: Runtime) -> None:
    server = Server(_unit_app(), runtime)
    res = await _call(server, "tools/frobnicate", {})
    assert res["error"] == {
        "code": -32601,
        "message": "Method not found: tools/frobnicate",
        "data": {"method": "tools/frobnicate"},
    }
    res = await _call(server, "tools/call", {"name": "missing"})
    assert res["error"]["code"] == -32602
    assert res["error"]["data"] == {"name": "missing"}


async def test_request_before_initialize(runtime: Runtime) -> None:
    server = Server(_unit_app(), runtime)
    msg = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
    res = await server.handle_request(msg, Exchange(Peer(), 3, "tools/list", None))
    assert res is not None
    assert res["error"]["code"] == -32600
    res = await server.handle_request({"jsonrpc": "2.0", "id": 4, "method": "ping"}, Exchange(Peer(), 4, "ping", None))
    assert res == {"jsonrpc": "2.0", "id": 4, "result": {}}


async def test_completion_caps_values_at_100(runtime: Runtime) -> None:
    server = Server(_unit_app(), runtime)
    params = {"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "name", "value": "x"}}
    comp = (await _call(server, "completion/complete", params))["result"]["completion"]
    assert len(comp["values"]) == 100
    assert comp["values"][0] == "greet:x0"
    assert comp["values"][-1] == "greet:x99"
    assert comp["total"] == 150
    assert comp["hasMore"] is True
    few = {"ref": {"type": "ref/resource", "uri": "demo://items/{id}"}, "argument": {"name": "few", "value": ""}}
    comp = (await _call(server, "completion/complete", few))["result"]["completion"]
    assert comp == {"values": ["a", "b"], "total": 2, "hasMore": False}
    bad = {"ref": {"type": "ref/prompt", "name": "nope"}, "argument": {"name": "n", "value": ""}}
    assert (await _call(server, "completion/complete", bad))["error"]["code"] == -32602


def test_runtime_start_is_idempotent_and_stop_joins_threads() -> None:
    baseline = _sync_threads()
    rt = Runtime(RuntimeConfig(sync_workers=4))
    rt.start()
    pool = rt._pool
    assert pool is not None and rt.running
    rt.start()
    assert rt._pool is pool

    async def use_pool() -> set[str]:
        names = await asyncio.gather(*(rt.run_sync(lambda: threading.current_thread().name, {}) for _ in range(8)))
        return set(names)

    names = asyncio.run(use_pool())
    assert names and all(n.startswith("bemcp-sync") for n in names)
    assert _sync_threads() - baseline  # the pool's threads exist now
    rt.stop()
    assert not rt.running
    assert _sync_threads() - baseline == set()
    rt.stop()  # a second stop is a no-op

    async def after_stop() -> None:
        await rt.run_sync(lambda: None, {})

    with pytest.raises(RuntimeError, match="not started"):
        asyncio.run(after_stop())
