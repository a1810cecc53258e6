"""Tasks on 2025-11-25 (experimental in the core spec): the client asks for a task with `params.task`, fetches
the result with `tasks/result`, lists its tasks, and answers the task's questions on the `tasks/result` stream."""

from __future__ import annotations

import asyncio
from typing import Any

from bemcp import App, Context, ToolError
from bemcp.protocol import codes
from tests.tasks_harness import Session, served

FORM = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def make_app() -> App:
    app = App("tasks-v1-test")

    @app.tool(task="optional")
    async def work(seconds: float = 0.05, text: str = "done") -> str:
        await asyncio.sleep(seconds)
        return text

    @app.tool(task="required")
    async def must() -> str:
        return "as a task"

    @app.tool
    async def plain() -> str:
        return "plain"

    @app.tool(task="optional")
    async def broken() -> str:
        raise ToolError("no good")

    @app.tool(task="optional")
    async def ask_name(ctx: Context) -> str:
        got = await ctx.elicit("Name?", FORM, key="name")
        return f"hello {got['content']['name']}"

    return app


async def test_negotiation_and_creation() -> None:
    async with served(make_app()) as s:
        session = Session(s.server)
        init = await session.start()
        assert init["capabilities"]["tasks"] == {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        tools = {t["name"]: t for t in (await session.result("tools/list"))["tools"]}
        assert tools["work"]["execution"] == {"taskSupport": "optional"} and "execution" not in tools["plain"]
        created = await session.result("tools/call", {"name": "work", "arguments": {}, "task": {"ttl": 60_000}})
        task = created["task"]
        assert task["status"] == "working" and task["ttl"] == 60_000 and task["pollInterval"] > 0
        assert "resultType" not in created
        sync = await session.result("tools/call", {"name": "work", "arguments": {"seconds": 0}})
        assert sync["content"] == [{"type": "text", "text": "done"}]  # no `task` param: a plain call
        assert (await session.error("tools/call", {"name": "must", "arguments": {}}))["code"] == codes.METHOD_NOT_FOUND
        forbidden = await session.error("tools/call", {"name": "plain", "arguments": {}, "task": {}})
        assert forbidden["code"] == codes.METHOD_NOT_FOUND


async def test_result_blocks_until_the_end_and_carries_the_related_task() -> None:
    async with served(make_app()) as s:
        session = Session(s.server)
        await session.start()
        task_id = (await session.result("tools/call", {"name": "work", "arguments": {"seconds": 0.2}, "task": {}}))[
            "task"
        ]["taskId"]
        got = await session.result("tasks/get", {"taskId": task_id})
        assert got["status"] == "working" and "ttl" in got
        res = await session.result("tasks/result", {"taskId": task_id})
        assert res["content"] == [{"type": "text", "text": "done"}]
        assert res["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task_id}
        assert (await session.result("tasks/get", {"taskId": task_id}))["status"] == "completed"


async def test_a_tool_error_shows_as_failed_but_its_result_is_what_the_call_returned() -> None:
    async with served(make_app()) as s:
        session = Session(s.server)
        await session.start()
        task_id = (await session.result("tools/call", {"name": "broken", "arguments": {}, "task": {}}))["task"][
            "taskId"
        ]
        res = await session.result("tasks/result", {"taskId": task_id})
        assert res["isError"] is True
        assert (await session.result("tasks/get", {"taskId": task_id}))["status"] == "failed"


async def test_list_pages_only_this_session_s_tasks_and_cancel_follows_the_v1_rules() -> None:
    async with served(make_app()) as s:
        mine, other = Session(s.server), Session(s.server)
        await mine.start()
        await other.start()
        ids = [
            (await mine.result("tools/call", {"name": "work", "arguments": {"seconds": 30}, "task": {}}))["task"][
                "taskId"
            ]
            for _ in range(60)
        ]
        theirs = (await other.result("tools/call", {"name": "work", "arguments": {"seconds": 30}, "task": {}}))["task"]
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await mine.result("tasks/list", {"cursor": cursor} if cursor else {})
            seen += [t["taskId"] for t in page["tasks"]]
            cursor = page.get("nextCursor")
            if cursor is None:
                break
        assert seen == ids  # oldest first, every one once, none of the other session's
        foreign = await mine.error("tasks/get", {"taskId": theirs["taskId"]})
        assert foreign["code"] == codes.INVALID_PARAMS
        assert (await mine.error("tasks/cancel", {"taskId": theirs["taskId"]}))["code"] == codes.INVALID_PARAMS
        cancelled = await mine.result("tasks/cancel", {"taskId": ids[0]})
        assert cancelled["status"] == "cancelled" and cancelled["taskId"] == ids[0]
        again = await mine.error("tasks/cancel", {"taskId": ids[0]})
        assert again["code"] == codes.INVALID_PARAMS and "terminal" in again["message"]
        res = await mine.error("tasks/result", {"taskId": ids[0]})
        assert res["data"]["status"] == "cancelled"


async def test_the_task_s_question_reaches_the_client_on_the_result_stream() -> None:
    asked: list[dict[str, Any]] = []

    async def answer(request: dict[str, Any]) -> dict[str, Any]:
        asked.append(request)
        return {"action": "accept", "content": {"name": "Ada"}}

    async with served(make_app()) as s:
        session = Session(s.server, answer)
        await session.start()
        task_id = (await session.result("tools/call", {"name": "ask_name", "arguments": {}, "task": {}}))["task"][
            "taskId"
        ]
        res = await session.result("tasks/result", {"taskId": task_id})
        assert res["content"][0]["text"] == "hello Ada"
        (req,) = asked
        assert req["method"] == "elicitation/create"
        assert req["params"]["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task_id}


async def test_status_notifications_reach_the_session_that_owns_the_task_only() -> None:
    async with served(make_app()) as s:
        mine, other = Session(s.server), Session(s.server)
        heard: dict[str, list[dict[str, Any]]] = {"mine": [], "other": []}
        for name, session in (("mine", mine), ("other", other)):
            await session.start()

            async def collect(msg: dict[str, Any], into: list[dict[str, Any]] = heard[name]) -> None:
                into.append(msg)

            session.peer.standalone = collect
            s.server.peers.add(session.peer)
        await other.result("tools/call", {"name": "work", "arguments": {"seconds": 0}, "task": {}})  # an owner
        task_id = (await mine.result("tools/call", {"name": "work", "arguments": {"seconds": 0.05}, "task": {}}))[
            "task"
        ]["taskId"]
        await mine.result("tasks/result", {"taskId": task_id})
        for _ in range(100):
            if any(m["params"].get("taskId") == task_id for m in heard["mine"]):
                break
            await asyncio.sleep(0.02)
        (note,) = [m for m in heard["mine"] if m["params"].get("taskId") == task_id]
        assert note["method"] == "notifications/tasks/status" and note["params"]["status"] == "completed"
        assert "ttl" in note["params"] and "_meta" not in note["params"]
        assert not [m for m in heard["other"] if m["params"].get("taskId") == task_id]
