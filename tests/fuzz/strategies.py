"""Hypothesis strategies for fuzzing BE-MCP with JSON-RPC traffic (both eras, both transports).

Every strategy produces a `Fuzz` item: either a JSON value to encode (`payload`) or a raw
line/body (`Raw`). Structured items built from a known template carry an `expect` tag
that the harness checks when the message reaches the server unchanged; mutated items are
only held to the generic rules (one well-formed answer per request, none for
notifications and responses).

Ids are fixed up by the harness (`test_fuzz.prepare`) so every structured request in a
batch has its own id; a `PREV_ID` placeholder becomes the id of the batch's previous
request (used by `notifications/cancelled`). `message_group` adds cheap variants of each
drawn item, derived from a drawn seed, which keeps generation fast enough for 10,000+
messages per transport in seconds.
"""

from __future__ import annotations

import functools
import json
import random
import sys
from dataclasses import dataclass, replace
from typing import Any

import orjson
from hypothesis import strategies as st

MODERN_VERSION = "2026-07-28"
LEGACY_VERSION = "2025-11-25"
META_PV = "io.modelcontextprotocol/protocolVersion"
META_CAPS = "io.modelcontextprotocol/clientCapabilities"
META_INFO = "io.modelcontextprotocol/clientInfo"
META_LOG = "io.modelcontextprotocol/logLevel"

# Error codes.
PARSE = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL = -32603
RESOURCE_NOT_FOUND = -32002
HEADER_MISMATCH = -32020
MISSING_CAPABILITY = -32021
UNSUPPORTED_VERSION = -32022

MCP_METHODS = (
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
)
# Real MCP names the server does not serve (client-side, removed or not implemented). Not subscriptions/listen:
# it is served (2026-07-28), and a well-formed one holds its stream open, which the oracle cannot wait out.
OTHER_MCP_METHODS = (
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/list",
    "tasks/cancel",
    "tasks/result",
)
NOTIFICATION_METHODS = (
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/tools/list_changed",
    "notifications/resources/updated",
)
LEGACY_ONLY = frozenset({"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"})
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
DEMO_TOOLS = ("echo", "add", "point", "slow", "sleep", "block", "fail", "log", "ask", "think", "server_health")
# Tools whose numeric arguments decide how long they run: capped by `sanitize`.
SLOW_TOOLS = {"sleep": {"seconds": 0.02}, "block": {"seconds": 0.01}, "slow": {"steps": 2, "delay": 0.005}}


class _PrevId:
    def __repr__(self) -> str:
        return "PREV_ID"


PREV_ID: Any = _PrevId()
"""Placeholder for "the id of the previous request in this batch"."""


@dataclass(frozen=True)
class Raw:
    """Bytes sent as they are (one stdio line without its newline, or one HTTP body)."""

    data: bytes


@dataclass(frozen=True)
class Expect:
    """What a request built from a template must be answered with."""

    kind: str  # "ok" | "error" | "tool_error" | "bad_args" | "input_required" | "any_result"
    codes: frozenset[int] = frozenset()
    echo: str | None = None  # "ok": the echo tool's text must come back
    supported: bool = False  # "error": data.supported must list the supported versions
    alt_modern: frozenset[int] = frozenset()  # extra codes allowed on modern HTTP (header rules)


def encode(value: Any) -> bytes:
    """Compact JSON on one line; past orjson's nesting limit (254), the stdlib encoder."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 10_000))
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        finally:
            sys.setrecursionlimit(limit)


def show(value: Any, limit: int = 300) -> str:
    """A short, always-safe rendering of a message for assertion messages."""
    if isinstance(value, Raw):
        return repr(value.data[:limit])
    try:
        return encode(value)[:limit].decode(errors="replace")
    except (TypeError, ValueError, RecursionError):
        return f"<{type(value).__name__}>"


@dataclass(frozen=True)
class Fuzz:
    payload: Any  # a JSON value, or Raw
    label: str
    expect: Expect | None = None
    modern: bool = False  # sent in the 2026-07-28 era (HTTP: with the routing headers)

    def __repr__(self) -> str:
        return f"Fuzz({self.label}, {show(_resolve_prev(self.payload), 200)})"


def err(*codes: int, supported: bool = False) -> Expect:
    return Expect("error", frozenset(codes), supported=supported)


OK = Expect("ok")
ANY_RESULT = Expect("any_result")
TOOL_ERROR = Expect("tool_error")
BAD_ARGS = Expect("bad_args")

# -- JSON values -------------------------------------------------------------------------

I64 = (-(2**63), 2**63 - 1)
ints = st.integers(*I64) | st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63), 2**64 - 1])
floats = st.floats(allow_nan=False, allow_infinity=False)
texts = st.text(max_size=12) | st.sampled_from(
    ["", " ", "\n", "\r\n", "\u2028", "\x00", "🦀", "é", "\ufeff", "a\nb", "\t", "null", "{}", "\\", '"']
)
json_leaf = st.none() | st.booleans() | ints | floats | texts
json_values = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(texts, kids, max_size=3),
    max_leaves=5,
)
json_objects = st.dictionaries(texts, json_values, max_size=3)
non_objects = json_leaf | st.lists(json_values, max_size=4)

valid_ids = ints | st.text(max_size=12) | st.sampled_from(["", "0", "1", "s-1", "🦀", "a\nb", " "])
invalid_ids = (
    st.none()
    | st.booleans()
    | floats
    | st.sampled_from([0.0, 1.0, -1.5, 1e300])
    | st.lists(json_leaf, max_size=3)
    | st.dictionaries(texts, json_leaf, max_size=3)
)
junk_methods = st.text(max_size=16).map(lambda m: m if m not in MCP_METHODS else m + "!") | st.sampled_from(
    [
        "",
        " ",
        "tools/call ",
        " tools/list",
        "TOOLS/LIST",
        "tools/",
        "tools",
        "/",
        "rpc.discover",
        "tools/list\n",
        "tools\u2215list",
        "t\u043e\u043els/list",  # Cyrillic o
        "\x00",
        "🦀/🦀",
        "notifications/initialized",
        "tools/call/extra",
        "__proto__",
        "constructor",
    ]
)


def deep(depth: int, leaf: Any = 0) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


# Up to and past orjson's parse limit (1024) and Python's repr recursion limit (1000).
deep_values = st.builds(deep, st.integers(1, 40) | st.sampled_from([255, 256, 600, 990, 1000, 1010, 1030]), json_leaf)
huge_strings = st.builds(
    lambda s, n: s * n, st.sampled_from(["a", "é", "🦀", "\\", '"', "\n", "ab\x00"]), st.integers(1_000, 60_000)
)

# -- envelopes ---------------------------------------------------------------------------

client_caps: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [{}, {"sampling": {}}, {"elicitation": {}}, {"sampling": {}, "elicitation": {}, "roots": {}}]
)


@st.composite
def modern_meta(draw: st.DrawFn) -> dict[str, Any]:
    meta: dict[str, Any] = {META_PV: MODERN_VERSION, META_CAPS: draw(client_caps)}
    if draw(st.booleans()):
        meta[META_INFO] = {"name": "fuzz", "version": "0"}
    if draw(st.integers(0, 5)) == 0:
        meta[META_LOG] = draw(st.sampled_from(LOG_LEVELS))
    return meta


def with_meta(params: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any]:
    out = dict(params or {})
    out["_meta"] = {**out.get("_meta", {}), **meta}
    return out


def request(method: str, params: Any = None, req_id: Any = 0) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


# -- valid requests (legacy params; `modernize` adds the envelope) -------------------------

short_text = st.text(max_size=40)
small_int = st.integers(-1000, 1000)


@st.composite
def tool_call(draw: st.DrawFn) -> tuple[dict[str, Any], Expect | None]:
    """A well-typed call of one of the demo app's tools, with what it must return."""
    name = draw(st.sampled_from(DEMO_TOOLS))
    expect: Expect | None = OK
    args: dict[str, Any]
    if name == "echo":
        text = draw(short_text | huge_strings)
        args = {"text": text}
        expect = Expect("ok", echo=text)
    elif name == "add":
        args = {"a": draw(ints | st.sampled_from([2**64 - 1, 2**63 - 1])), "b": draw(small_int)}
        expect = ANY_RESULT  # past 64 bits the sum cannot be encoded: a tool error, not -32603
    elif name == "point":
        args = {"x": draw(small_int), "y": draw(small_int)}
    elif name == "slow":
        args = {"steps": draw(st.integers(0, 2)), "delay": draw(st.sampled_from([0, 0.001, 0.005]))}
    elif name == "sleep":
        args = {"seconds": draw(st.sampled_from([0, 0.001, 0.01, -1]))}
    elif name == "block":
        args = {"seconds": draw(st.sampled_from([0, 0.001, 0.01]))}
        if draw(st.integers(0, 9)) == 0:
            args["seconds"] = -1  # time.sleep(-1) raises: a tool error
            expect = TOOL_ERROR
    elif name == "fail":
        mode = draw(st.sampled_from(["raise", "tool", "other"]))
        args = {} if mode == "raise" and draw(st.booleans()) else {"mode": mode}
        expect = TOOL_ERROR
    elif name == "log":
        level = draw(st.sampled_from([*LOG_LEVELS, "bogus", "", "DEBUG"]))
        args = {"level": level, "message": draw(short_text)}
        expect = OK if level in LOG_LEVELS else TOOL_ERROR
    elif name in ("ask", "think"):
        args = {"question" if name == "ask" else "prompt": draw(short_text)}
        expect = None  # depends on the client's capabilities and answers
    else:  # server_health
        args = {}
    params: dict[str, Any] = {"name": name, "arguments": args}
    if name in ("slow", "echo") and draw(st.booleans()):
        params["_meta"] = {"progressToken": draw(valid_ids | json_values)}
    if not args and draw(st.booleans()):
        del params["arguments"]
    return params, expect


wrong_typed = json_values.filter(lambda v: not isinstance(v, str)) | deep_values


@st.composite
def bad_tool_call(draw: st.DrawFn) -> tuple[dict[str, Any], Expect | None]:
    """A demo tool called with wrongly typed, missing or extra arguments."""
    cases: list[tuple[str, dict[str, Any]]] = [
        ("echo", {"text": "x"}),
        ("add", {"a": 1, "b": 2}),
        ("point", {"x": 1, "y": 2}),
        ("log", {"level": "info", "message": "m"}),
        ("fail", {"mode": "tool"}),
        ("sleep", {"seconds": 0}),
        ("block", {"seconds": 0}),
        ("slow", {"steps": 1, "delay": 0}),
        ("ask", {"question": "q"}),
    ]
    name, args = draw(st.sampled_from(cases))
    how = draw(st.sampled_from(["retype", "drop", "retype_all"]))
    args = dict(args)
    key = draw(st.sampled_from(sorted(args)))
    if how == "drop":
        if name == "fail" or (name == "slow" and key == "delay"):
            return {"name": name, "arguments": args}, None  # optional argument: still valid
        del args[key]
    elif how == "retype":
        args[key] = draw(_wrong_for(name, key))
    else:
        for k in args:
            args[k] = draw(_wrong_for(name, k))
    if draw(st.booleans()):
        args[draw(texts)] = draw(json_values)  # an extra argument is ignored, not an error
    if name in ("ask", "think") and draw(st.booleans()):
        return {"name": name, "arguments": args}, None
    return {"name": name, "arguments": args}, BAD_ARGS


def _wrong_for(name: str, key: str) -> st.SearchStrategy[Any]:
    if key in ("text", "level", "message", "mode", "question", "prompt"):
        return wrong_typed  # not a string
    # Numbers: anything that cannot be read as a number (pydantic is lax about numeric strings).
    return st.one_of(
        st.none(),
        st.lists(json_leaf, max_size=3),
        st.dictionaries(texts, json_leaf, max_size=3),
        deep_values.filter(lambda v: not isinstance(v, (int, float))),
        st.sampled_from(["abc", "", "one", "1.5.5", "--1", "0x", "🦀"]),
        st.just(1.5) if key in ("a", "b", "x", "y", "steps") else st.just("nope"),
    )


@st.composite
def valid_request(draw: st.DrawFn) -> tuple[str, dict[str, Any] | None, Expect | None]:
    """(method, params, expectation) for a legacy-era request the demo app serves."""
    method = draw(st.sampled_from(MCP_METHODS))
    params: dict[str, Any] | None = None
    expect: Expect | None = OK
    if method == "initialize":
        params = {
            "protocolVersion": draw(st.sampled_from([LEGACY_VERSION, "2025-06-18", "2024-11-05", "1900-01-01"])),
            "capabilities": draw(client_caps),
            "clientInfo": {"name": "fuzz", "version": "0"},
        }
        if draw(st.integers(0, 3)) == 0:
            params["protocolVersion"] = draw(st.none() | ints | st.lists(ints, max_size=2))
            expect = err(INVALID_PARAMS)
    elif method == "tools/call":
        params, expect = draw(st.one_of(tool_call(), bad_tool_call(), _unknown_tool()))
    elif method == "resources/read":
        uri_cases: list[tuple[str, Expect]] = [
            ("demo://greeting", OK),
            ("demo://items/7", OK),
            ("demo://items/-3", OK),
            ("demo://items/abc", err(INVALID_PARAMS)),
            ("demo://nope", err(RESOURCE_NOT_FOUND, INVALID_PARAMS)),
            ("", err(RESOURCE_NOT_FOUND, INVALID_PARAMS)),
        ]
        uri, expect = draw(st.sampled_from(uri_cases))
        params = {"uri": uri}
        if draw(st.integers(0, 4)) == 0:
            params = {"uri": draw(non_objects.filter(lambda v: not isinstance(v, str)))}
            expect = err(INVALID_PARAMS)
    elif method in ("resources/subscribe", "resources/unsubscribe"):
        params = {"uri": draw(st.sampled_from(["demo://greeting", "x"]))}
    elif method == "prompts/get":
        prompt_cases: list[tuple[dict[str, Any], Expect]] = [
            ({"name": "greet", "arguments": {"name": "bob"}}, OK),
            ({"name": "greet", "arguments": {"name": 5}}, err(INVALID_PARAMS)),
            ({"name": "greet", "arguments": {}}, err(INVALID_PARAMS)),
            ({"name": "greet", "arguments": "bob"}, err(INVALID_PARAMS)),
            ({"name": "nope"}, err(INVALID_PARAMS)),
            ({"name": 5}, err(INVALID_PARAMS)),
            ({}, err(INVALID_PARAMS)),
        ]
        params, expect = draw(st.sampled_from(prompt_cases))
    elif method == "completion/complete":
        completion_cases: list[tuple[dict[str, Any], Expect]] = [
            ({"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "name", "value": "b"}}, OK),
            (
                {
                    "ref": {"type": "ref/resource", "uri": "demo://items/{item_id}"},
                    "argument": {"name": "item_id", "value": ""},
                },
                OK,
            ),
            (
                {"ref": {"type": "ref/prompt", "name": "nope"}, "argument": {"name": "n", "value": ""}},
                err(INVALID_PARAMS),
            ),
            ({"ref": {"type": "ref/other"}, "argument": {"name": "n", "value": ""}}, err(INVALID_PARAMS)),
            ({"ref": "greet", "argument": {}}, err(INVALID_PARAMS)),
            ({}, err(INVALID_PARAMS)),
        ]
        params, expect = draw(st.sampled_from(completion_cases))
    elif method == "logging/setLevel":
        level = draw(st.sampled_from(LOG_LEVELS) | json_values)
        params = {"level": level}
        expect = OK if isinstance(level, str) and level in LOG_LEVELS else err(INVALID_PARAMS)
    elif method == "server/discover":
        expect = err(INVALID_PARAMS)  # without the envelope: "needs the 2026-07-28 _meta envelope"
    elif method in ("tools/list", "resources/list", "resources/templates/list", "prompts/list"):
        if draw(st.booleans()):
            params = {"cursor": draw(st.text(max_size=8))} if draw(st.booleans()) else {}
    elif draw(st.booleans()):
        params = {}
    return method, params, expect


@st.composite
def _unknown_tool(draw: st.DrawFn) -> tuple[dict[str, Any], Expect | None]:
    name = draw(
        st.text(max_size=20).filter(lambda n: n not in DEMO_TOOLS)
        | st.sampled_from(["Echo", "echo ", "", "server_health2"])
    )
    if draw(st.integers(0, 4)) == 0:
        return {"name": draw(non_objects.filter(lambda v: not isinstance(v, str))), "arguments": {}}, err(
            INVALID_PARAMS
        )
    if draw(st.integers(0, 4)) == 0:
        return {"name": "echo", "arguments": draw(non_objects.filter(lambda v: v is not None))}, err(INVALID_PARAMS)
    return {"name": name, "arguments": draw(json_objects)}, err(INVALID_PARAMS)


@st.composite
def client_request_call(draw: st.DrawFn) -> Fuzz:
    """ask/think: server-to-client requests (handshake era) or input_required rounds (2026-07-28)."""
    name, key, need = draw(st.sampled_from([("ask", "question", "elicitation"), ("think", "prompt", "sampling")]))
    params: dict[str, Any] = {"name": name, "arguments": {key: draw(short_text)}}
    if not draw(st.booleans()):
        return Fuzz(request("tools/call", params, draw(valid_ids)), "client-request", None)
    meta = draw(modern_meta())
    expect: Expect | None = Expect("input_required") if need in meta[META_CAPS] else err(MISSING_CAPABILITY)
    answer_key = "elicit" if name == "ask" else "sample"
    answers: list[dict[str, Any]] = (
        [{"action": "accept", "content": {"answer": "a"}}, {"action": "decline"}]
        if name == "ask"
        else [{"role": "assistant", "content": {"type": "text", "text": "t"}, "model": "m"}]
    )
    how = draw(st.sampled_from(["none", "good", "bad", "other_key"]))
    if how == "good":
        params["inputResponses"] = {answer_key: draw(st.sampled_from(answers))}
        expect = OK
    elif how == "bad":
        params["inputResponses"] = {answer_key: draw(json_values)}
        expect = None  # a malformed answer is -32602, a well-shaped one a result
    elif how == "other_key":
        params["inputResponses"] = {draw(texts): draw(json_values)}
        expect = None
    return Fuzz(request("tools/call", with_meta(params, meta), draw(valid_ids)), f"client-request-{how}", expect, True)


def modernize(
    method: str, params: dict[str, Any] | None, expect: Expect | None, meta: dict[str, Any]
) -> tuple[dict[str, Any], Expect | None]:
    """The same request in the 2026-07-28 era, with the expectation that era implies."""
    out = with_meta(params, meta)
    if method in LEGACY_ONLY:
        return out, err(METHOD_NOT_FOUND)
    if method == "server/discover":
        return out, OK
    if expect is not None and expect.kind == "error" and RESOURCE_NOT_FOUND in expect.codes:
        return out, err(INVALID_PARAMS)  # 2026-07-28 renumbered resource-not-found
    if method == "tools/call" and isinstance(params, dict) and params.get("name") in ("ask", "think"):
        need, key = ("elicitation", "question") if params["name"] == "ask" else ("sampling", "prompt")
        args = params.get("arguments")
        if not (isinstance(args, dict) and isinstance(args.get(key), str)):
            return out, expect  # bad arguments are reported before anything is asked
        return out, (Expect("input_required") if need in meta.get(META_CAPS, {}) else err(MISSING_CAPABILITY))
    return out, expect


@st.composite
def good_request(draw: st.DrawFn) -> Fuzz:
    method, params, expect = draw(valid_request())
    modern = draw(st.booleans())
    if modern:
        params, expect = modernize(method, params, expect, draw(modern_meta()))
    return Fuzz(request(method, params, draw(valid_ids)), "valid", expect, modern)


@st.composite
def unknown_method(draw: st.DrawFn) -> Fuzz:
    method = draw(junk_methods | st.sampled_from(OTHER_MCP_METHODS))
    params = draw(st.none() | json_objects)
    modern = draw(st.booleans())
    if modern:
        params = with_meta(params, draw(modern_meta()))
    # On modern HTTP an odd method name may not survive the Mcp-Method header: -32020 is fine there.
    expect = Expect("error", frozenset({METHOD_NOT_FOUND}), alt_modern=frozenset({HEADER_MISMATCH}))
    return Fuzz(request(method, params, draw(valid_ids)), "unknown-method", expect, modern)


@st.composite
def bad_envelope(draw: st.DrawFn) -> Fuzz:
    """2026-07-28 `_meta` envelopes with unsupported or wrongly typed versions, or missing keys."""
    method, params, _ = draw(valid_request())
    if method == "tools/call" and isinstance(params, dict) and params.get("name") in tuple(SLOW_TOOLS):
        params = {"name": "echo", "arguments": {"text": "x"}}
    meta = draw(modern_meta())
    how = draw(
        st.sampled_from(["unsupported", "retype", "no_caps", "no_version", "bad_log", "bad_state", "bad_responses"])
    )
    alt = frozenset({HEADER_MISMATCH})
    expect: Expect | None
    if how == "unsupported":
        version = draw(
            st.sampled_from([LEGACY_VERSION, "2024-11-05", "1900-01-01", "", "2026-07-29", "2026-07-28 "])
            | st.text(max_size=12)
        )
        if version == MODERN_VERSION:
            version = "9999-99-99"
        meta[META_PV] = version
        expect = Expect("error", frozenset({UNSUPPORTED_VERSION}), supported=True, alt_modern=alt)
    elif how == "retype":
        meta[META_PV] = draw(non_objects.filter(lambda v: not isinstance(v, str)) | json_objects)
        expect = Expect("error", frozenset({INVALID_PARAMS}), alt_modern=alt)
    elif how == "no_caps":
        del meta[META_CAPS]
        expect = Expect("error", frozenset({INVALID_PARAMS}), alt_modern=alt)
    elif how == "no_version":
        del meta[META_PV]
        expect = Expect("error", frozenset({INVALID_PARAMS}), alt_modern=alt)
    elif how == "bad_log":
        meta[META_LOG] = draw(
            st.sampled_from(["loud", "", "DEBUG"])
            | non_objects.filter(lambda v: v is not None)
            | json_objects
            | deep_values
        )
        expect = Expect("error", frozenset({INVALID_PARAMS}), alt_modern=alt)
    elif how == "bad_state":
        params = dict(params or {})
        params["requestState"] = draw(json_values | st.sampled_from(["a.b", ".", "", "eyJiIjoxfQ.AAAA", "x" * 500]))
        expect = Expect("error", frozenset({INVALID_PARAMS}), alt_modern=alt)
    else:
        params = dict(params or {})
        params["inputResponses"] = draw(non_objects.filter(lambda v: v is not None))
        expect = Expect("error", frozenset({INVALID_PARAMS}), alt_modern=alt)
    if how in ("bad_state", "bad_responses", "bad_log") and method in LEGACY_ONLY:
        expect = None  # which check fires first is not specified
    return Fuzz(request(method, with_meta(params, meta), draw(valid_ids)), f"envelope-{how}", expect, True)


# -- notifications, responses, batches -----------------------------------------------------


@st.composite
def notification(draw: st.DrawFn) -> Fuzz:
    method = draw(st.sampled_from(NOTIFICATION_METHODS) | junk_methods)
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if method == "notifications/cancelled" or draw(st.integers(0, 3)) == 0:
        msg["method"] = "notifications/cancelled"
        rid = draw(st.sampled_from([PREV_ID, PREV_ID]) | valid_ids | invalid_ids)
        msg["params"] = {"requestId": rid, "reason": draw(short_text)}
    elif draw(st.booleans()):
        msg["params"] = draw(json_objects)
    if draw(st.integers(0, 4)) == 0:
        msg["params"] = with_meta(msg.get("params"), draw(modern_meta()))
    return Fuzz(msg, "notification", None, draw(st.booleans()))


@st.composite
def response(draw: st.DrawFn) -> Fuzz:
    rid = draw(valid_ids | invalid_ids | st.sampled_from(["s-1", "s-2", "s-3", [1], {"a": 1}]))
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid}
    shape = draw(st.sampled_from(["result", "error", "bad_error", "both"]))
    if shape in ("result", "both"):
        msg["result"] = draw(json_values)
    if shape in ("error", "both"):
        msg["error"] = {"code": draw(ints), "message": draw(short_text)}
    if shape == "bad_error":
        msg["error"] = draw(
            json_values
            | st.fixed_dictionaries({"code": json_values, "message": json_values})
            | st.fixed_dictionaries({"code": st.sampled_from(["abc", "1", None, 1.5, [1], True])})
        )
    return Fuzz(msg, "response", None, False)


random_json = st.builds(lambda v: Fuzz(v, "random-json"), json_values)


def _resolve_prev(value: Any) -> Any:
    """PREV_ID -> 0 (only notifications/cancelled params hold one, near the top)."""
    if value is PREV_ID:
        return 0
    if isinstance(value, dict) and value.get("method") == "notifications/cancelled":
        params = value.get("params")
        if isinstance(params, dict) and params.get("requestId") is PREV_ID:
            return {**value, "params": {**params, "requestId": 0}}
    if isinstance(value, list):
        return [_resolve_prev(v) for v in value]
    return value


@st.composite
def batch(draw: st.DrawFn) -> Fuzz:
    items = draw(st.lists(st.one_of(good_request(), notification(), response(), random_json), max_size=4))
    return Fuzz([_resolve_prev(i.payload) for i in items], "batch")


# -- mutations -----------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> Fuzz:
    """A valid request with one structural mutation."""
    base = draw(good_request())
    msg = dict(base.payload)
    how = draw(
        st.sampled_from(
            [
                "drop",
                "jsonrpc",
                "bad_id",
                "method",
                "params",
                "extra_key",
                "replace_param",
                "deep",
                "huge",
                "unicode",
                "null_params",
                "both_result",
            ]
        )
    )
    if how == "drop":
        msg.pop(draw(st.sampled_from(["jsonrpc", "id", "method", "params"])), None)
    elif how == "jsonrpc":
        msg["jsonrpc"] = draw(st.sampled_from(["1.0", "2", "2.0 ", "", 2.0, 2, None, "2.00"]) | json_values)
        if msg["jsonrpc"] == "2.0":
            msg["jsonrpc"] = "3.0"
    elif how == "bad_id":
        msg["id"] = draw(invalid_ids)
    elif how == "method":
        msg["method"] = draw(non_objects.filter(lambda v: not isinstance(v, str)) | json_objects | junk_methods)
    elif how == "params":
        msg["params"] = draw(non_objects.filter(lambda v: v is not None))
    elif how == "extra_key":
        msg[draw(st.sampled_from(["result", "error", "extra", "ID", "Method", "_meta"]) | texts)] = draw(json_values)
    elif how == "replace_param":
        params = dict(msg.get("params") or {})
        key = draw(st.sampled_from([*sorted(params), "name", "arguments", "uri", "_meta"]))
        params[key] = draw(json_values | deep_values)
        msg["params"] = params
    elif how == "deep":
        params = dict(msg.get("params") or {})
        params[draw(st.sampled_from(["arguments", "_meta", "x", "name", "uri"]))] = draw(deep_values)
        msg["params"] = params
    elif how == "huge":
        params = dict(msg.get("params") or {})
        target = draw(st.sampled_from(["name", "uri", "extra", "method", "id"]))
        value = draw(huge_strings)
        if target in ("method", "id"):
            msg[target] = value
        else:
            params[target] = value
            msg["params"] = params
    elif how == "unicode":
        if isinstance(msg.get("method"), str):
            msg["method"] = draw(st.sampled_from(["\u200b", "\ufeff", "é", "\u0301", "🦀", "\x00"])).join(
                [msg["method"], ""]
            )
    elif how == "null_params":
        msg["params"] = None
    else:
        msg["result"] = {}
        msg["error"] = {"code": 1, "message": "x"}
    return Fuzz(msg, f"mutated-{how}", None, base.modern)


def _byte_mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, val in ops:
        if not buf:
            buf.append(val)
            continue
        i = pos % (len(buf) + 1)
        if op == 0:  # truncate
            del buf[i:]
        elif op == 1:  # insert
            buf.insert(i, val)
        elif op == 2 and i < len(buf):  # replace
            buf[i] = val
        elif op == 3:  # delete a span
            del buf[i : i + 1 + val % 8]
        elif op == 4:  # duplicate a span
            buf[i:i] = buf[i : i + 1 + val % 16]
    return bytes(buf).replace(b"\n", b" ")


@st.composite
def byte_mutated(draw: st.DrawFn) -> Fuzz:
    base = draw(good_request())
    data = encode(_resolve_prev(base.payload))
    ops = draw(
        st.lists(st.tuples(st.integers(0, 4), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)
    )
    return Fuzz(Raw(_byte_mutate(data, ops)), "byte-mutated", None, base.modern)


SPECIAL_LINES = [
    b"{",
    b"}",
    b"[]",
    b"[1,2]",
    b"[{}]",
    b"null",
    b"true",
    b"0",
    b"-0",
    b'""',
    b'"ping"',
    b"{}",
    b'{"jsonrpc":"2.0"}',
    b'{"jsonrpc":"2.0","id":1}',
    b'{"jsonrpc":"2.0","id":null,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":-9223372036854775809,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1e400,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":NaN,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":Infinity,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}',
    b'{"jsonrpc":"2.0","id":"x","method":"\\udfff"}',
    b'{"jsonrpc":"2.0","id":"x","method":"ping\\u0000"}',
    b'\xef\xbb\xbf{"jsonrpc":"2.0","id":"bom","method":"ping"}',
    b'{"jsonrpc":"2.0","id":"t","method":"ping"} trailing',
    b'{"jsonrpc":"2.0","id":"a","method":"ping"}{"jsonrpc":"2.0","id":"b","method":"ping"}',
    b'{"jsonrpc":"2.0","id":"cr","method":"ping"}\r',
    b'  {"jsonrpc":"2.0","id":"sp","method":"tools/list"}  \t',
    b'{"jsonrpc":"2.0","id":"dup","id":"dup2","method":"ping"}',
    b'{"jsonrpc":"2.0","method":"ping","id":"k","method":"nope"}',
    b"{'jsonrpc':'2.0','id':1,'method':'ping'}",
    b'{"jsonrpc":"2.0","id":1,"method":"ping",}',
    b'{"jsonrpc":"2.0","id":01,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":"\xff\xfe","method":"ping"}',
    b"\x00",
    b"\xff\xfe\xfd",
    b"\x1b[31m",
    b"   ",
    b"\t",
    b"\r",
    b"\x0b\x0c",
    b"[" * 1100 + b"]" * 1100,
    b'{"a":' * 1100 + b"1" + b"}" * 1100,
    b"[" * 5000,
    b'{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{"name":"echo","arguments":{"text":"x","d":'
    + b"[" * 1000
    + b"]" * 1000
    + b"}}}",
]


@st.composite
def raw_junk(draw: st.DrawFn) -> Fuzz:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        data = draw(st.binary(max_size=200))
    elif kind == 1:
        data = draw(st.text(max_size=100)).encode("utf-8", "surrogatepass")
    else:
        data = draw(st.sampled_from(SPECIAL_LINES))
    return Fuzz(Raw(data.replace(b"\n", b" ")), "raw")


@functools.cache  # built once: Hypothesis validates every new strategy at its first draw, seconds per run here
def messages() -> st.SearchStrategy[Fuzz]:
    """One fuzz item, weighted towards requests that reach the dispatcher."""
    return st.one_of(
        good_request(),
        good_request(),
        good_request(),
        client_request_call(),
        unknown_method(),
        bad_envelope(),
        mutated(),
        mutated(),
        byte_mutated(),
        raw_junk(),
        random_json,
        notification(),
        response(),
        batch(),
    )


# -- cheap derived variants ----------------------------------------------------------------

INVALID_ID_POOL: list[Any] = [None, True, False, 1.5, 0.0, [], [1], {}, {"id": 1}, 1e300]
WRONG_JSONRPC: list[Any] = ["1.0", "2", "", 2.0, 2, None, "2.0\u0000", ["2.0"]]


def derive(item: Fuzz, rng: random.Random) -> Fuzz:
    """A cheap variant of a drawn item, chosen by a Hypothesis-drawn seed (keeps generation fast)."""
    payload = item.payload
    data = payload.data if isinstance(payload, Raw) else encode(_resolve_prev(payload))
    if not isinstance(payload, dict) or rng.random() < 0.35:
        ops = [(rng.randrange(5), rng.randrange(10**6), rng.randrange(256)) for _ in range(rng.randint(1, 3))]
        return Fuzz(Raw(_byte_mutate(data, ops)), "derived-bytes", None, item.modern)
    msg = dict(_resolve_prev(payload))
    how = rng.choice(["bad_id", "jsonrpc", "drop", "params", "notify", "batch", "modern", "legacy", "repeat", "case"])
    if how == "bad_id":
        msg["id"] = rng.choice(INVALID_ID_POOL)
    elif how == "jsonrpc":
        msg["jsonrpc"] = rng.choice(WRONG_JSONRPC)
    elif how == "drop" and msg:
        del msg[rng.choice(sorted(msg))]
    elif how == "params":
        msg["params"] = rng.choice([[], [1, 2], "p", 0, True, None, {"_meta": None}, {"_meta": []}])
    elif how == "notify":
        msg.pop("id", None)
    elif how == "batch":
        return Fuzz([msg] * rng.randint(0, 3), "derived-batch", None, item.modern)
    elif how in ("modern", "legacy") and isinstance(msg.get("params", {}), dict):
        params = dict(msg.get("params") or {})
        if how == "modern":
            params["_meta"] = {META_PV: MODERN_VERSION, META_CAPS: {}}
        else:
            params.pop("_meta", None)
        msg["params"] = params
        return Fuzz(msg, f"derived-{how}", None, how == "modern")
    elif how == "case" and isinstance(msg.get("method"), str):
        msg["method"] = msg["method"].upper() if rng.random() < 0.5 else msg["method"] + rng.choice(["/", " ", "x"])
    return Fuzz(msg, f"derived-{how}", None, item.modern)


_SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def message_group(draw: st.DrawFn, variants: int = 2) -> list[Fuzz]:
    """A drawn item followed by `variants` cheap variants of it."""
    item = draw(messages())
    rng = random.Random(draw(_SEEDS))
    return [item, *(derive(item, rng) for _ in range(variants))]


# -- harness helpers ----------------------------------------------------------------------


def sanitize(msg: Any) -> Any:
    """Cap the arguments of tools that sleep, so a fuzzed call cannot stall the suite."""
    if not isinstance(msg, dict) or msg.get("method") != "tools/call":
        return msg
    params = msg.get("params")
    if not isinstance(params, dict):
        return msg
    name = params.get("name")
    if not isinstance(name, str) or name not in SLOW_TOOLS:
        return msg
    args = params.get("arguments")
    if not isinstance(args, dict):
        return msg
    fixed = dict(args)
    for key, cap in SLOW_TOOLS[name].items():
        v = fixed.get(key)
        if isinstance(v, (bool, str)) and v:
            fixed[key] = "not-a-number"  # pydantic reads "1e9" or true as numbers
        elif isinstance(v, (int, float)) and v > cap:
            fixed[key] = cap
    if fixed == args:
        return msg
    return {**msg, "params": {**params, "arguments": fixed}}


def sanitize_raw(data: bytes) -> bytes:
    """`sanitize` for bytes that happen to parse as a call of a slow tool."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    fixed = sanitize(value)
    return data if fixed is value else encode(fixed)


def valid_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def id_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)


def retag(item: Fuzz, payload: Any, *, keep_expect: bool) -> Fuzz:
    return replace(item, payload=payload, expect=item.expect if keep_expect else None)
