"""`Finished`, the runner's copy of the terminal records it stored: what it keeps, for how long, and that a get it
answers is the one the store would have given."""

from __future__ import annotations

import dataclasses
from typing import Any

from bemcp import App
from bemcp.tasks.finished import MAX_RECORD, Finished, estimate
from bemcp.tasks.model import TaskRecord, TaskStatus, new_task_id
from tests.tasks_harness import served

AT = 1_800_000_000.0


def record(status: TaskStatus = TaskStatus.COMPLETED, *, text: str = "ok", ttl_ms: int = 60_000) -> TaskRecord:
    result = {"content": [{"type": "text", "text": text}]}
    return TaskRecord(new_task_id(), "alice", "w1", "tools/call", "job", status, AT, AT, ttl_ms, 500, result=result)


def test_only_terminal_records_are_kept_and_each_until_it_expires() -> None:
    finished = Finished()
    working = record(TaskStatus.WORKING)
    finished.put(working, AT)
    assert finished.get(working.task_id, AT) is None and len(finished) == 0
    done = record(ttl_ms=1_000)
    finished.put(done, AT)
    assert finished.get(done.task_id, AT + 0.5) is done
    assert finished.get(done.task_id, AT + 1.0) is None  # expired: unknown, as the store says, and dropped
    assert len(finished) == 0 and finished.bytes == 0
    finished.put(record(ttl_ms=1_000), AT + 2)  # an expired record is never kept
    assert len(finished) == 0


def test_a_large_result_is_not_kept() -> None:
    finished = Finished()
    big = record(text="x" * MAX_RECORD)
    finished.put(big, AT)
    assert finished.get(big.task_id, AT) is None
    many = dataclasses.replace(record(), result={"content": [{"type": "text", "text": "a"}] * 1_000})
    finished.put(many, AT)
    assert finished.get(many.task_id, AT) is None  # too many values to be worth walking


def test_the_oldest_go_first_past_either_bound() -> None:
    by_count = Finished(max_items=3)
    recs = [record() for _ in range(5)]
    for rec in recs:
        by_count.put(rec, AT)
    assert [by_count.get(r.task_id, AT) is not None for r in recs] == [False, False, True, True, True]
    one = estimate((recs[0].result, None, None, None), MAX_RECORD)
    assert one is not None
    by_bytes = Finished(max_bytes=one * 2)
    for rec in recs:
        by_bytes.put(rec, AT)
    assert len(by_bytes) == 2 and by_bytes.bytes <= one * 2
    assert by_bytes.get(recs[-1].task_id, AT) is recs[-1]


def test_the_oldest_expired_record_goes_at_the_next_put() -> None:
    finished = Finished()
    short = record(ttl_ms=1_000)
    finished.put(short, AT)
    finished.put(record(), AT + 5)
    assert len(finished) == 1


def test_estimate_counts_strings_and_stops_past_its_budget() -> None:
    small = estimate({"content": [{"type": "text", "text": "hello"}]}, 10_000)
    assert small is not None and small > len("hello")
    assert estimate({"text": "y" * 500}, 100) is None


async def test_a_finished_task_is_answered_without_reading_the_store_and_only_to_its_owner() -> None:
    app = App("finished")

    @app.tool(task="optional")
    async def job() -> str:
        return "done"

    async with served(app) as s:
        store = s.runner.store
        reads: list[str] = []
        read = store.get

        async def counted(task_id: str, owner: str) -> Any:
            reads.append(task_id)
            return await read(task_id, owner)

        store.get = counted  # counts the reads; the real store still answers them
        task_id = (await s.result("tools/call", {"name": "job", "arguments": {}}))["taskId"]
        done = await s.settled(task_id)
        assert done["status"] == "completed" and done["result"]["content"][0]["text"] == "done"
        before = len(reads)
        for _ in range(5):
            again = await s.result("tasks/get", {"taskId": task_id})
            assert again == done
        assert len(reads) == before and s.runner.finished.hits >= 5
        stored = await read(task_id, "")
        assert stored == s.runner.finished.get(task_id, stored.created_at)  # the copy is the stored record
        assert await s.runner.get(task_id, "someone else") is None  # another owner: unknown, as from the store
        ack = await s.result("tasks/cancel", {"taskId": task_id})
        assert ack["resultType"] == "complete" and "status" not in ack  # an empty ack: a cancel changes nothing
        assert (await s.result("tasks/get", {"taskId": task_id}))["status"] == "completed"
