"""Right answers through a real `bemcp serve`: a session ended under a running call, a duplicate in-flight id,
client answers (elicitation, sampling) that do not answer what was asked, and ids too large for 64 bits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.procs import MODERN_META, HttpServer, StdioServer, http_server

DEMO = "tests.apps.demo:app"
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
BOTH = "application/json, text/event-stream"
DEADLINE = 20.0
CAPS = {"elicitation": {}, "sampling": {}}


@pytest.fixture(scope="module")
def srv() -> Iterator[HttpServer]:
    with http_server(app=DEMO) as s:
        yield s


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=DEADLINE) as c:
        yield c


def _rpc(req_id: Any, method: str, params: dict[str, Any] | None = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if req_id is not None:
        msg["id"] = req_id
    if params is not None:
        msg["params"] = params
    return orjson.dumps(msg)


def _session_headers(sid: str | None) -> dict[str, str]:
    h = {"Content-Type": "application/json", "Accept": BOTH, "MCP-Protocol-Version": LEGACY}
    if sid is not None:
        h["Mcp-Session-Id"] = sid
    return h


async def _initialize(client: httpx.AsyncClient, url: str, caps: dict[str, Any] | None = None) -> str:
    params = {"protocolVersion": LEGACY, "capabilities": caps or {}, "clientInfo": {"name": "t", "version": "0"}}
    r = await client.post(url, content=_rpc("init", "initialize", params), headers=_session_headers(None))
    assert r.status_code == 200, r.text
    sid = r.headers["mcp-session-id"]
    r = await client.post(url, content=_rpc(None, "notifications/initialized"), headers=_session_headers(sid))
    assert r.status_code == 202
    return sid


async def _in_flight(client: httpx.AsyncClient, url: str) -> int:
    params = {"name": "server_health", "arguments": {}, "_meta": MODERN_META}
    headers = {
        "Content-Type": "application/json",
        "Accept": BOTH,
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "server_health",
    }
    r = await client.post(url, content=_rpc("h", "tools/call", params), headers=headers)
    n: int = r.json()["result"]["structuredContent"]["in_flight"]
    return n


async def _until_in_flight(client: httpx.AsyncClient, url: str, n: int) -> None:
    end = time.monotonic() + DEADLINE
    while await _in_flight(client, url) != n:
        if time.monotonic() > end:
            pytest.fail(f"in_flight never became {n}")
        await asyncio.sleep(0.02)


def _sse(text: str) -> list[dict[str, Any]]:
    out = []
    for event in text.split("\n\n"):
        data = [line[6:] for line in event.splitlines() if line.startswith("data: ")]
        if data:
            out.append(orjson.loads("\n".join(data)))
    return out


# -- a session ended under a running call ------------------------------------------------------------------------


async def test_delete_answers_a_call_in_flight(srv: HttpServer, client: httpx.AsyncClient) -> None:
    sid = await _initialize(client, srv.url)
    call = asyncio.create_task(
        client.post(
            srv.url,
            content=_rpc(5, "tools/call", {"name": "sleep", "arguments": {"seconds": 60}}),
            headers=_session_headers(sid),
        )
    )
    await _until_in_flight(client, srv.url, 1)
    assert (await client.delete(srv.url, headers={"Mcp-Session-Id": sid})).status_code == 200
    r = await asyncio.wait_for(call, DEADLINE)
    assert r.status_code == 200, r.text  # not "ASGI callable returned without starting response" (500)
    assert r.json() == {
        "jsonrpc": "2.0",
        "id": 5,
        "error": {
            "code": -32000,
            "message": "tools/call was cancelled: its session ended before it finished",
            "data": {"reason": "session_ended"},
        },
    }
    await _until_in_flight(client, srv.url, 0)


async def test_delete_ends_a_streamed_call_with_its_answer(srv: HttpServer, client: httpx.AsyncClient) -> None:
    sid = await _initialize(client, srv.url)
    params = {"name": "slow", "arguments": {"steps": 1000, "delay": 0.05}, "_meta": {"progressToken": "p"}}
    async with client.stream(
        "POST", srv.url, content=_rpc(6, "tools/call", params), headers=_session_headers(sid)
    ) as r:
        assert r.headers["content-type"] == "text/event-stream"
        text = ""
        chunks = r.aiter_text()
        async for chunk in chunks:
            text += chunk
            if "notifications/progress" in text:
                break
        assert (await client.delete(srv.url, headers={"Mcp-Session-Id": sid})).status_code == 200
        async for chunk in chunks:
            text += chunk
    answers = [m for m in _sse(text) if "id" in m]
    assert len(answers) == 1
    assert answers[0]["id"] == 6 and answers[0]["error"]["code"] == -32000
    assert answers[0]["error"]["data"] == {"reason": "session_ended"}


# -- one id, one request at a time -------------------------------------------------------------------------------


async def test_a_duplicate_in_flight_id_is_refused_and_the_first_stays_cancellable(
    srv: HttpServer, client: httpx.AsyncClient
) -> None:
    sid = await _initialize(client, srv.url)
    first = asyncio.create_task(
        client.post(
            srv.url,
            content=_rpc(9, "tools/call", {"name": "sleep", "arguments": {"seconds": 60}}),
            headers=_session_headers(sid),
        )
    )
    await _until_in_flight(client, srv.url, 1)
    r = await client.post(
        srv.url,
        content=_rpc(9, "tools/call", {"name": "echo", "arguments": {"text": "again"}}),
        headers=_session_headers(sid),
    )
    assert r.status_code == 400
    assert r.json() == {
        "jsonrpc": "2.0",
        "id": 9,
        "error": {"code": -32600, "message": "Invalid request: id 9 is already in flight in this session"},
    }
    cancel = await client.post(
        srv.url, content=_rpc(None, "notifications/cancelled", {"requestId": 9}), headers=_session_headers(sid)
    )
    assert cancel.status_code == 202
    done = await asyncio.wait_for(first, DEADLINE)
    assert (done.status_code, done.content) == (202, b"")  # cancelled: no JSON-RPC answer, as the spec says
    await _until_in_flight(client, srv.url, 0)
    # The id is free again once its request has ended.
    r = await client.post(
        srv.url,
        content=_rpc(9, "tools/call", {"name": "echo", "arguments": {"text": "now"}}),
        headers=_session_headers(sid),
    )
    assert r.json()["result"]["content"] == [{"type": "text", "text": "now"}]


# -- client answers: 2025-11-25 (responses on the session) -------------------------------------------------------


@pytest.fixture(scope="module")
def stdio() -> Iterator[StdioServer]:
    with StdioServer(app=DEMO) as s:
        s.request(
            {
                "jsonrpc": "2.0",
                "id": "init",
                "method": "initialize",
                "params": {
                    "protocolVersion": LEGACY,
                    "capabilities": CAPS,
                    "clientInfo": {"name": "t", "version": "0"},
                },
            }
        )
        s.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield s


def _call_answering(s: StdioServer, req_id: int, tool: str, args: dict[str, Any], result: Any) -> dict[str, Any]:
    """Call `tool`; answer the one request it sends the client with `result`; return the call's answer."""
    s.send({"jsonrpc": "2.0", "id": req_id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
    while True:
        msg = s.recv()
        if "method" in msg and "id" in msg:  # the server's request
            s.send({"jsonrpc": "2.0", "id": msg["id"], "result": result})
        elif msg.get("id") == req_id:
            return msg  # type: ignore[no-any-return]


ASK = ("ask", {"question": "name?"})
THINK = ("think", {"prompt": "hi"})


@pytest.mark.parametrize(
    ("tool", "answer", "problem"),
    [
        (ASK, {"action": "accept", "content": "yes"}, "content must be an object, not a string"),
        (ASK, {"action": "accept", "content": {"answer": 3}}, "content.answer: expected a string, got 3"),
        (ASK, {"action": "accept", "content": {}}, "content.answer is required by the requested schema but missing"),
        (ASK, {"action": "maybe"}, "action must be one of accept, decline, cancel, not 'maybe'"),
        (THINK, {"role": "assistant", "content": "hi"}, "content must be a content object with a type, not a string"),
        (THINK, {"content": {"type": "text", "text": "x"}}, "role must be user or assistant, not null"),
        (THINK, {"role": "assistant", "content": {"type": "text"}}, "content.text must be a string for a text block"),
        (THINK, {"role": "assistant", "content": [{"text": "x"}]}, "content[0].type must be a string, not null"),
    ],
)
def test_a_wrong_answer_never_reaches_the_tool_2025(
    stdio: StdioServer, tool: tuple[str, dict[str, Any]], answer: dict[str, Any], problem: str
) -> None:
    """The tool's ctx.elicit / ctx.sample raises ClientError; left uncaught, the call is a tool error saying so."""
    res = _call_answering(stdio, 11, tool[0], tool[1], answer)["result"]
    assert res["isError"] is True
    text = res["content"][0]["text"]
    method = "elicitation/create" if tool is ASK else "sampling/createMessage"
    assert f"ClientError: client error -32602: the client's answer to {method} is invalid: {problem}" in text


@pytest.mark.parametrize(
    ("tool", "answer", "text"),
    [
        (ASK, {"action": "accept", "content": {"answer": "Ada"}}, "answer: Ada"),
        (ASK, {"action": "decline", "content": {"ignored": 1}}, "user chose decline"),
        (THINK, {"role": "assistant", "content": {"type": "text", "text": "hello"}, "model": "m"}, "model said: hello"),
    ],
)
def test_a_right_answer_reaches_the_tool_2025(
    stdio: StdioServer, tool: tuple[str, dict[str, Any]], answer: dict[str, Any], text: str
) -> None:
    res = _call_answering(stdio, 12, tool[0], tool[1], answer)["result"]
    assert res.get("isError") is not True, res
    assert res["content"] == [{"type": "text", "text": text}]


async def test_a_wrong_answer_over_http_2025(srv: HttpServer, client: httpx.AsyncClient) -> None:
    sid = await _initialize(client, srv.url, CAPS)
    params = {"name": "ask", "arguments": {"question": "name?"}}
    async with client.stream(
        "POST", srv.url, content=_rpc(3, "tools/call", params), headers=_session_headers(sid)
    ) as r:
        text = ""
        chunks = r.aiter_text()
        async for chunk in chunks:
            text += chunk
            asks = [m for m in _sse(text) if m.get("method") == "elicitation/create"]
            if asks:
                answer = {"jsonrpc": "2.0", "id": asks[0]["id"], "result": {"action": "accept", "content": "yes"}}
                posted = await client.post(srv.url, content=orjson.dumps(answer), headers=_session_headers(sid))
                assert posted.status_code == 202
                break
        async for chunk in chunks:
            text += chunk
    (res,) = [m for m in _sse(text) if m.get("id") == 3]
    assert res["result"]["isError"] is True
    assert "elicitation/create is invalid: content must be an object" in res["result"]["content"][0]["text"]


# -- client answers: 2026-07-28 (inputResponses in the retried request) -------------------------------------------


async def _modern_call(
    client: httpx.AsyncClient, url: str, tool: str, args: dict[str, Any], responses: dict[str, Any]
) -> httpx.Response:
    meta = {**MODERN_META, "io.modelcontextprotocol/clientCapabilities": CAPS}
    params = {"name": tool, "arguments": args, "inputResponses": responses, "_meta": meta}
    headers = {
        "Content-Type": "application/json",
        "Accept": BOTH,
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
    }
    return await client.post(url, content=_rpc(4, "tools/call", params), headers=headers)


@pytest.mark.parametrize(
    ("tool", "key", "answer", "problem"),
    [
        (ASK, "elicit", {"action": "accept", "content": "yes"}, "content must be an object, not a string"),
        (ASK, "elicit", {"action": "accept", "content": {"answer": 3}}, "content.answer: expected a string, got 3"),
        (THINK, "sample", {"role": "assistant", "content": {"type": "text"}}, "content.text must be a string"),
        (
            THINK,
            "sample",
            {"role": "robot", "content": {"type": "text", "text": "x"}},
            "role must be user or assistant",
        ),
    ],
)
async def test_a_wrong_answer_never_reaches_the_tool_2026(
    srv: HttpServer, client: httpx.AsyncClient, tool: tuple[str, dict[str, Any]], key: str, answer: Any, problem: str
) -> None:
    r = await _modern_call(client, srv.url, tool[0], tool[1], {key: answer})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == -32602
    method = "elicitation/create" if tool is ASK else "sampling/createMessage"
    assert err["message"].startswith(f"inputResponses['{key}'] is not a valid {method} result: {problem}")
    assert err["data"]["key"] == key


async def test_a_right_answer_reaches_the_tool_2026(srv: HttpServer, client: httpx.AsyncClient) -> None:
    r = await _modern_call(
        client, srv.url, "ask", {"question": "q"}, {"elicit": {"action": "accept", "content": {"answer": "Ada"}}}
    )
    assert r.json()["result"]["content"] == [{"type": "text", "text": "answer: Ada"}]


# -- ids too large for 64 bits -----------------------------------------------------------------------------------

BIG = b"123456789012345678901234567890"


async def test_an_id_too_large_says_so_over_http(srv: HttpServer, client: httpx.AsyncClient) -> None:
    sid = await _initialize(client, srv.url)
    body = b'{"jsonrpc":"2.0","id":' + BIG + b',"method":"ping"}'
    r = await client.post(srv.url, content=body, headers=_session_headers(sid))
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": -32600,
        "message": "Invalid request: id 123456789012345678901234567890 is too large: integer ids must fit in 64 bits "
        "(JSON-RPC allows strings)",
    }
    # The largest integers that fit are ordinary ids.
    body = b'{"jsonrpc":"2.0","id":18446744073709551615,"method":"ping"}'
    r = await client.post(srv.url, content=body, headers=_session_headers(sid))
    assert r.json() == {"jsonrpc": "2.0", "id": 18446744073709551615, "result": {}}


def test_an_id_too_large_says_so_over_stdio(stdio: StdioServer) -> None:
    stdio.send_raw(b'{"jsonrpc":"2.0","id":' + BIG + b',"method":"ping"}\n')
    msg = stdio.recv()
    assert msg["id"] is None and msg["error"]["code"] == -32600
    assert "is too large: integer ids must fit in 64 bits (JSON-RPC allows strings)" in msg["error"]["message"]
    assert BIG.decode() in msg["error"]["message"]  # the id as the client wrote it, not a float


def test_a_result_json_cannot_carry_is_a_tool_error(stdio: StdioServer) -> None:
    # 2**64 - 1 fits the argument; the sum does not fit JSON's integers as orjson writes them.
    res = stdio.request(
        {
            "jsonrpc": "2.0",
            "id": "big-sum",
            "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 2**64 - 1, "b": 199}},
        }
    )
    assert "error" not in res, res
    assert res["result"]["isError"] is True
    assert "cannot be sent as JSON" in res["result"]["content"][0]["text"]
