"""Streamable HTTP against a real `bemcp serve` subprocess: status codes, sessions, streams, cancellation.

Every test talks to a server process over a real socket (httpx, or a raw socket
where the test must control the connection itself).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.procs import MODERN_META, HttpServer, http_server

DEMO = "tests.apps.demo:app"
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
BOTH = "application/json, text/event-stream"


# -- fixtures and helpers ----------------------------------------------------


@pytest.fixture(scope="module")
def srv() -> Iterator[HttpServer]:
    """The demo app with default settings, shared by most tests."""
    with http_server(app=DEMO) as s:
        yield s


@pytest.fixture(scope="module")
def limited() -> Iterator[HttpServer]:
    """Small limits: a short idle timeout, a small body cap and a short call deadline."""
    with http_server(
        "--session-idle-timeout", "0.5", "--max-body-bytes", "2048", "--call-timeout", "0.3", app=DEMO
    ) as s:
        yield s


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def _rpc(req_id: int | str | None, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if req_id is not None:
        msg["id"] = req_id
    if params is not None:
        msg["params"] = params
    return msg


def _post(
    client: httpx.Client,
    url: str,
    body: Any,
    *,
    sid: str | None = None,
    pv: str | None = LEGACY,
    accept: str = BOTH,
    ctype: str = "application/json",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    h = {"Accept": accept, "Content-Type": ctype}
    if sid is not None:
        h["Mcp-Session-Id"] = sid
    if pv is not None:
        h["MCP-Protocol-Version"] = pv
    h.update(headers or {})
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(url, content=content, headers=h)


def _initialize(client: httpx.Client, url: str, capabilities: dict[str, Any] | None = None) -> str:
    r = _post(
        client,
        url,
        _rpc(
            "init",
            "initialize",
            {
                "protocolVersion": LEGACY,
                "capabilities": capabilities or {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        ),
        pv=None,
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"]["protocolVersion"] == LEGACY
    sid = r.headers["mcp-session-id"]
    assert _post(client, url, _rpc(None, "notifications/initialized"), sid=sid).status_code == 202
    return sid


def _modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    h = {"Accept": BOTH, "Content-Type": "application/json", "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        h["Mcp-Name"] = name
    return h


def _modern(
    client: httpx.Client,
    url: str,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    req_id: int | str = 1,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A well-formed 2026-07-28 request: envelope in `_meta` and matching routing headers."""
    p = dict(params or {})
    p["_meta"] = {**MODERN_META, **p.get("_meta", {})}
    name = p.get("uri", p.get("name")) if method in ("tools/call", "prompts/get", "resources/read") else None
    h = _modern_headers(method, name)
    h.update(headers or {})
    return client.post(url, content=orjson.dumps(_rpc(req_id, method, p)), headers=h)


def _sse_messages(text: str) -> list[dict[str, Any]]:
    out = []
    for event in text.split("\n\n"):
        data = [line[len("data: ") :] for line in event.splitlines() if line.startswith("data: ")]
        if data:
            out.append(orjson.loads("\n".join(data)))
    return out


def _health(client: httpx.Client, url: str) -> dict[str, Any]:
    r = _modern(client, url, "tools/call", {"name": "server_health", "arguments": {}}, req_id="health")
    assert r.status_code == 200, r.text
    health: dict[str, Any] = r.json()["result"]["structuredContent"]
    return health


def _wait_for(pred: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `pred` until true; returns the time it took, fails after `timeout` seconds."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


# -- sessions ----------------------------------------------------------------


def test_initialize_returns_visible_ascii_session_id(srv: HttpServer, client: httpx.Client) -> None:
    sid1 = _initialize(client, srv.url)
    sid2 = _initialize(client, srv.url)
    for sid in (sid1, sid2):
        assert len(sid) >= 16
        assert all(0x21 <= ord(c) <= 0x7E for c in sid)
    assert sid1 != sid2
    r = _post(client, srv.url, _rpc(2, "ping"), sid=sid1)
    assert r.status_code == 200
    assert r.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
    assert r.headers["mcp-session-id"] == sid1


def test_missing_session_is_400(srv: HttpServer, client: httpx.Client) -> None:
    r = _post(client, srv.url, _rpc(1, "tools/list"))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32600
    assert "Mcp-Session-Id" in r.json()["error"]["message"]


def test_unknown_session_is_404(srv: HttpServer, client: httpx.Client) -> None:
    r = _post(client, srv.url, _rpc(1, "tools/list"), sid="no-such-session")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "Session not found"


def test_delete_ends_the_session(srv: HttpServer, client: httpx.Client) -> None:
    sid = _initialize(client, srv.url)
    assert client.delete(srv.url, headers={"Mcp-Session-Id": sid}).status_code == 200
    assert _post(client, srv.url, _rpc(1, "ping"), sid=sid).status_code == 404
    assert client.delete(srv.url, headers={"Mcp-Session-Id": sid}).status_code == 404
    assert client.delete(srv.url).status_code == 400


def test_session_cap_is_503_with_retry_after(client: httpx.Client) -> None:
    with http_server("--max-sessions", "2", app=DEMO) as s:
        first = _initialize(client, s.url)
        _initialize(client, s.url)
        r = _post(
            client,
            s.url,
            _rpc("init", "initialize", {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t"}}),
            pv=None,
        )
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert "mcp-session-id" not in r.headers
        err = r.json()["error"]
        assert err["code"] == -32050
        assert err["data"]["reason"] == "session_limit"
        assert err["data"]["limit"] == 2
        # Ending a session frees a slot.
        assert client.delete(s.url, headers={"Mcp-Session-Id": first}).status_code == 200
        _initialize(client, s.url)


def test_idle_session_expires(limited: HttpServer, client: httpx.Client) -> None:
    idle = _initialize(client, limited.url)
    busy = _initialize(client, limited.url)
    # Keep one session active for twice the idle timeout; let the other sit.
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        assert _post(client, limited.url, _rpc(1, "ping"), sid=busy).status_code == 200
        time.sleep(0.1)
    time.sleep(0.3)  # past the timeout plus a sweep interval for the idle one
    r = _post(client, limited.url, _rpc(2, "ping"), sid=idle)
    assert r.status_code == 404
    assert _post(client, limited.url, _rpc(3, "ping"), sid=busy).status_code == 200


# -- request validation ------------------------------------------------------


def test_wrong_content_type_is_415(srv: HttpServer, client: httpx.Client) -> None:
    r = _post(client, srv.url, _rpc(1, "ping"), ctype="text/plain")
    assert r.status_code == 415
    assert r.json()["error"]["code"] == -32600
    # Parameters on the media type are fine.
    sid = _initialize(client, srv.url)
    assert _post(client, srv.url, _rpc(1, "ping"), sid=sid, ctype="application/json; charset=utf-8").status_code == 200


@pytest.mark.parametrize("accept", ["text/html", "application/json", "text/event-stream"])
def test_accept_must_list_both_types(srv: HttpServer, client: httpx.Client, accept: str) -> None:
    sid = _initialize(client, srv.url)
    r = _post(client, srv.url, _rpc(1, "ping"), sid=sid, accept=accept)
    assert r.status_code == 406
    assert r.json()["error"]["code"] == -32600


def test_body_over_limit_is_413(limited: HttpServer, client: httpx.Client) -> None:
    big = _rpc(1, "ping", {"pad": "x" * 4096})
    r = _post(client, limited.url, big)
    assert r.status_code == 413
    assert "2048" in r.json()["error"]["message"]

    # The same body without Content-Length (chunked) is cut off while reading.
    def chunks() -> Iterator[bytes]:
        data = orjson.dumps(big)
        for i in range(0, len(data), 512):
            yield data[i : i + 512]

    r = client.post(limited.url, content=chunks(), headers={"Accept": BOTH, "Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    # Under the limit still works.
    sid = _initialize(client, limited.url)
    assert _post(client, limited.url, _rpc(1, "ping", {"pad": "x" * 1000}), sid=sid).status_code == 200


def test_parse_error_is_400(srv: HttpServer, client: httpx.Client) -> None:
    r = _post(client, srv.url, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert r.status_code == 400
    body = r.json()
    assert body["id"] is None
    assert body["error"]["code"] == -32700


def test_batch_is_rejected(srv: HttpServer, client: httpx.Client) -> None:
    sid = _initialize(client, srv.url)
    r = _post(client, srv.url, [_rpc(1, "ping"), _rpc(2, "ping")], sid=sid)
    assert r.status_code == 400
    body = r.json()
    assert body["id"] is None
    assert body["error"]["code"] == -32600
    assert "batch" in body["error"]["message"]


def test_unsupported_protocol_version_header(srv: HttpServer, client: httpx.Client) -> None:
    sid = _initialize(client, srv.url)
    r = _post(client, srv.url, _rpc(5, "ping"), sid=sid, pv="2000-01-01")
    assert r.status_code == 400
    err = r.json()["error"]
    assert r.json()["id"] == 5
    assert err["code"] == -32022
    assert err["data"]["requested"] == "2000-01-01"
    assert MODERN in err["data"]["supported"]
    assert LEGACY in err["data"]["supported"]


# -- DNS rebinding -----------------------------------------------------------


def test_foreign_host_is_421(srv: HttpServer, client: httpx.Client) -> None:
    r = _post(client, srv.url, _rpc(1, "ping"), headers={"Host": "evil.example.com"})
    assert r.status_code == 421
    assert r.json()["error"]["code"] == -32600


def test_foreign_origin_is_403(srv: HttpServer, client: httpx.Client) -> None:
    r = _post(client, srv.url, _rpc(1, "ping"), headers={"Origin": "http://evil.example.com"})
    assert r.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "localhost"},
        {"Host": "127.0.0.1:1234"},
        {"Host": "[::1]:1234"},
        {"Origin": "http://localhost:3000"},
        {"Origin": "http://127.0.0.1"},
    ],
)
def test_loopback_host_and_origin_accepted(srv: HttpServer, client: httpx.Client, headers: dict[str, str]) -> None:
    sid = _initialize(client, srv.url)
    r = _post(client, srv.url, _rpc(1, "ping"), sid=sid, headers=headers)
    assert r.status_code == 200
    assert r.json()["result"] == {}


def test_allowed_hosts_flag(client: httpx.Client) -> None:
    with http_server("--allowed-hosts", "example.com", app=DEMO) as s:
        init = _rpc("init", "initialize", {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t"}})
        r = _post(client, s.url, init, pv=None, headers={"Host": "example.com:8080"})
        assert r.status_code == 200
        assert r.json()["result"]["protocolVersion"] == LEGACY
        assert _post(client, s.url, init, pv=None, headers={"Host": "evil.example.com"}).status_code == 421
        # Loopback names stay allowed: the flag adds hosts, it does not replace the defaults.
        assert _post(client, s.url, init, pv=None).status_code == 200


def test_allowed_origins_flag(client: httpx.Client) -> None:
    init = _rpc("init", "initialize", {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t"}})

    def status(url: str, origin: str) -> int:
        return _post(client, url, init, pv=None, headers={"Origin": origin}).status_code

    with http_server("--allowed-origins", "https://app.example.com, https://Other.Example", app=DEMO) as s:
        assert status(s.url, "https://app.example.com") == 200
        assert status(s.url, "https://other.example") == 200  # the list and the header compare without case
        assert status(s.url, "HTTPS://APP.EXAMPLE.COM") == 200
        r = _post(client, s.url, init, pv=None, headers={"Origin": "https://evil.example.com"})
        assert r.status_code == 403
        assert "Origin not allowed" in r.json()["error"]["message"]
        # An origin is scheme, host and port: each must match.
        assert status(s.url, "http://app.example.com") == 403
        assert status(s.url, "https://app.example.com:8443") == 403
        # Loopback origins stay allowed: the flag adds origins, it does not replace the defaults.
        assert status(s.url, "http://localhost:3000") == 200
    with http_server("--allowed-origins", "*", app=DEMO) as s:
        assert status(s.url, "https://anything.example") == 200


# -- GET stream, SSE responses -----------------------------------------------


def test_get_stream_and_second_get_conflicts(srv: HttpServer, client: httpx.Client) -> None:
    sid = _initialize(client, srv.url)
    headers = {"Accept": "text/event-stream", "Mcp-Session-Id": sid}
    with httpx.Client(timeout=10) as c1, c1.stream("GET", srv.url, headers=headers) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["mcp-session-id"] == sid
        chunks = stream.iter_raw()  # keep a reference: a discarded iterator closes the response
        assert next(chunks).startswith(b":")  # the stream-open comment
        with client.stream("GET", srv.url, headers=headers) as second:  # streamed: a 200 here would never end
            assert second.status_code == 409
            assert orjson.loads(second.read())["error"]["code"] == -32600
    # Once the first stream is gone, the session may open another.

    def reopened() -> bool:
        with httpx.Client(timeout=10) as c2, c2.stream("GET", srv.url, headers=headers) as again:
            return again.status_code == 200

    _wait_for(reopened, 3.0, "the GET stream slot to be released")


def test_get_stream_validation(srv: HttpServer, client: httpx.Client) -> None:
    sid = _initialize(client, srv.url)
    assert client.get(srv.url, headers={"Accept": "application/json", "Mcp-Session-Id": sid}).status_code == 406
    assert client.get(srv.url, headers={"Accept": "text/event-stream"}).status_code == 400
    assert client.get(srv.url, headers={"Accept": "text/event-stream", "Mcp-Session-Id": "nope"}).status_code == 404
    r = client.get(srv.url, headers={"Accept": "text/event-stream", "MCP-Protocol-Version": MODERN})
    assert r.status_code == 405


def test_progress_turns_response_into_sse(srv: HttpServer, client: httpx.Client) -> None:
    sid = _initialize(client, srv.url)
    call = _rpc(
        9, "tools/call", {"name": "slow", "arguments": {"steps": 3, "delay": 0.01}, "_meta": {"progressToken": "p"}}
    )
    r = _post(client, srv.url, call, sid=sid)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    msgs = _sse_messages(r.text)
    assert [m.get("method") for m in msgs] == ["notifications/progress"] * 3 + [None]
    assert [m["params"]["progress"] for m in msgs[:3]] == [1, 2, 3]
    assert all(m["params"]["progressToken"] == "p" and m["params"]["total"] == 3 for m in msgs[:3])
    assert msgs[3]["id"] == 9
    assert msgs[3]["result"]["structuredContent"] == {"result": "done"}


def test_progress_on_modern_is_sse_too(srv: HttpServer, client: httpx.Client) -> None:
    r = _modern(
        client,
        srv.url,
        "tools/call",
        {"name": "slow", "arguments": {"steps": 2, "delay": 0.01}, "_meta": {"progressToken": 7}},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    msgs = _sse_messages(r.text)
    assert [m.get("method") for m in msgs] == ["notifications/progress", "notifications/progress", None]
    assert msgs[-1]["result"]["resultType"] == "complete"


def test_no_progress_token_answers_json(srv: HttpServer, client: httpx.Client) -> None:
    sid = _initialize(client, srv.url)
    r = _post(
        client, srv.url, _rpc(1, "tools/call", {"name": "slow", "arguments": {"steps": 2, "delay": 0.01}}), sid=sid
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json()["result"]["structuredContent"] == {"result": "done"}


# -- 2026-07-28 envelope -----------------------------------------------------


def test_modern_missing_meta_is_invalid_params(srv: HttpServer, client: httpx.Client) -> None:
    body = _rpc("abc", "tools/call", {"name": "echo", "arguments": {"text": "x"}})
    r = client.post(srv.url, content=orjson.dumps(body), headers=_modern_headers("tools/call", "echo"))
    assert r.status_code == 400
    assert r.json()["id"] == "abc"
    assert r.json()["error"]["code"] == -32602
    # Half an envelope is just as malformed.
    body["params"]["_meta"] = {"io.modelcontextprotocol/protocolVersion": MODERN}
    r = client.post(srv.url, content=orjson.dumps(body), headers=_modern_headers("tools/call", "echo"))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32602
    assert "clientCapabilities" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("drop", "override"),
    [
        (None, {"Mcp-Name": "add"}),
        ("Mcp-Name", None),
        ("Mcp-Method", None),
        (None, {"Mcp-Method": "tools/list"}),
        ("MCP-Protocol-Version", None),
    ],
    ids=["name-wrong", "name-missing", "method-missing", "method-wrong", "version-missing"],
)
def test_modern_header_mismatch(
    srv: HttpServer, client: httpx.Client, drop: str | None, override: dict[str, str] | None
) -> None:
    body = _rpc(3, "tools/call", {"name": "echo", "arguments": {"text": "x"}, "_meta": MODERN_META})
    headers = _modern_headers("tools/call", "echo")
    if drop:
        del headers[drop]
    headers.update(override or {})
    r = client.post(srv.url, content=orjson.dumps(body), headers=headers)
    assert r.status_code == 400
    assert r.json()["id"] == 3
    assert r.json()["error"]["code"] == -32020


def test_modern_base64_mcp_name_is_decoded(srv: HttpServer, client: httpx.Client) -> None:
    r = _modern(
        client,
        srv.url,
        "tools/call",
        {"name": "echo", "arguments": {"text": "hi"}},
        headers={"Mcp-Name": "=?base64?ZWNobw==?="},
    )
    assert r.status_code == 200
    assert r.json()["result"]["structuredContent"] == {"result": "hi"}


def test_modern_unknown_method_is_404(srv: HttpServer, client: httpx.Client) -> None:
    r = _modern(client, srv.url, "tools/frobnicate", {}, req_id=4)
    assert r.status_code == 404
    assert r.json()["id"] == 4
    assert r.json()["error"]["code"] == -32601


@pytest.mark.parametrize("method", ["ping", "initialize"])
def test_modern_removed_methods_are_404(srv: HttpServer, client: httpx.Client, method: str) -> None:
    params = (
        {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t"}} if method == "initialize" else {}
    )
    r = _modern(client, srv.url, method, params)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == -32601
    assert "mcp-session-id" not in r.headers


def test_modern_unsupported_version_is_400(srv: HttpServer, client: httpx.Client) -> None:
    body = _rpc(1, "tools/list", {"_meta": {**MODERN_META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}})
    headers = {**_modern_headers("tools/list"), "MCP-Protocol-Version": "2099-01-01"}
    r = client.post(srv.url, content=orjson.dumps(body), headers=headers)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == -32022
    assert err["data"] == {"supported": [MODERN], "requested": "2099-01-01"}


def test_server_discover(srv: HttpServer, client: httpx.Client) -> None:
    r = _modern(client, srv.url, "server/discover")
    assert r.status_code == 200
    res = r.json()["result"]
    assert res["supportedVersions"] == [MODERN]
    assert set(res["capabilities"]) >= {"tools", "resources", "prompts"}
    assert res["resultType"] == "complete"
    assert res["ttlMs"] == 0
    assert res["cacheScope"] in ("public", "private")
    assert res["instructions"] == "A demo app for tests."
    assert res["_meta"]["io.modelcontextprotocol/serverInfo"] == {"name": "demo", "version": "1.0.0"}
    assert "mcp-session-id" not in r.headers


def test_modern_tools_list_has_cache_hints(srv: HttpServer, client: httpx.Client) -> None:
    r = _modern(client, srv.url, "tools/list")
    assert r.status_code == 200
    res = r.json()["result"]
    assert res["resultType"] == "complete"
    assert res["ttlMs"] == 0
    assert res["cacheScope"] in ("public", "private")
    names = [t["name"] for t in res["tools"]]
    assert {"echo", "add", "slow", "sleep", "server_health"} <= set(names)
    echo = next(t for t in res["tools"] if t["name"] == "echo")
    assert echo["annotations"] == {"readOnlyHint": True}
    assert echo["inputSchema"]["required"] == ["text"]


def test_unknown_tool(srv: HttpServer, client: httpx.Client) -> None:
    r = _modern(client, srv.url, "tools/call", {"name": "nope", "arguments": {}})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32602
    assert r.json()["error"]["data"] == {"name": "nope"}
    sid = _initialize(client, srv.url)
    r = _post(client, srv.url, _rpc(1, "tools/call", {"name": "nope", "arguments": {}}), sid=sid)
    assert r.status_code == 200
    assert r.json()["error"]["code"] == -32602


def test_unknown_resource(srv: HttpServer, client: httpx.Client) -> None:
    sid = _initialize(client, srv.url)
    r = _post(client, srv.url, _rpc(1, "resources/read", {"uri": "demo://missing"}), sid=sid)
    assert r.status_code == 200
    assert r.json()["error"]["code"] == -32002
    r = _modern(client, srv.url, "resources/read", {"uri": "demo://missing"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32602
    assert r.json()["error"]["data"]["uri"] == "demo://missing"
    # A known template resource reads fine on both.
    r = _modern(client, srv.url, "resources/read", {"uri": "demo://items/42"})
    assert r.status_code == 200
    assert orjson.loads(r.json()["result"]["contents"][0]["text"]) == {"id": 42}


def test_notifications_get_202(srv: HttpServer, client: httpx.Client) -> None:
    sid = _initialize(client, srv.url)
    r = _post(client, srv.url, _rpc(None, "notifications/roots/list_changed"), sid=sid)
    assert r.status_code == 202
    assert r.content == b""
    r = client.post(
        srv.url,
        content=orjson.dumps(_rpc(None, "notifications/cancelled", {"requestId": 1, "_meta": MODERN_META})),
        headers=_modern_headers("notifications/cancelled"),
    )
    assert r.status_code == 202
    assert r.content == b""


# -- cancellation and deadlines ------------------------------------------------


def test_disconnect_cancels_modern_call(srv: HttpServer, client: httpx.Client) -> None:
    assert _health(client, srv.url)["in_flight"] == 0
    before = _health(client, srv.url)["completed"].get("cancelled", 0)
    body = orjson.dumps(_rpc(1, "tools/call", {"name": "sleep", "arguments": {"seconds": 30}, "_meta": MODERN_META}))
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Type: application/json\r\n"
        f"Accept: {BOTH}\r\nMCP-Protocol-Version: {MODERN}\r\nMcp-Method: tools/call\r\nMcp-Name: sleep\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", srv.port))
    try:
        sock.sendall(head + body)
        _wait_for(lambda: _health(client, srv.url)["in_flight"] == 1, 3.0, "the call to start")
        time.sleep(0.3)  # let the call run past the point where the server watches for disconnects
    finally:
        sock.close()
    took = _wait_for(lambda: _health(client, srv.url)["in_flight"] == 0, 3.0, "the call to be cancelled")
    assert took < 3.0
    assert _health(client, srv.url)["completed"].get("cancelled", 0) == before + 1


async def test_legacy_cancel_notification_stops_the_call(srv: HttpServer) -> None:
    with httpx.Client(timeout=10) as c:
        sid = _initialize(c, srv.url)
        before = _health(c, srv.url)["completed"].get("cancelled", 0)
    headers = {
        "Accept": BOTH,
        "Content-Type": "application/json",
        "Mcp-Session-Id": sid,
        "MCP-Protocol-Version": LEGACY,
    }
    async with httpx.AsyncClient(timeout=10) as ac:
        call = asyncio.create_task(
            ac.post(
                srv.url,
                content=orjson.dumps(_rpc(77, "tools/call", {"name": "sleep", "arguments": {"seconds": 30}})),
                headers=headers,
            )
        )
        # Wait until the server is running the call.
        for _ in range(150):
            r = await ac.post(
                srv.url,
                content=orjson.dumps(
                    _rpc("h", "tools/call", {"name": "server_health", "arguments": {}, "_meta": MODERN_META})
                ),
                headers=_modern_headers("tools/call", "server_health"),
            )
            if r.json()["result"]["structuredContent"]["in_flight"] == 1:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the sleep call never started")
        start = time.monotonic()
        cancel = await ac.post(
            srv.url,
            content=orjson.dumps(_rpc(None, "notifications/cancelled", {"requestId": 77, "reason": "test"})),
            headers=headers,
        )
        assert cancel.status_code == 202
        resp = await asyncio.wait_for(call, 3.0)
        assert time.monotonic() - start < 3.0
    # No JSON-RPC response for a cancelled request: the POST just ends.
    assert resp.status_code == 202
    assert resp.content == b""
    with httpx.Client(timeout=10) as c:
        health = _health(c, srv.url)
        assert health["in_flight"] == 0
        assert health["completed"].get("cancelled", 0) == before + 1
        assert _post(c, srv.url, _rpc(1, "ping"), sid=sid).json()["result"] == {}


def test_call_timeout(limited: HttpServer, client: httpx.Client) -> None:
    sid = _initialize(client, limited.url)
    start = time.monotonic()
    r = _post(client, limited.url, _rpc(1, "tools/call", {"name": "sleep", "arguments": {"seconds": 5}}), sid=sid)
    took = time.monotonic() - start
    assert r.status_code == 200
    err = r.json()["error"]
    assert err["code"] == -32051
    assert err["data"]["reason"] == "deadline"
    assert err["data"]["timeout_s"] == 0.3
    assert took < 1.5
    # A call inside the deadline is unaffected.
    r = _post(client, limited.url, _rpc(2, "tools/call", {"name": "sleep", "arguments": {"seconds": 0.01}}), sid=sid)
    assert r.json()["result"]["structuredContent"] == {"result": "slept"}


# -- other routes ----------------------------------------------------------------


def test_health_ready_and_unknown_routes(srv: HttpServer, client: httpx.Client) -> None:
    r = client.get(f"{srv.base}/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = client.get(f"{srv.base}/readyz")
    assert (r.status_code, r.json()) == (200, {"ready": True})
    assert client.get(f"{srv.base}/nope").status_code == 404
    r = client.put(srv.url, content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 405
    assert "POST" in r.headers["allow"]
