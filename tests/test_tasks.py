"""Tasks on 2026-07-28 (the `io.modelcontextprotocol/tasks` extension), served in this process: the protocol,
the runner and a real store (memory, and SQLite where durability is the point)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bemcp import App, Context, Text, ToolError
from bemcp.errors import McpError
from bemcp.protocol import codes
from bemcp.protocol.exchange import Exchange
from bemcp.runtime.cancel import CancelReason
from bemcp.runtime.runtime import RuntimeConfig
from bemcp.tasks.runner import TaskStoreUnavailable
from tests.tasks_harness import meta, served

FORM = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


def make_app() -> tuple[App, dict[str, Any]]:
    app = App("tasks-test")
    seen: dict[str, Any] = {"cancelled": 0, "runs": 0}

    @app.tool(task="optional")
    async def work(seconds: float = 0.05, text: str = "done") -> Text:
        seen["runs"] += 1
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            seen["cancelled"] += 1
            raise
        return Text(text)

    @app.tool(task="required")
    async def must() -> str:
        return "only as a task"

    @app.tool
    async def plain() -> str:
        return "plain"

    @app.tool(task="optional")
    async def tool_error() -> str:
        raise ToolError("no good")

    @app.tool(task="optional")
    async def protocol_error() -> str:
        raise McpError(codes.INVALID_PARAMS, "bad on purpose", {"why": "test"})

    @app.tool(task="optional")
    async def ask(ctx: Context) -> str:
        first = await ctx.elicit("ok?", FORM, key="q")
        second = await ctx.elicit("still ok?", FORM, key="q")  # the same tool key: a new question all the same
        return f"{first['content']['ok']} {second['content']['ok']}"

    @app.tool(task="optional")
    async def progress(ctx: Context) -> str:
        await ctx.progress(1, 4, "a quarter")
        await asyncio.sleep(0.3)
        return "progressed"

    @app.tool(task="optional", timeout=0.1)
    async def slow_with_deadline() -> str:
        await asyncio.sleep(5)
        return "never"

    return app, seen


async def test_a_task_is_created_durably_then_completes_with_the_result_inlined() -> None:
    app, _ = make_app()
    async with served(app) as s:
        created = await s.result("tools/call", {"name": "work", "arguments": {"seconds": 0.2, "text": "hi"}})
        assert created["resultType"] == "task" and created["status"] == "working"
        assert {"ttlMs", "pollIntervalMs", "createdAt", "lastUpdatedAt"} <= set(created)
        assert not {"result", "error", "inputRequests", "ttl", "pollInterval", "task"} & set(created)
        at_once = await s.result("tasks/get", {"taskId": created["taskId"]})
        assert at_once["status"] == "working" and "result" not in at_once
        done = await s.settled(created["taskId"])
        assert done["status"] == "completed"
        assert done["result"]["content"] == [{"type": "text", "text": "hi"}]
        assert done["resultType"] == "complete"


async def test_which_calls_become_tasks() -> None:
    app, _ = make_app()
    async with served(app) as s:
        plain = await s.result("tools/call", {"name": "plain", "arguments": {}, "task": {"ttl": 1000}})
        assert plain["resultType"] == "complete" and "taskId" not in plain  # a legacy hint changes nothing
        no_ext = await s.result("tools/call", {"name": "work", "arguments": {"seconds": 0}}, tasks=False)
        assert no_ext["resultType"] == "complete" and no_ext["content"][0]["text"] == "done"
        err = await s.error("tools/call", {"name": "must", "arguments": {}}, tasks=False)
        assert err["code"] == codes.MISSING_REQUIRED_CLIENT_CAPABILITY
        assert err["data"] == {"requiredCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}
        listed = {t["name"]: t.get("execution") for t in (await s.result("tools/list"))["tools"]}
        assert listed["work"] == {"taskSupport": "optional"} and listed["must"] == {"taskSupport": "required"}
        assert listed["plain"] is None
        caps = (await s.result("server/discover"))["capabilities"]
        assert caps["extensions"] == {"io.modelcontextprotocol/tasks": {}} and "tasks" not in caps


async def test_tool_errors_complete_and_protocol_errors_fail() -> None:
    app, _ = make_app()
    async with served(app) as s:
        t1 = (await s.result("tools/call", {"name": "tool_error", "arguments": {}}))["taskId"]
        t2 = (await s.result("tools/call", {"name": "protocol_error", "arguments": {}}))["taskId"]
        r1, r2 = await s.settled(t1), await s.settled(t2)
        assert r1["status"] == "completed" and r1["result"]["isError"] is True
        assert r2["status"] == "failed" and "result" not in r2
        assert r2["error"] == {"code": codes.INVALID_PARAMS, "message": "bad on purpose", "data": {"why": "test"}}


async def test_cancel_stops_the_running_coroutine_and_a_terminal_task_stays_as_it_is() -> None:
    app, seen = make_app()
    async with served(app) as s:
        task_id = (await s.result("tools/call", {"name": "work", "arguments": {"seconds": 30}}))["taskId"]
        await asyncio.sleep(0.05)
        ack = await s.result("tasks/cancel", {"taskId": task_id})
        assert set(ack) <= {"resultType", "_meta"} and ack["resultType"] == "complete"
        got = await s.settled(task_id)
        assert got["status"] == "cancelled"
        await asyncio.sleep(0.05)
        assert seen["cancelled"] == 1  # the tool itself saw the cancellation
        done = (await s.result("tools/call", {"name": "work", "arguments": {"seconds": 0}}))["taskId"]
        await s.settled(done)
        again = await s.result("tasks/cancel", {"taskId": done})
        assert again["resultType"] == "complete"
        assert (await s.result("tasks/get", {"taskId": done}))["status"] == "completed"


@pytest.mark.parametrize("method", ["tasks/get", "tasks/cancel", "tasks/update"])
async def test_unknown_ids_and_undeclared_clients(method: str) -> None:
    app, _ = make_app()
    async with served(app) as s:
        params: dict[str, Any] = {"taskId": "no-such-task-0123456789"}
        if method == "tasks/update":
            params["inputResponses"] = {}
        assert (await s.error(method, params))["code"] == codes.INVALID_PARAMS
        assert (await s.error(method, params, tasks=False))["code"] == codes.MISSING_REQUIRED_CLIENT_CAPABILITY
        assert (await s.error(method, {**params, "taskId": 7}))["code"] == codes.INVALID_PARAMS


@pytest.mark.parametrize("method", ["tasks/result", "tasks/list"])
async def test_the_methods_the_extension_removed_are_not_found(method: str) -> None:
    app, _ = make_app()
    async with served(app) as s:
        assert (await s.error(method, {"taskId": "x"}))["code"] == codes.METHOD_NOT_FOUND


async def test_input_rounds_use_fresh_keys_and_a_bad_answer_is_refused_without_loss() -> None:
    app, _ = make_app()
    async with served(app) as s:
        task_id = (await s.result("tools/call", {"name": "ask", "arguments": {}}))["taskId"]
        first = await s.until(task_id, lambda t: t["status"] == "input_required")
        (key1,) = first["inputRequests"]
        assert first["inputRequests"][key1]["method"] == "elicitation/create"
        bad = await s.error(
            "tasks/update", {"taskId": task_id, "inputResponses": {key1: {"action": "accept", "content": {}}}}
        )
        assert bad["code"] == codes.INVALID_PARAMS and key1 in bad["message"]
        for junk in (None, [], "x"):
            err = await s.error("tasks/update", {"taskId": task_id, "inputResponses": junk})
            assert err["code"] == codes.INVALID_PARAMS
        still = await s.result("tasks/get", {"taskId": task_id})
        assert still["status"] == "input_required" and list(still["inputRequests"]) == [key1]
        ok = {"action": "accept", "content": {"ok": True}}
        ack = await s.result("tasks/update", {"taskId": task_id, "inputResponses": {key1: ok, "nobody": {}}})
        assert ack["resultType"] == "complete" and "status" not in ack
        second = await s.until(task_id, lambda t: t["status"] == "input_required" and key1 not in t["inputRequests"])
        (key2,) = second["inputRequests"]
        assert key2 != key1  # keys are never reused within a task
        await s.result("tasks/update", {"taskId": task_id, "inputResponses": {key2: ok}})
        done = await s.settled(task_id)
        assert done["status"] == "completed" and done["result"]["content"][0]["text"] == "True True"


async def test_progress_becomes_the_status_message() -> None:
    app, _ = make_app()
    async with served(app) as s:
        task_id = (await s.result("tools/call", {"name": "progress", "arguments": {}}))["taskId"]
        got = await s.until(task_id, lambda t: t.get("statusMessage") == "1/4: a quarter")
        assert got["status"] == "working"
        assert (await s.settled(task_id))["result"]["content"][0]["text"] == "progressed"


async def test_a_task_past_its_deadline_fails_with_the_timeout_error() -> None:
    app, _ = make_app()
    async with served(app) as s:
        task_id = (await s.result("tools/call", {"name": "slow_with_deadline", "arguments": {}}))["taskId"]
        done = await s.settled(task_id)
        assert done["status"] == "failed" and done["error"]["code"] == codes.CALL_TIMEOUT
        assert done["error"]["data"]["reason"] == "deadline"


async def test_max_tasks_refuses_with_task_limit_and_a_working_task_holds_a_slot() -> None:
    app, _ = make_app()
    async with served(app, max_tasks=3) as s:
        ids = [
            (await s.result("tools/call", {"name": "work", "arguments": {"seconds": 30}}))["taskId"] for _ in range(3)
        ]
        refused = await s.error("tools/call", {"name": "work", "arguments": {"seconds": 30}})
        assert refused["code"] == codes.OVERLOADED
        assert refused["data"]["reason"] == "task_limit" and refused["data"]["retry_after_ms"] > 0
        await asyncio.sleep(0.05)
        assert s.server.runtime.admission.in_flight == 3  # each working task holds an admission slot
        for task_id in ids:
            await s.result("tasks/cancel", {"taskId": task_id})
        for task_id in ids:
            await s.settled(task_id)
        await asyncio.sleep(0.05)
        assert s.server.runtime.admission.in_flight == 0
        assert (await s.result("tools/call", {"name": "work", "arguments": {"seconds": 0}}))["resultType"] == "task"


async def test_a_task_that_finds_no_free_slot_waits_for_one() -> None:
    app, _ = make_app()
    cfg = RuntimeConfig(task_log=False, max_concurrency=1, queue_size=0, queue_timeout_ms=0)
    async with served(app, cfg) as s:
        first = (await s.result("tools/call", {"name": "work", "arguments": {"seconds": 0.3}}))["taskId"]
        await asyncio.sleep(0.02)
        second = (await s.result("tools/call", {"name": "work", "arguments": {"seconds": 0}}))["taskId"]
        waiting = await s.until(second, lambda t: "waiting for a free slot" in t.get("statusMessage", ""))
        assert waiting["status"] == "working"
        assert (await s.settled(first))["status"] == "completed"
        assert (await s.settled(second))["status"] == "completed"


async def test_a_task_waiting_for_its_client_lends_its_slot_and_takes_it_back_before_the_queue() -> None:
    """One slot, no queue: a task in input_required would otherwise refuse every other call for as long as its
    client thinks. It lends the slot; once answered it takes it back as soon as one is free."""
    app, _ = make_app()
    cfg = RuntimeConfig(task_log=False, max_concurrency=1, queue_size=0, queue_timeout_ms=0)
    async with served(app, cfg) as s:
        adm = s.server.runtime.admission
        asking = (await s.result("tools/call", {"name": "ask", "arguments": {}}))["taskId"]
        pending = await s.until(asking, lambda t: t["status"] == "input_required")
        assert (adm.in_flight, adm.lent) == (0, 1)
        assert (await s.result("tools/call", {"name": "plain", "arguments": {}}))["content"][0]["text"] == "plain"
        # A task takes the lent slot; the answer comes while it runs: the asking task waits for the slot back.
        busy = (await s.result("tools/call", {"name": "work", "arguments": {"seconds": 0.3}}))["taskId"]
        await s.until(busy, lambda t: "waiting" not in t.get("statusMessage", "") and adm.in_flight == 1)
        ok = {"action": "accept", "content": {"ok": True}}
        (key,) = pending["inputRequests"]
        await s.result("tasks/update", {"taskId": asking, "inputResponses": {key: ok}})
        await asyncio.sleep(0.05)
        assert adm.in_flight == 1 and adm.snapshot().lent == 1  # answered, waiting for its slot: not past the limit
        # Full: the busy task holds the slot, and the answered one is next.
        refused = await s.error("tools/call", {"name": "plain", "arguments": {}})
        assert refused["code"] == codes.OVERLOADED
        assert (await s.settled(busy))["status"] == "completed"
        second = await s.until(asking, lambda t: t["status"] == "input_required" and key not in t["inputRequests"])
        (key2,) = second["inputRequests"]
        await s.result("tasks/update", {"taskId": asking, "inputResponses": {key2: ok}})
        assert (await s.settled(asking))["result"]["content"][0]["text"] == "True True"
        await asyncio.sleep(0.05)
        assert (adm.in_flight, adm.lent, adm.peak_in_flight) == (0, 0, 1)


async def test_a_task_cancelled_while_it_waits_for_its_client_gives_back_no_more_than_it_took() -> None:
    app, _ = make_app()
    cfg = RuntimeConfig(task_log=False, max_concurrency=2)
    async with served(app, cfg) as s:
        adm = s.server.runtime.admission
        ids = [(await s.result("tools/call", {"name": "ask", "arguments": {}}))["taskId"] for _ in range(3)]
        for task_id in ids:
            await s.until(task_id, lambda t: t["status"] == "input_required")
        assert (adm.in_flight, adm.lent) == (0, 3)  # three waiting tasks on two slots: none holds one
        for task_id in ids:
            await s.result("tasks/cancel", {"taskId": task_id})
        for task_id in ids:
            assert (await s.settled(task_id))["status"] == "cancelled"
        await asyncio.sleep(0.05)
        assert (adm.in_flight, adm.lent) == (0, 0)
        assert adm.enter()  # the fast lane is open again: nothing left waiting or lent
        adm.leave()


async def test_stopping_the_server_fails_its_unfinished_tasks_with_the_reason(tmp_path: Path) -> None:
    app, _ = make_app()
    async with served(app, store="sqlite", state_dir=str(tmp_path), worker_id="w") as s:
        task_id = (await s.result("tools/call", {"name": "work", "arguments": {"seconds": 30}}))["taskId"]
        await asyncio.sleep(0.05)
    async with served(app, store="sqlite", state_dir=str(tmp_path), worker_id="w") as s:
        got = await s.result("tasks/get", {"taskId": task_id})
        assert got["status"] == "failed" and "stopped while the task ran" in got["error"]["message"]


async def test_many_concurrent_tasks_each_answer_their_own_result(tmp_path: Path) -> None:
    app, _ = make_app()
    async with served(app, store="sqlite", state_dir=str(tmp_path)) as s:
        calls = [
            s.result("tools/call", {"name": "work", "arguments": {"seconds": 0.05, "text": f"r{i}"}})
            for i in range(300)
        ]
        ids = [c["taskId"] for c in await asyncio.gather(*calls)]
        assert len(set(ids)) == 300
        results = await asyncio.gather(*(s.settled(t, timeout=30) for t in ids))
        assert [r["result"]["content"][0]["text"] for r in results] == [f"r{i}" for i in range(300)]


async def test_a_listen_stream_naming_a_task_hears_its_status_changes() -> None:
    app, _ = make_app()
    async with served(app) as s:
        task_id = (await s.result("tools/call", {"name": "ask", "arguments": {}}))["taskId"]
        heard: list[dict[str, Any]] = []

        async def send(msg: dict[str, Any]) -> None:
            heard.append(msg)

        listen = {
            "jsonrpc": "2.0",
            "id": "listen-1",
            "method": "subscriptions/listen",
            "params": {"notifications": {"taskIds": [task_id]}, "_meta": meta()},
        }
        ex = Exchange(s.peer, "listen-1", "subscriptions/listen", send)
        stream = asyncio.create_task(s.server.handle_message(listen, s.peer, ex))
        ex.task = stream
        pending = await s.until(task_id, lambda t: t["status"] == "input_required")
        (key,) = pending["inputRequests"]
        ok = {"action": "accept", "content": {"ok": True}}
        await s.result("tasks/update", {"taskId": task_id, "inputResponses": {key: ok}})
        second = await s.until(task_id, lambda t: t["status"] == "input_required" and key not in t["inputRequests"])
        await s.result("tasks/update", {"taskId": task_id, "inputResponses": {k: ok for k in second["inputRequests"]}})
        await s.settled(task_id)
        for _ in range(100):
            if any(m["params"].get("status") == "completed" for m in heard if m["method"] == "notifications/tasks"):
                break
            await asyncio.sleep(0.02)
        ack = heard[0]
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["notifications"] == {"taskIds": [task_id]}
        # Each carries the task as it is when sent: changes close together may come as one.
        statuses = [m["params"]["status"] for m in heard if m["method"] == "notifications/tasks"]
        assert statuses[0] == "input_required" and statuses[-1] == "completed", statuses
        last = [m for m in heard if m["method"] == "notifications/tasks"][-1]["params"]
        assert last["taskId"] == task_id and last["result"]["content"][0]["text"] == "True True"
        assert last["_meta"]["io.modelcontextprotocol/subscriptionId"] == "listen-1"
        ex.cancel(CancelReason.DISCONNECT)
        await asyncio.gather(stream, return_exceptions=True)
        refused = await s.error("subscriptions/listen", {"notifications": {"taskIds": [task_id]}}, tasks=False)
        assert refused["code"] == codes.MISSING_REQUIRED_CLIENT_CAPABILITY


async def test_a_task_past_its_ttl_is_unknown_and_then_swept() -> None:
    app, _ = make_app()
    async with served(app, ttl_s=0.5, sweep_interval_s=0.2) as s:
        task_id = (await s.result("tools/call", {"name": "work", "arguments": {"seconds": 0}}))["taskId"]
        done = await s.settled(task_id)
        assert done["ttlMs"] == 500 and done["status"] == "completed"
        await asyncio.sleep(0.6)
        gone = await s.error("tasks/get", {"taskId": task_id})
        assert gone["code"] == codes.INVALID_PARAMS
        for _ in range(50):
            if s.runner._sweeper.swept:
                break
            await asyncio.sleep(0.05)
        assert s.runner._sweeper.swept >= 1


async def test_huge_input_responses_get_a_clear_error_and_the_task_keeps_waiting() -> None:
    app, _ = make_app()
    async with served(app) as s:
        task_id = (await s.result("tools/call", {"name": "ask", "arguments": {}}))["taskId"]
        pending = await s.until(task_id, lambda t: t["status"] == "input_required")
        (key,) = pending["inputRequests"]
        many = {f"k{i}": {"action": "accept"} for i in range(5000)}
        err = await s.error("tasks/update", {"taskId": task_id, "inputResponses": many})
        assert err["code"] == codes.INVALID_PARAMS and "at most" in err["message"]
        big = {key: {"action": "accept", "content": {"ok": "x" * 3_000_000}}}
        err = await s.error("tasks/update", {"taskId": task_id, "inputResponses": big})
        assert err["code"] == codes.INVALID_PARAMS and key in err["message"]
        still = await s.result("tasks/get", {"taskId": task_id})
        assert still["status"] == "input_required" and list(still["inputRequests"]) == [key]
        await s.result("tasks/cancel", {"taskId": task_id})
        assert (await s.settled(task_id))["status"] == "cancelled"


async def test_a_store_that_cannot_open_stops_the_start_with_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    app, _ = make_app()
    with pytest.raises(TaskStoreUnavailable, match=r"cannot open the task store in .*a-file"):
        async with served(app, store="sqlite", state_dir=str(blocker / "state")):
            pass


async def test_concurrent_creations_never_pass_max_tasks(tmp_path: Path) -> None:
    app, _ = make_app()
    async with served(app, store="sqlite", state_dir=str(tmp_path), max_tasks=10) as s:
        answers = await asyncio.gather(
            *(s.rpc("tools/call", {"name": "work", "arguments": {"seconds": 30}}) for _ in range(40))
        )
        created = [a for a in answers if "result" in a]
        refused = [a for a in answers if "error" in a]
        assert len(created) == 10 and len(refused) == 30
        assert {a["error"]["data"]["reason"] for a in refused} == {"task_limit"}
        assert len(s.runner.live) == 10
