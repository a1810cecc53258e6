"""Change notifications through real servers: resource updates and list changes reach the clients that asked for
them, on both revisions and both transports, and nobody else.

The app (tests/apps/changes.py) changes its own resources and lists from tools, on the event loop and from a worker
thread, as a user's code would.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from tests.procs import MODERN_META, HttpServer, StdioServer, http_server

pytestmark = pytest.mark.anyio

APP = "tests.apps.changes:app"
SUB_ID = "io.modelcontextprotocol/subscriptionId"
ACCEPT = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def call(id_: Any, name: str, arguments: dict[str, Any], *, modern: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if modern:
        params["_meta"] = MODERN_META
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


def listen(id_: Any, **notifications: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": id_,
        "method": "subscriptions/listen",
        "params": {"_meta": MODERN_META, "notifications": notifications},
    }


# -- stdio -------------------------------------------------------------------


def read_until(srv: StdioServer, predicate: Any, limit: int = 50) -> list[dict[str, Any]]:
    """Messages from the server up to and including the first that satisfies `predicate`."""
    seen = []
    for _ in range(limit):
        msg = srv.recv()
        seen.append(msg)
        if predicate(msg):
            return seen
    raise AssertionError(f"never came: {seen}")


def test_stdio_2025_subscribed_resource_and_list_changes() -> None:
    with StdioServer(app=APP) as srv:
        init = srv.initialize()
        caps = init["result"]["capabilities"]
        assert caps["resources"] == {"subscribe": True, "listChanged": True}
        assert caps["tools"] == {"listChanged": True} and caps["prompts"] == {"listChanged": True}
        assert (
            srv.request(
                {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": "memo://today"}}
            )["result"]
            == {}
        )
        srv.send(call(3, "write_memo", {"text": "from the loop"}))
        got = read_until(srv, lambda m: m.get("method") == "notifications/resources/updated")
        assert got[-1]["params"] == {"uri": "memo://today"}
        srv.send(call(4, "write_memo_from_thread", {"text": "from a thread"}))
        got = read_until(srv, lambda m: m.get("method") == "notifications/resources/updated")
        read = srv.request({"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": {"uri": "memo://today"}})
        assert read["result"]["contents"][0]["text"] == "from a thread"

        # Ten tools added by one call: one list_changed, and the list shows them.
        srv.send(call(6, "add_tools", {"count": 10}))
        got = read_until(srv, lambda m: m.get("method") == "notifications/tools/list_changed")
        listed = srv.request({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
        assert {f"extra_{i}" for i in range(10)} <= {t["name"] for t in listed["result"]["tools"]}
        srv.send(call(8, "remove_tools", {"count": 10}))
        read_until(srv, lambda m: m.get("method") == "notifications/tools/list_changed")
        srv.send(call(9, "add_prompt", {"name": "later"}))
        read_until(srv, lambda m: m.get("method") == "notifications/prompts/list_changed")
        # Unsubscribed: a change to the resource says nothing more.
        srv.request({"jsonrpc": "2.0", "id": 10, "method": "resources/unsubscribe", "params": {"uri": "memo://today"}})
        srv.send(call(11, "write_memo", {"text": "quiet"}))
        srv.send({"jsonrpc": "2.0", "id": 12, "method": "ping"})
        tail = read_until(srv, lambda m: m.get("id") == 12)
        assert not [m for m in tail if m.get("method") == "notifications/resources/updated"], tail


def test_stdio_2025_coalesces_a_burst_into_one_list_changed() -> None:
    with StdioServer(app=APP) as srv:
        srv.initialize()
        srv.send(call(2, "add_tools", {"count": 25}))
        seen = read_until(srv, lambda m: m.get("method") == "notifications/tools/list_changed")
        srv.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
        seen += read_until(srv, lambda m: m.get("id") == 3)
        assert [m.get("method") for m in seen].count("notifications/tools/list_changed") == 1, seen


def test_stdio_2026_listen_filters_tags_and_cancels() -> None:
    with StdioServer(app=APP) as srv:
        discover = srv.request(
            {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": MODERN_META}}
        )
        caps = discover["result"]["capabilities"]
        assert caps["tools"] == {"listChanged": True} and caps["resources"]["subscribe"] is True
        srv.send(listen("L", toolsListChanged=True, resourceSubscriptions=["memo://today"]))
        ack = srv.recv()
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["_meta"] == {SUB_ID: "L"}
        assert ack["params"]["notifications"] == {"toolsListChanged": True, "resourceSubscriptions": ["memo://today"]}
        srv.send(call(2, "add_prompt", {"name": "not-asked-for"}, modern=True))
        srv.send(call(3, "write_memo", {"text": "x"}, modern=True))
        got = read_until(srv, lambda m: m.get("method") == "notifications/resources/updated")
        assert got[-1]["params"] == {"uri": "memo://today", "_meta": {SUB_ID: "L"}}
        assert not [m for m in got if m.get("method") == "notifications/prompts/list_changed"]
        srv.send(call(4, "add_tools", {"count": 1}, modern=True))
        got = read_until(srv, lambda m: m.get("method") == "notifications/tools/list_changed")
        assert got[-1]["params"] == {"_meta": {SUB_ID: "L"}}
        # The client cancels its stream: no answer to it, and nothing more on it.
        srv.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "L"}})
        srv.send(call(5, "add_tools", {"count": 2}, modern=True))
        srv.send({"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {"_meta": MODERN_META}})
        tail = read_until(srv, lambda m: m.get("id") == 6)
        assert not [m for m in tail if m.get("id") == "L" or "list_changed" in str(m.get("method"))], tail


def test_stdio_2026_clients_get_no_unsolicited_notifications() -> None:
    with StdioServer(app=APP) as srv:
        srv.send(call(1, "add_tools", {"count": 3}, modern=True))
        srv.send(call(2, "write_memo", {"text": "y"}, modern=True))
        srv.send({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": MODERN_META}})
        seen = read_until(srv, lambda m: m.get("id") == 3)
        assert all("method" not in m for m in seen), seen


def test_listen_is_2026_only_and_checks_its_filter() -> None:
    with StdioServer(app=APP) as srv:
        srv.initialize()
        legacy = srv.request({"jsonrpc": "2.0", "id": 2, "method": "subscriptions/listen", "params": {}})
        assert legacy["error"]["code"] == -32601
        bad = srv.request(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "subscriptions/listen",
                "params": {"_meta": MODERN_META, "notifications": {"resourceSubscriptions": "memo://today"}},
            }
        )
        assert bad["error"]["code"] == -32602 and "resourceSubscriptions" in bad["error"]["message"]


# -- HTTP --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServer]:
    with http_server(app=APP) as srv:
        yield srv


async def sse(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield orjson.loads(line[6:])


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {**ACCEPT, "mcp-protocol-version": "2026-07-28", "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return headers


@asynccontextmanager
async def session(client: httpx.AsyncClient, url: str) -> AsyncIterator[dict[str, str]]:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    r = await client.post(url, json=init, headers=ACCEPT)
    headers = {**ACCEPT, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    try:
        yield headers
    finally:
        await client.delete(url, headers=headers)


async def test_http_2025_get_stream_gets_subscribed_updates_and_list_changes(server: HttpServer) -> None:
    async with httpx.AsyncClient(timeout=20) as client, session(client, server.url) as headers:
        sub = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": "memo://today"}}
        assert (await client.post(server.url, json=sub, headers=headers)).json()["result"] == {}
        get_headers = {**headers, "accept": "text/event-stream"}
        async with client.stream("GET", server.url, headers=get_headers) as stream:
            events = sse(stream)
            await client.post(server.url, json=call(3, "write_memo_from_thread", {"text": "z"}), headers=headers)
            first = await asyncio.wait_for(anext(events), 20)
            assert first == {
                "jsonrpc": "2.0",
                "method": "notifications/resources/updated",
                "params": {"uri": "memo://today"},
            }
            await client.post(server.url, json=call(4, "add_prompt", {"name": "p_http"}), headers=headers)
            second = await asyncio.wait_for(anext(events), 20)
            assert second["method"] == "notifications/prompts/list_changed"


async def test_http_2026_listen_stream(server: HttpServer) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        body = listen(77, resourcesListChanged=True, toolsListChanged=True)
        async with client.stream("POST", server.url, json=body, headers=modern_headers("subscriptions/listen")) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = sse(r)
            ack = await asyncio.wait_for(anext(events), 20)
            assert ack["method"] == "notifications/subscriptions/acknowledged"
            assert ack["params"] == {
                "_meta": {SUB_ID: 77},
                "notifications": {"resourcesListChanged": True, "toolsListChanged": True},
            }
            # Not asked for: a resource update. Asked for: the tool list.
            for i, (tool, args) in enumerate([("write_memo", {"text": "w"}), ("add_tools", {"count": 2})]):
                res = await client.post(
                    server.url, json=call(i, tool, args, modern=True), headers=modern_headers("tools/call", tool)
                )
                assert "result" in res.json(), res.text
            change = await asyncio.wait_for(anext(events), 20)
            assert change == {
                "jsonrpc": "2.0",
                "method": "notifications/tools/list_changed",
                "params": {"_meta": {SUB_ID: 77}},
            }


def test_stdio_2026_listen_ends_gracefully_when_input_ends() -> None:
    with StdioServer(app=APP) as srv:
        srv.send(listen("L2", toolsListChanged=True))
        assert srv.recv()["method"] == "notifications/subscriptions/acknowledged"
        srv.stdin.close()  # end of input: the server drains, and the open stream answers instead of hanging
        end = srv.recv()
        assert end["id"] == "L2"
        assert end["result"]["_meta"][SUB_ID] == "L2" and end["result"]["resultType"] == "complete"
        assert srv.proc.wait(20) == 0


async def test_http_2026_listen_ends_gracefully_on_sigterm() -> None:
    with http_server(app=APP) as srv:
        async with httpx.AsyncClient(timeout=30) as client:
            body = listen("bye", toolsListChanged=True)
            async with client.stream("POST", srv.url, json=body, headers=modern_headers("subscriptions/listen")) as r:
                events = sse(r)
                assert (await asyncio.wait_for(anext(events), 20))[
                    "method"
                ] == "notifications/subscriptions/acknowledged"
                srv.proc.send_signal(signal.SIGTERM)
                end = await asyncio.wait_for(anext(events), 20)
                assert end["id"] == "bye" and end["result"]["_meta"][SUB_ID] == "bye"
        assert srv.proc.wait(20) == 0
