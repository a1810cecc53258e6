"""SEP-2243's Mcp-Param headers: x-mcp-header arguments mirrored in HTTP headers, checked against the body.

The HTTP tests run a real `bemcp serve` subprocess serving `app` below and post raw 2026-07-28 JSON-RPC.
"""

from __future__ import annotations

import base64
import http.client
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import orjson
import pytest
from pydantic import Field

from bemcp import App, Text
from bemcp.schema import ParamHeader
from tests.procs import MODERN_META, HttpServer, http_server

app = App("param-headers", version="1.0")


@app.tool
async def routed(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
    priority: Annotated[int, Field(json_schema_extra={"x-mcp-header": "Priority"})] = 0,
    verbose: Annotated[bool | None, Field(json_schema_extra={"x-mcp-header": "Verbose"})] = None,
) -> Text:
    return Text(f"{region}/{priority}/{verbose}")


@app.tool(
    input_schema={
        "type": "object",
        "properties": {"tenant": {"type": "string", "x-mcp-header": "Tenant"}},
        "required": ["tenant"],
    }
)
async def raw_routed(tenant: str) -> Text:
    return Text(f"tenant {tenant}")


@app.tool
async def plain(region: str) -> Text:
    return Text(f"plain {region}")


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


# -- registration ---------------------------------------------------------------------------------------------


def test_typed_parameters_carry_x_mcp_header_into_the_schema() -> None:
    props = app.tools["routed"].wire["inputSchema"]["properties"]
    assert props["region"]["x-mcp-header"] == "Region"
    assert props["region"]["type"] == "string"
    assert app.tools["routed"].param_headers == (
        ParamHeader("region", "Region", b"mcp-param-region"),
        ParamHeader("priority", "Priority", b"mcp-param-priority"),
        ParamHeader("verbose", "Verbose", b"mcp-param-verbose"),
    )
    assert app.tools["raw_routed"].param_headers == (ParamHeader("tenant", "Tenant", b"mcp-param-tenant"),)
    assert app.tools["plain"].param_headers == ()


def _raw(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


@pytest.mark.parametrize(
    ("properties", "error"),
    [
        ({"a": {"type": "string", "x-mcp-header": ""}}, "must be a header name"),
        ({"a": {"type": "string", "x-mcp-header": "My Region"}}, "must be a header name"),
        ({"a": {"type": "string", "x-mcp-header": "Region:Primary"}}, "must be a header name"),
        ({"a": {"type": "string", "x-mcp-header": "Régión"}}, "must be a header name"),
        ({"a": {"type": "string", "x-mcp-header": 7}}, "must be a header name"),
        ({"a": {"type": "number", "x-mcp-header": "Score"}}, "must be a string, integer or boolean (got number)"),
        ({"a": {"type": "object", "x-mcp-header": "Data"}}, "(got object)"),
        ({"a": {"type": "null", "x-mcp-header": "Nil"}}, "(got null)"),
        ({"a": {"x-mcp-header": "Any"}}, "(got not typed)"),
        (
            {"a": {"type": "string", "x-mcp-header": "MyField"}, "b": {"type": "string", "x-mcp-header": "myfield"}},
            "repeats that of 'a'",
        ),
    ],
)
def test_invalid_x_mcp_header_is_rejected_at_registration(properties: dict[str, Any], error: str) -> None:
    bad = App("bad")
    with pytest.raises(ValueError, match="tool t: ") as info:
        bad.add_tool(lambda **kw: None, name="t", input_schema=_raw(properties))
    assert error in str(info.value)
    assert "t" not in bad.tools


def test_typed_number_parameter_cannot_be_a_header() -> None:
    bad = App("bad")

    def score(points: Annotated[float, Field(json_schema_extra={"x-mcp-header": "Points"})]) -> None: ...

    with pytest.raises(ValueError, match="must be a string, integer or boolean"):
        bad.add_tool(score)


def test_enum_const_and_local_ref_types_are_understood() -> None:
    ok = App("ok")
    schema = {
        "type": "object",
        "$defs": {"Zone": {"type": "string", "enum": ["a", "b"]}},
        "properties": {
            "zone": {"$ref": "#/$defs/Zone", "x-mcp-header": "Zone"},
            "mode": {"enum": ["x", "y"], "x-mcp-header": "Mode"},
            "flag": {"const": True, "x-mcp-header": "Flag"},
            "count": {"type": ["integer", "null"], "x-mcp-header": "Count"},
        },
    }
    tool = ok.add_tool(lambda **kw: None, name="t", input_schema=schema)
    assert [p.arg for p in tool.param_headers] == ["zone", "mode", "flag", "count"]


# -- over HTTP ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv() -> Iterator[HttpServer]:
    with http_server(app="tests.test_mcp_param_headers:app") as s:
        yield s


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def call(
    client: httpx.Client, srv: HttpServer, tool: str, arguments: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": MODERN_META},
    }
    h = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
        **headers,
    }
    return client.post(srv.url, content=orjson.dumps(body), headers=h)


def accepted(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert "isError" not in result, result
    text: str = result["content"][0]["text"]
    return text


def rejected(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert r.json()["id"] == 7
    assert error["code"] == -32020
    message: str = error["message"]
    return message


@pytest.mark.parametrize(
    ("body", "header"),
    [
        ("Hello", b64("Hello")),  # the suite's valid case: =?base64?SGVsbG8=?=
        ("Zürich, 世界", b64("Zürich, 世界")),  # what a client must encode: not ASCII
        (" padded ", b64(" padded ")),  # and surrounding whitespace
        ("", ""),  # an empty value is an empty header
        ("SGVsbG8=", "SGVsbG8="),  # no wrapper: literal, not Base64
        ("=?base64?SGVsbG8=", "=?base64?SGVsbG8="),  # half a wrapper: literal too
        ("SGVsbG8=?=", "SGVsbG8=?="),
    ],
    ids=["base64", "non-ascii", "whitespace", "empty", "no-prefix", "no-suffix", "suffix-only"],
)
def test_matching_header_is_accepted(srv: HttpServer, client: httpx.Client, body: str, header: str) -> None:
    text = accepted(call(client, srv, "routed", {"region": body}, {"Mcp-Param-Region": header}))
    assert text == f"{body}/0/None"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("=?base64?SGVsbG8?=", "not valid Base64"),  # missing padding
        ("=?base64?SGVs!!!bG8=?=", "not valid Base64"),  # not the Base64 alphabet
        ("=?base64?SGVsbG8=AA?=", "not valid Base64"),  # data after the padding
        ("=?base64?" + base64.b64encode(b"\xff\xfe").decode() + "?=", "not valid Base64"),  # not UTF-8
        ("Goodbye", "does not match argument 'region'"),
        (b64("Goodbye"), "does not match argument 'region'"),
        ("hello", "does not match argument 'region'"),  # values are case-sensitive
    ],
    ids=["padding", "alphabet", "trailing", "not-utf8", "literal-mismatch", "base64-mismatch", "case"],
)
def test_bad_header_is_rejected(srv: HttpServer, client: httpx.Client, header: str, reason: str) -> None:
    message = rejected(call(client, srv, "routed", {"region": "Hello"}, {"Mcp-Param-Region": header}))
    assert "Mcp-Param-Region" in message
    assert reason in message


def test_whitespace_around_the_header_value_is_not_part_of_it(srv: HttpServer) -> None:
    # RFC 9110: optional whitespace around a field value is not part of it (httpx will not send it: http.client).
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "routed", "arguments": {"region": "us-west1"}, "_meta": MODERN_META},
    }
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.putrequest("POST", "/mcp")
        for name, value in (
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "routed"),
            ("Mcp-Param-Region", " \tus-west1 \t"),
        ):
            conn.putheader(name, value)
        data = orjson.dumps(body)
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        r = conn.getresponse()
        assert r.status == 200
        assert orjson.loads(r.read())["result"]["content"][0]["text"] == "us-west1/0/None"
    finally:
        conn.close()


def test_missing_header_is_rejected(srv: HttpServer, client: httpx.Client) -> None:
    message = rejected(call(client, srv, "routed", {"region": "test-value"}, {}))
    assert message == "Header mismatch: missing Mcp-Param-Region header for argument 'region'"


def test_header_without_its_argument_is_rejected(srv: HttpServer, client: httpx.Client) -> None:
    # `region` missing from the body but a proxy may have routed on the header: they disagree.
    message = rejected(call(client, srv, "routed", {}, {"Mcp-Param-Region": "eu"}))
    assert "sent without argument 'region'" in message


def test_header_names_ignore_case(srv: HttpServer, client: httpx.Client) -> None:
    headers = {"MCP-PARAM-REGION": "eu", "mcp-param-priority": "3"}
    assert accepted(call(client, srv, "routed", {"region": "eu", "priority": 3}, headers)) == "eu/3/None"


def test_integer_and_boolean_compare_by_json_text(srv: HttpServer, client: httpx.Client) -> None:
    args = {"region": "eu", "priority": 42, "verbose": False}
    ok = {"Mcp-Param-Region": "eu", "Mcp-Param-Priority": "42", "Mcp-Param-Verbose": "false"}
    assert accepted(call(client, srv, "routed", args, ok)) == "eu/42/False"
    assert "Mcp-Param-Priority" in rejected(call(client, srv, "routed", args, {**ok, "Mcp-Param-Priority": "41"}))
    assert "Mcp-Param-Priority" in rejected(call(client, srv, "routed", args, {**ok, "Mcp-Param-Priority": "4_2"}))
    assert "Mcp-Param-Verbose" in rejected(call(client, srv, "routed", args, {**ok, "Mcp-Param-Verbose": "0"}))
    assert "Mcp-Param-Verbose" in rejected(call(client, srv, "routed", args, {**ok, "Mcp-Param-Verbose": "False"}))


def test_null_or_absent_argument_needs_no_header(srv: HttpServer, client: httpx.Client) -> None:
    # `priority` absent and `verbose` null: a client omits their headers.
    assert accepted(call(client, srv, "routed", {"region": "eu", "verbose": None}, {"Mcp-Param-Region": "eu"}))


def test_raw_schema_tool_is_checked_too(srv: HttpServer, client: httpx.Client) -> None:
    assert accepted(call(client, srv, "raw_routed", {"tenant": "acme"}, {"Mcp-Param-Tenant": "acme"})) == "tenant acme"
    rejected(call(client, srv, "raw_routed", {"tenant": "acme"}, {}))


def test_tool_without_x_mcp_header_is_unaffected(srv: HttpServer, client: httpx.Client) -> None:
    assert accepted(call(client, srv, "plain", {"region": "eu"}, {})) == "plain eu"
    # A stray Mcp-Param header names no argument of this tool: nothing to check.
    assert accepted(call(client, srv, "plain", {"region": "eu"}, {"Mcp-Param-Region": "us"})) == "plain eu"


def test_header_check_comes_after_the_name_check(srv: HttpServer, client: httpx.Client) -> None:
    message = rejected(call(client, srv, "routed", {"region": "eu"}, {"Mcp-Name": "plain"}))
    assert message.startswith("Header mismatch: Mcp-Name header")
