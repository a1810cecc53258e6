"""The load generator's clients against real BE-MCP server processes: HTTP and stdio, both revisions.

Each outcome is produced by the server for real: `fail` for tool errors, an unknown tool for a protocol error,
`--max-concurrency 1 --queue-size 0` for overloads, `--call-timeout` for the server's deadline error, a short
client timeout for timeouts, and a killed server for transport errors.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from bemcp.stress.client import (
    ID_BITS,
    LEGACY,
    MODERN,
    Endpoint,
    HttpClient,
    HttpSession,
    RequestIds,
    Tally,
    _header_value,
    _Sse,
    classify,
    http_get,
)
from bemcp.stress.model import OUTCOMES, Session
from bemcp.stress.stdio_client import StdioClient, StdioSession
from tests.procs import ROOT, HttpServer, free_port, http_server

REVISIONS = [MODERN, LEGACY]


# -- servers -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv() -> Iterator[HttpServer]:
    with http_server("--stress-tools") as server:
        yield server


@pytest.fixture(scope="module")
def tight() -> Iterator[HttpServer]:
    """One call at a time, no queue, and a server-side deadline of 0.3 s."""
    with http_server("--stress-tools", "--max-concurrency", "1", "--queue-size", "0", "--call-timeout", "0.3") as s:
        yield s


async def _client(url: str, revision: str) -> HttpClient:
    client = HttpClient(url, revision)
    if revision == LEGACY:
        msg = await client.initialize(timeout=5)
        assert msg["result"]["protocolVersion"] == LEGACY
        assert client.mcp_session_id
    return client


@pytest.fixture(params=REVISIONS)
async def session(request: pytest.FixtureRequest, srv: HttpServer) -> AsyncIterator[HttpSession]:
    client = await _client(srv.url, request.param)
    try:
        yield client.session()
    finally:
        await client.close()


def _stdio_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "bemcp", "serve", "--transport", "stdio", "--stress-tools", *args]


async def _stdio(revision: str, *args: str) -> StdioClient:
    client = StdioClient(_stdio_argv(*args), cwd=ROOT)
    await client.start()
    if revision == LEGACY:
        msg = await client.initialize(timeout=10)
        assert msg["result"]["protocolVersion"] == LEGACY
    return client


def _text(msg: dict[str, Any]) -> str:
    return str(msg["result"]["content"][0]["text"])


async def _until_in_flight(session: Session, count: int, within: float = 5.0) -> None:
    """Wait until the server reports `count` calls in flight (server_health skips admission, so it always runs)."""
    seen = None
    for _ in range(int(within / 0.02)):
        health = await session.request("tools/call", {"name": "server_health", "arguments": {}}, timeout=5)
        seen = health["result"]["structuredContent"]["in_flight"]
        if seen == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"in flight stayed at {seen}, not {count}")


def _sessions_are_model_sessions(http: HttpSession, stdio: StdioSession) -> tuple[Session, Session]:
    return http, stdio  # checked by mypy: both clients implement `model.Session`


# -- classification (pure) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "status", "outcome", "detail"),
    [
        ({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}, 200, "ok", None),
        (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "result": {"content": [{"type": "text", "text": "no 12.5 MiB"}], "isError": True},
            },
            200,
            "tool_error",
            "no N MiB",
        ),
        (
            {"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required"}},
            200,
            "protocol_error",
            "input_required",
        ),
        (
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -32050, "message": "x", "data": {"reason": "queue_timeout"}}},
            503,
            "overload",
            "queue_timeout",
        ),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32050, "message": "x"}}, 200, "overload", "http_200"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "busy"}}, 429, "overload", "http_429"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad"}}, 400, "protocol_error", "-32602"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32051, "message": "late"}}, 200, "protocol_error", "-32051"),
        (None, 503, "overload", "http_503"),
        (None, 500, "protocol_error", "http_500"),
        (None, 202, "transport_error", "no_answer_http_202"),
        (None, 200, "transport_error", "no_answer_http_200"),
    ],
)
def test_classify(msg: Any, status: int, outcome: str, detail: str | None) -> None:
    assert classify(msg, status) == (outcome, detail)
    assert outcome in OUTCOMES


def test_sse_parser_finds_the_answer_across_any_chunking() -> None:
    stream = (
        b": ping\r\n\r\n"
        b"event: message\r\ndata: " + orjson.dumps({"jsonrpc": "2.0", "method": "notifications/progress"}) + b"\r\n\r\n"
        b"event: message\ndata: " + orjson.dumps({"jsonrpc": "2.0", "id": 6, "result": {"other": True}}) + b"\n\n"
        b"id: 3\nevent: message\ndata: " + orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": {"mine": True}}) + b"\n\n"
    )
    for size in (1, 2, 7, 64, len(stream)):
        sse = _Sse()
        found = False
        for i in range(0, len(stream), size):
            found = sse.feed(stream[i : i + size], 7)
        assert found and sse.found == {"jsonrpc": "2.0", "id": 7, "result": {"mine": True}}
    # A data field over several lines joins with newlines: still one JSON document, even with CRLFs cut in half.
    multi = b'data: {"jsonrpc": "2.0",\r\ndata: "id": 1,\r\ndata: "result": {}}\r\n\r\n'
    for size in (1, 2, 3, len(multi)):
        sse = _Sse()
        assert [sse.feed(multi[i : i + size], 1) for i in range(0, len(multi), size)][-1]


def test_sse_parser_keeps_a_foreign_answer_apart_and_tallies_extras() -> None:
    def event(msg: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(msg) + b"\n\n"

    tally = Tally()
    sse = _Sse(tally)
    assert not sse.feed(event({"jsonrpc": "2.0", "id": 8, "result": {"content": []}}), 7)
    assert sse.answer()["id"] == 8 and tally.counts == {}  # held: the call's answer if its own never comes
    assert sse.feed(event({"jsonrpc": "2.0", "id": 7, "result": {"content": []}}), 7)
    assert sse.answer()["id"] == 7 and tally.counts == {"unknown_id": 1}  # it came: the other one is astray
    sse.feed(event({"jsonrpc": "2.0", "id": 7, "result": {"content": []}}), 7)
    sse.feed(event({"jsonrpc": "2.0", "id": 9, "result": {}}), 7)
    assert tally.counts == {"unknown_id": 2, "duplicate": 1}


def test_classify_checks_the_shape_of_the_method_s_result() -> None:
    assert classify({"id": 1, "result": {"content": []}}, 200, "tools/call") == ("ok", None)
    assert classify({"id": 1, "result": {"tools": []}}, 200, "tools/call") == ("protocol_error", "wrong_result")
    assert classify({"id": 1, "result": {"content": []}}, 200, "tools/list") == ("protocol_error", "wrong_result")
    assert classify({"id": 1, "result": {}}, 200, "ping") == ("ok", None)
    assert classify({"id": 1, "result": 5}, 200, "tools/call") == ("protocol_error", "wrong_result")


def test_request_ids_are_unique_scattered_and_checkable() -> None:
    ids = RequestIds(3 << ID_BITS)
    issued = [ids.next() for _ in range(100_000)]
    assert len(set(issued)) == len(issued)
    assert all(3 << ID_BITS <= i < 4 << ID_BITS for i in issued) and max(issued) < 2**53  # JSON-safe
    assert all(ids.issued(i) for i in issued[::97])
    assert not ids.issued(ids.base) and not ids.issued(str(issued[0])) and not ids.issued(float(issued[0]))
    # An id a small offset from any issued one belongs to no call of a run this long (nor of 5 * 10**8 calls).
    taken = set(issued)
    assert not any(i + d in taken for i in issued for d in (-2, -1, 1, 2, 1024))
    nxt = RequestIds(3 << ID_BITS)
    for _ in range(10):
        nxt.next()
    assert not nxt.issued(issued[10])  # not handed out yet


def test_endpoint_and_headers() -> None:
    ep = Endpoint.parse("http://127.0.0.1:8123/mcp")
    assert (ep.host, ep.port, ep.path, ep.host_header) == ("127.0.0.1", 8123, "/mcp", "127.0.0.1:8123")
    assert Endpoint.parse("https://example.com").port == 443
    with pytest.raises(ValueError):
        Endpoint.parse("ftp://x/mcp")
    assert _header_value("echo") == "echo"
    assert _header_value("café") == "=?base64?Y2Fmw6k=?="


# -- HTTP ----------------------------------------------------------------------------------------------


async def test_http_ok_tool_error_and_protocol_error(session: HttpSession) -> None:
    ok = await session.call_tool("echo", {"text": "hi"}, timeout=5)
    assert (ok.kind, ok.outcome, ok.detail) == ("echo", "ok", None)
    assert ok.intended == ok.start <= ok.end
    for mode in ("raise", "tool_error", "is_error"):
        failed = await session.call_tool("fail", {"mode": mode}, timeout=5)
        assert failed.outcome == "tool_error" and failed.detail and "fail(mode=" in failed.detail
    unknown = await session.call_tool("no_such_tool", {}, timeout=5)
    assert (unknown.outcome, unknown.detail) == ("protocol_error", "-32602")
    intended = ok.end - 1.0  # open model: latency counts from the intended send time
    late = await session.call_tool("echo", {"text": "x"}, timeout=5, intended=intended)
    assert late.intended == intended and late.latency >= 1.0 > late.service_time
    answer = await session.request("tools/call", {"name": "echo", "arguments": {"text": "é\n"}}, timeout=5)
    assert _text(answer) == "é\n"


async def test_http_concurrent_calls_on_one_session(session: HttpSession) -> None:
    texts = [f"t{i}" for i in range(64)]
    answers = await asyncio.gather(
        *(session.request("tools/call", {"name": "echo", "arguments": {"text": t}}, timeout=10) for t in texts)
    )
    assert [_text(a) for a in answers] == texts


@pytest.mark.parametrize("revision", REVISIONS)
async def test_http_overload_and_server_deadline(tight: HttpServer, revision: str) -> None:
    client = await _client(tight.url, revision)
    try:
        s = client.session()
        busy = asyncio.ensure_future(s.call_tool("sleep", {"seconds": 0.25}, timeout=5))
        await _until_in_flight(s, 1)
        refused = await s.call_tool("echo", {"text": "x"}, timeout=5)
        assert (refused.outcome, refused.detail) == ("overload", "concurrency_limit")
        assert (await busy).outcome == "ok"
        late = await s.call_tool("sleep", {"seconds": 2}, timeout=5)  # past the server's --call-timeout 0.3
        assert (late.outcome, late.detail) == ("protocol_error", "-32051")
    finally:
        await client.close()


async def test_http_timeout_replaces_the_connection(session: HttpSession) -> None:
    slow = await session.call_tool("sleep", {"seconds": 1.0}, timeout=0.1)
    assert (slow.outcome, slow.detail) == ("timeout", None)
    assert 0.1 <= slow.service_time < 0.9  # the client gave up; it did not wait for the answer
    await asyncio.sleep(1.0)  # the sleep's answer is due now: it must not be read as the next call's
    answer = await session.request("tools/call", {"name": "echo", "arguments": {"text": "second"}}, timeout=5)
    assert _text(answer) == "second"
    assert (await session.call_tool("echo", {"text": "third"}, timeout=5)).outcome == "ok"
    assert session.connections == 1  # the timed-out connection was closed and forgotten, the new one kept


async def test_http_raw_payloads(session: HttpSession) -> None:
    malformed = await session.send_raw(b'{"jsonrpc": "2.0", "id"', kind="chaos:malformed", timeout=5)
    assert (malformed.kind, malformed.outcome, malformed.detail) == ("chaos:malformed", "protocol_error", "-32700")
    oversized = await session.send_raw(b"x" * (5 * 1024 * 1024), kind="chaos:oversized", timeout=10)
    assert oversized.outcome == "protocol_error"  # 413 with a JSON-RPC error: a clean refusal
    assert (await session.call_tool("echo", {"text": "still here"}, timeout=5)).outcome == "ok"


async def test_http_disconnect_mid_call_cancels_on_the_server(srv: HttpServer) -> None:
    client = await _client(srv.url, MODERN)
    try:
        s = client.session()
        dropped = await s.call_and_disconnect("hang", {}, after=0.15)
        assert (dropped.kind, dropped.outcome, dropped.detail) == ("chaos:disconnect", "ok", "disconnected")
        assert dropped.service_time >= 0.15
        quick = await s.call_and_disconnect("echo", {"text": "fast"}, after=2.0)
        assert (quick.outcome, quick.detail) == ("ok", None)  # answered before the disconnect
        await _until_in_flight(s, 0)  # the server noticed the disconnect and cancelled the hang
    finally:
        await client.close()


async def test_http_transport_errors() -> None:
    nobody = HttpClient(f"http://127.0.0.1:{free_port()}/mcp")
    refused = await nobody.session().call_tool("echo", {"text": "x"}, timeout=2)
    assert (refused.outcome, refused.detail) == ("transport_error", "connection_refused")
    await nobody.close()
    with http_server("--stress-tools") as dying:
        client = await _client(dying.url, MODERN)
        s = client.session()
        assert (await s.call_tool("echo", {"text": "x"}, timeout=5)).outcome == "ok"
        pending = asyncio.ensure_future(s.call_tool("hang", {}, timeout=10))
        await asyncio.sleep(0.2)
        dying.proc.kill()
        dying.proc.wait()
        lost = await pending
        assert lost.outcome == "transport_error" and lost.service_time < 5
        after = await s.call_tool("echo", {"text": "x"}, timeout=2)
        assert after.outcome == "transport_error"
        await client.close()


async def test_http_get_and_session_teardown(srv: HttpServer) -> None:
    health = await http_get(Endpoint.parse(srv.url), "/healthz", timeout=5)
    assert health.status == 200 and health.message == {"status": "ok"}
    client = await _client(srv.url, LEGACY)
    sid = client.mcp_session_id
    s = client.session()
    assert (await s.call_tool("echo", {"text": "x"}, timeout=5)).outcome == "ok"
    await client.close()  # ends the MCP session with DELETE: joining it now fails
    stale = HttpClient(srv.url, LEGACY, mcp_session_id=sid)
    gone = await stale.session().call_tool("echo", {"text": "x"}, timeout=5)
    assert gone.outcome == "protocol_error" and gone.detail == "-32600"  # 404 Session not found
    await stale.close()


# -- stdio ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", REVISIONS)
async def test_stdio_outcomes_and_multiplexing(revision: str) -> None:
    client = await _stdio(revision)
    try:
        s = client.session()
        assert (await s.call_tool("echo", {"text": "x"}, timeout=5)).outcome == "ok"
        failed = await s.call_tool("fail", {"mode": "is_error"}, timeout=5)
        assert failed.outcome == "tool_error"
        unknown = await s.call_tool("nope", {}, timeout=5)
        assert (unknown.outcome, unknown.detail) == ("protocol_error", "-32602")
        texts = [f"m{i}" for i in range(200)]
        answers = await asyncio.gather(
            *(s.request("tools/call", {"name": "echo", "arguments": {"text": t}}, timeout=10) for t in texts)
        )
        assert [_text(a) for a in answers] == texts
        malformed = await s.send_raw(b'{"jsonrpc": "2.0",\n "id"', kind="chaos:malformed", timeout=5)
        assert (malformed.outcome, malformed.detail) == ("protocol_error", "-32700")
        assert client.stray_lines == 0
    finally:
        assert await client.close() == 0


async def test_stdio_timeout_and_disconnect_cancel_on_the_server() -> None:
    client = await _stdio(MODERN)
    try:
        s = client.session()
        slow = await s.call_tool("hang", {}, timeout=0.1)
        assert (slow.outcome, slow.detail) == ("timeout", None)
        dropped = await s.call_and_disconnect("hang", {}, after=0.1)
        assert (dropped.outcome, dropped.detail) == ("ok", "disconnected")
        await _until_in_flight(s, 0)  # both hangs were cancelled by notifications/cancelled
    finally:
        await client.close()


async def test_stdio_overload() -> None:
    client = await _stdio(MODERN, "--max-concurrency", "1", "--queue-size", "0")
    try:
        s = client.session()
        busy = asyncio.ensure_future(s.call_tool("sleep", {"seconds": 0.25}, timeout=5))
        await _until_in_flight(s, 1)
        refused = await s.call_tool("echo", {"text": "x"}, timeout=5)
        assert (refused.outcome, refused.detail) == ("overload", "concurrency_limit")
        assert (await busy).outcome == "ok"
    finally:
        await client.close()


async def test_stdio_transport_error_when_the_server_dies() -> None:
    client = await _stdio(MODERN)
    s = client.session()
    pending = asyncio.ensure_future(s.call_tool("hang", {}, timeout=10))
    await asyncio.sleep(0.1)
    assert client.pid is not None and client.alive()
    await client.kill()
    lost = await pending
    assert (lost.outcome, lost.detail) == ("transport_error", "eof")
    assert not client.alive()
    after = await s.call_tool("echo", {"text": "x"}, timeout=2)
    assert (after.outcome, after.detail) == ("transport_error", "eof")
    assert after.service_time < 0.5
