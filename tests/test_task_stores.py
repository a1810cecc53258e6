"""The task stores against one contract: the in-memory store, SQLite (a real file, real threads) and Redis (a real
redis-server on a loopback port), with a second process or a second connection where the rule is about
concurrency."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import sqlite3
import subprocess
import sys
import textwrap
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bemcp.tasks.memstore import MemoryTaskStore
from bemcp.tasks.model import TaskIds, TaskRecord, TaskStatus, new_task_id
from bemcp.tasks.redisstore import RedisTaskStore
from bemcp.tasks.sqlitestore import SqliteTaskStore
from bemcp.tasks.store import TaskNotFound, TaskStore
from tests.redis_server import redis_server

W, IR, DONE, FAILED, CANCELLED = (
    TaskStatus.WORKING,
    TaskStatus.INPUT_REQUIRED,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def task(
    owner: str = "alice",
    *,
    worker: str = "w1",
    ttl_ms: int = 60_000,
    at: float = 1_800_000_000.0,
    name: str = "slow",
    request: dict[str, Any] | None = None,
) -> TaskRecord:
    return TaskRecord(new_task_id(), owner, worker, "tools/call", name, W, at, at, ttl_ms, 500, request=request)


ASK = {"method": "elicitation/create", "params": {"message": "which file?", "requestedSchema": {"type": "object"}}}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store_and_clock(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[TaskStore, Clock]]:
    clock = Clock()
    store: TaskStore
    if request.param == "memory":
        store = MemoryTaskStore(clock)
    elif request.param == "sqlite":
        store = SqliteTaskStore(tmp_path / "state" / "tasks.sqlite3", clock=clock)
    else:  # a prefix per test: one server serves the module
        store = RedisTaskStore(request.getfixturevalue("redis_url"), prefix=f"{new_task_id()}:", clock=clock)
    await store.start()
    try:
        yield store, clock
    finally:
        await store.close()


async def test_ids_are_128_random_bits() -> None:
    source = TaskIds(batch=7)  # a batch that does not divide the count: refills mid-way
    for ids in ({new_task_id() for _ in range(10_000)}, {source.next() for _ in range(10_000)}):
        assert len(ids) == 10_000
        assert all(len(i) == 22 for i in ids)  # 16 bytes, URL-safe base64 without padding
        assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)


async def test_a_task_is_seen_by_its_owner_only(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, _ = store_and_clock
    t = task("alice")
    await store.create(t)
    assert await store.get(t.task_id, "alice") == t
    assert await store.get(t.task_id, "mallory") is None  # someone else's task is unknown, not forbidden
    assert await store.get(new_task_id(), "alice") is None
    with pytest.raises(ValueError, match="exists"):
        await store.create(t)


async def test_a_terminal_status_never_changes(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, clock = store_and_clock
    t = task()
    await store.create(t)
    clock.now += 1
    assert await store.update(t.task_id, IR, "which file?")
    got = await store.get(t.task_id, "alice")
    assert got is not None and (got.status, got.status_message, got.updated_at) == (IR, "which file?", clock.now)
    done = await store.finish(t.task_id, DONE, result={"content": [{"type": "text", "text": "42"}]})
    assert done.status is DONE and done.result == {"content": [{"type": "text", "text": "42"}]}
    late = await store.finish(t.task_id, CANCELLED, message="cancelled by the client")
    assert late == done  # the first terminal status stands, and the loser learns it
    assert not await store.update(t.task_id, W, "back to work?")
    assert await store.get(t.task_id, "alice") == done
    with pytest.raises(TaskNotFound):
        await store.finish(new_task_id(), FAILED, error={"code": -32603, "message": "x"})
    with pytest.raises(TaskNotFound):
        await store.update(new_task_id(), W, None)
    with pytest.raises(ValueError, match="not terminal"):
        await store.finish(t.task_id, W)


async def test_ttl_expiry_hides_then_sweeps(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, clock = store_and_clock
    short, long = task(ttl_ms=1_000, at=clock.now), task(ttl_ms=10_000, at=clock.now)
    await store.create(short)
    await store.create(long)
    clock.now += 1.0  # the short one's TTL has just ended
    assert await store.get(short.task_id, "alice") is None
    assert await store.get(long.task_id, "alice") is not None
    assert [r.task_id for r in (await store.list("alice", None, 10))[0]] == [long.task_id]
    assert await store.sweep() == 1
    clock.now += 9.0
    assert await store.sweep() == 1
    assert await store.sweep() == 0


async def test_list_pages_an_owner_s_tasks_in_creation_order(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, _ = store_and_clock
    mine = [task("alice") for _ in range(25)]
    for i, t in enumerate(mine):
        await store.create(t)
        await store.create(task(f"other-{i}"))
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.list("alice", cursor, 10)
        seen += [r.task_id for r in page]
        pages += 1
        if cursor is None:
            break
    assert seen == [t.task_id for t in mine] and pages == 3
    assert await store.list("mallory", mine[3].task_id, 10) == ([], None)  # another owner's cursor leads nowhere


async def test_interrupt_fails_the_restarted_worker_s_unfinished_tasks(
    store_and_clock: tuple[TaskStore, Clock],
) -> None:
    store, _ = store_and_clock
    working, waiting, finished, elsewhere = task(), task(), task(), task(worker="w2")
    for t in (working, waiting, finished, elsewhere):
        await store.create(t)
    await store.update(waiting.task_id, IR, None)
    await store.finish(finished.task_id, DONE, result={"content": []})
    error = {"code": -32603, "message": "the server restarted while the task ran"}
    assert await store.interrupt("w1", error, "interrupted by a restart") == (2, [])
    for t in (working, waiting):
        got = await store.get(t.task_id, "alice")
        assert got is not None and got.status is FAILED and got.error == error
    got = await store.get(finished.task_id, "alice")
    assert got is not None and got.status is DONE
    got = await store.get(elsewhere.task_id, "alice")
    assert got is not None and got.status is W


async def test_a_task_keeps_its_input_requests_and_request(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, _ = store_and_clock
    t = dataclasses.replace(task(request={"name": "slow", "arguments": {"n": [1, 2.5, {}]}}), input_requests={"a": ASK})
    await store.create(t)
    assert await store.get(t.task_id, "alice") == t


async def test_need_input_adds_requests_by_key(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, clock = store_and_clock
    t = task()
    await store.create(t)
    clock.now += 1
    ask_b = {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 10}}
    assert await store.need_input(t.task_id, {"a": ASK}, "need a")
    assert await store.need_input(t.task_id, {"b": ask_b}, "need b")
    got = await store.get(t.task_id, "alice")
    assert got is not None and (got.status, got.status_message, got.updated_at) == (IR, "need b", clock.now)
    assert got.input_requests == {"a": ASK, "b": ask_b}
    replaced = {"method": "elicitation/create", "params": {"message": "which folder?"}}
    assert await store.need_input(t.task_id, {"a": replaced}, None)
    got = await store.get(t.task_id, "alice")
    assert got is not None and got.input_requests == {"a": replaced, "b": ask_b}
    assert await store.update(t.task_id, IR, "still waiting")  # input_required again keeps what is pending
    got = await store.get(t.task_id, "alice")
    assert got is not None and got.input_requests == {"a": replaced, "b": ask_b}
    assert await store.update(t.task_id, W, "resumed")  # back to work: nothing is pending any more
    got = await store.get(t.task_id, "alice")
    assert got is not None and (got.status, got.input_requests) == (W, None)
    await store.finish(t.task_id, DONE, result={"content": []})
    assert not await store.need_input(t.task_id, {"a": ASK}, "too late")
    got = await store.get(t.task_id, "alice")
    assert got is not None and (got.status, got.input_requests) == (DONE, None)
    with pytest.raises(TaskNotFound):
        await store.need_input(new_task_id(), {"a": ASK}, None)


async def test_answers_clear_pending_keys_and_are_taken_once(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, clock = store_and_clock
    t = task()
    await store.create(t)
    await store.need_input(t.task_id, {"a": ASK, "b": ASK}, "two questions")
    before = await store.get(t.task_id, "alice")
    clock.now += 1
    assert await store.answer(t.task_id, "alice", {"nobody-asked": 1}) == before  # unknown keys are ignored
    assert await store.signals("w1") == []  # and nothing was answered, so the worker is not woken
    accept = {"action": "accept", "content": {"file": "a.txt"}}
    rec = await store.answer(t.task_id, "alice", {"a": accept, "nobody-asked": 2})
    assert rec is not None and rec == await store.get(t.task_id, "alice")
    assert (rec.status, rec.input_requests, rec.updated_at) == (IR, {"b": ASK}, clock.now)
    assert await store.signals("w1") == [(t.task_id, "input")]
    assert await store.take_answers(t.task_id) == {"a": accept}
    assert await store.take_answers(t.task_id) == {}
    rec = await store.answer(t.task_id, "alice", {"a": "answered twice", "b": [1, 2, {}]})
    assert rec is not None and rec.status is IR and not rec.input_requests  # no key is pending any more
    assert await store.take_answers(t.task_id) == {"b": [1, 2, {}]}  # `a` was no longer pending
    assert await store.signals("w1") == [(t.task_id, "input")]
    assert await store.answer(t.task_id, "mallory", {"b": 1}) is None
    assert await store.answer(new_task_id(), "alice", {"b": 1}) is None
    await store.need_input(t.task_id, {"c": ASK}, None)
    done = await store.finish(t.task_id, DONE, result={"content": []})
    assert await store.answer(t.task_id, "alice", {"c": 1}) == done  # a terminal task is returned as is
    assert await store.take_answers(t.task_id) == {} and await store.signals("w1") == []
    short = task(ttl_ms=1_000, at=clock.now)
    await store.create(short)
    await store.need_input(short.task_id, {"a": ASK}, None)
    clock.now += 1
    assert await store.answer(short.task_id, "alice", {"a": 1}) is None  # expired: unknown, as for `get`
    assert await store.take_answers(short.task_id) == {} and await store.signals("w1") == []


async def test_cancel_wins_on_an_unfinished_task_and_signals_its_worker(
    store_and_clock: tuple[TaskStore, Clock],
) -> None:
    store, clock = store_and_clock
    t, done = task(worker="w7"), task(worker="w7")
    await store.create(t)
    await store.create(done)
    clock.now += 1
    rec = await store.cancel(t.task_id, "alice", "cancelled by the client")
    assert rec is not None and rec == await store.get(t.task_id, "alice")
    assert (rec.status, rec.status_message, rec.updated_at, rec.result) == (
        CANCELLED,
        "cancelled by the client",
        clock.now,
        None,
    )
    assert await store.signals("w7") == [(t.task_id, "cancel")]
    assert await store.cancel(t.task_id, "alice", "again") == rec  # already cancelled: no second signal
    assert await store.finish(t.task_id, DONE, result={"content": []}) == rec  # and a late completion loses
    finished = await store.finish(done.task_id, DONE, result={"content": []})
    assert await store.cancel(done.task_id, "alice", "too late") == finished
    assert await store.signals("w7") == []
    assert await store.cancel(t.task_id, "mallory", None) is None
    assert await store.cancel(new_task_id(), "alice", None) is None
    assert await store.signals("w7") == []


async def test_signals_are_per_worker_oldest_first_and_taken_once(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, clock = store_and_clock
    mine, theirs, asking = [task() for _ in range(4)], task(worker="w2"), task()
    for t in (*mine, theirs, asking):
        await store.create(t)
    await store.need_input(asking.task_id, {"a": ASK}, None)
    expected = []
    for i, t in enumerate(mine):
        clock.now += 0.001
        await store.cancel(t.task_id, "alice", None)
        expected.append((t.task_id, "cancel"))
        if i == 1:
            await store.answer(asking.task_id, "alice", {"a": {"action": "decline"}})
            expected.append((asking.task_id, "input"))
    await store.cancel(theirs.task_id, "alice", None)
    assert await store.signals("w1", limit=2) == expected[:2]
    assert await store.signals("w1", limit=2) == expected[2:4]
    assert await store.signals("w2") == [(theirs.task_id, "cancel")]
    assert await store.signals("w1") == expected[4:]
    assert await store.signals("w1") == [] and await store.signals("w2") == []


async def test_leases_end_with_the_clock(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, clock = store_and_clock
    await store.heartbeat("w1", 30)
    await store.heartbeat("w2", 60)
    assert await store.expired_workers() == []
    clock.now += 30
    assert await store.expired_workers() == ["w1"]
    await store.heartbeat("w1", 30)  # renewed: alive again
    assert await store.expired_workers() == []
    clock.now += 31
    assert sorted(await store.expired_workers()) == ["w1", "w2"]
    assert await store.interrupt("w1", {"code": -32603, "message": "lost"}, "lost") == (0, [])
    assert await store.expired_workers() == ["w2"]  # interrupting a worker forgets its lease


async def test_interrupt_hands_resumable_tasks_to_the_claimer(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, clock = store_and_clock
    req = {"name": "resumable", "arguments": {"n": 1}}
    running, waiting = task(name="resumable", request=req), task(name="resumable", request=req)
    no_request, not_resumable = task(name="resumable"), task(request={"name": "slow", "arguments": {}})
    finished, elsewhere = task(name="resumable", request=req), task(worker="w2", name="resumable", request=req)
    for t in (running, waiting, no_request, not_resumable, finished, elsewhere):
        await store.create(t)
    await store.need_input(waiting.task_id, {"a": ASK}, "which file?")
    done = await store.finish(finished.task_id, DONE, result={"content": []})
    await store.heartbeat("w1", 10)
    clock.now += 11
    assert await store.expired_workers() == ["w1"]
    error = {"code": -32603, "message": "the worker died"}
    failed, claimed = await store.interrupt(
        "w1", error, "interrupted", resumable=frozenset({"resumable"}), claimer="w3"
    )
    assert failed == 2
    assert [r.task_id for r in claimed] == [running.task_id, waiting.task_id]  # creation order
    for rec in claimed:
        assert (rec.worker, rec.status, rec.input_requests, rec.request, rec.updated_at) == (
            "w3",
            W,
            None,
            req,
            clock.now,
        )
        assert await store.get(rec.task_id, "alice") == rec
    for t in (no_request, not_resumable):
        got = await store.get(t.task_id, "alice")
        assert got is not None and (got.status, got.error, got.status_message) == (FAILED, error, "interrupted")
    assert await store.get(finished.task_id, "alice") == done
    got = await store.get(elsewhere.task_id, "alice")
    assert got is not None and (got.worker, got.status) == ("w2", W)
    assert await store.expired_workers() == []  # the dead worker's lease is gone
    assert await store.interrupt("w1", error, "again", resumable=frozenset({"resumable"}), claimer="w4") == (0, [])
    # The claimer's tasks are its own now; without a claimer, resumable tasks fail like the rest.
    assert await store.interrupt("w3", error, "no claimer", resumable=frozenset({"resumable"})) == (2, [])
    got = await store.get(running.task_id, "alice")
    assert got is not None and (got.status, got.status_message) == (FAILED, "no claimer")


async def test_a_restarted_worker_claims_its_own_resumable_tasks(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, _ = store_and_clock
    mine, other = task(name="resumable", request={"name": "resumable"}), task()
    await store.create(mine)
    await store.create(other)
    error = {"code": -32603, "message": "restarted"}
    failed, claimed = await store.interrupt("w1", error, "restarted", resumable=frozenset({"resumable"}), claimer="w1")
    assert failed == 1 and [(r.task_id, r.worker, r.status) for r in claimed] == [(mine.task_id, "w1", W)]
    assert await store.get(mine.task_id, "alice") == claimed[0]
    assert await store.finish(mine.task_id, DONE, result={"content": []})  # it still runs, and can finish
    assert await store.interrupt("w1", error, "restarted", resumable=frozenset({"resumable"}), claimer="w1") == (0, [])


async def test_sweep_removes_the_answers_and_signals_of_swept_tasks(store_and_clock: tuple[TaskStore, Clock]) -> None:
    store, clock = store_and_clock
    short, long = task(ttl_ms=1_000, at=clock.now), task(ttl_ms=3_600_000, at=clock.now)
    for t in (short, long):
        await store.create(t)
        await store.need_input(t.task_id, {"a": ASK}, None)
        await store.answer(t.task_id, "alice", {"a": {"action": "accept"}})
    clock.now += 1
    assert await store.sweep() == 1
    assert await store.take_answers(short.task_id) == {}
    assert await store.take_answers(long.task_id) == {"a": {"action": "accept"}}
    assert await store.signals("w1") == [(long.task_id, "input")]  # the swept task's signal went with it
    await store.need_input(long.task_id, {"b": ASK}, None)
    await store.answer(long.task_id, "alice", {"b": 1})
    await store.cancel(long.task_id, "alice", None)
    clock.now += 600
    assert await store.sweep() == 0
    assert await store.signals("w1", limit=1) == [(long.task_id, "input")]  # ten minutes old: kept
    clock.now += 1
    assert await store.sweep() == 0
    assert await store.signals("w1") == []  # older than ten minutes: the worker never came back for it
    assert await store.take_answers(long.task_id) == {"b": 1}  # the task lives: its answers stay


# -- SQLite and Redis: two connections, two processes ------------------------------------------------------------


def shared_store(kind: str, tmp_path: Path, redis_url: str, prefix: str) -> tuple[TaskStore, str]:
    """A store that other connections and processes can share, and the Python expression that opens it again."""
    if kind == "sqlite":
        path = str(tmp_path / "state" / "tasks.sqlite3")
        return SqliteTaskStore(path), f"SqliteTaskStore({path!r})"
    return RedisTaskStore(redis_url, prefix=prefix), f"RedisTaskStore({redis_url!r}, prefix={prefix!r})"


@pytest.fixture(params=["sqlite", "redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], tuple[TaskStore, str]]:
    """Opens stores on one shared state: one file for SQLite, one key prefix on one server for Redis."""
    kind = str(request.param)
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""
    prefix = f"{new_task_id()}:"
    return lambda: shared_store(kind, tmp_path, url, prefix)


async def test_cancel_racing_completion_has_one_winner_across_connections(
    shared: Callable[[], tuple[TaskStore, str]],
) -> None:
    """1,000 races, each between two stores on one state (two SQLite connections and writer threads, or two
    Redis clients)."""
    (a, _), (b, _) = shared(), shared()
    await a.start()
    await b.start()
    try:
        records = [task() for _ in range(1_000)]
        await asyncio.gather(*(a.create(r) for r in records))
        pairs = await asyncio.gather(
            *(
                asyncio.gather(
                    a.finish(r.task_id, CANCELLED, message="cancelled"),
                    b.finish(r.task_id, DONE, result={"content": [{"type": "text", "text": r.task_id}]}),
                )
                for r in records
            )
        )
        for r, (from_a, from_b) in zip(records, pairs, strict=True):
            stored = await a.get(r.task_id, "alice")
            assert stored is not None and from_a == from_b == stored, r.task_id
            if stored.status is DONE:
                assert stored.result == {"content": [{"type": "text", "text": r.task_id}]}
            else:
                assert stored.status is CANCELLED and stored.result is None
    finally:
        await a.close()
        await b.close()


async def test_tasks_outlive_the_process_and_another_process_sees_them(
    shared: Callable[[], tuple[TaskStore, str]],
) -> None:
    store, opener = shared()
    await store.start()
    done, working = task(), task()
    await store.create(done)
    await store.create(working)
    await store.finish(done.task_id, DONE, result={"content": [], "structuredContent": {"n": 1}})
    # A second process, as a restarted server would be: it fails its predecessor's unfinished tasks.
    script = textwrap.dedent(
        f"""
        import asyncio
        from bemcp.tasks.redisstore import RedisTaskStore
        from bemcp.tasks.sqlitestore import SqliteTaskStore

        async def main() -> None:
            store = {opener}
            await store.start()
            n, _ = await store.interrupt("w1", {{"code": -32603, "message": "restarted"}}, "interrupted")
            got = await store.get({done.task_id!r}, "alice")
            print(n, got.status.value, got.result["structuredContent"]["n"])
            await store.close()

        asyncio.run(main())
        """
    )
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "completed", "1"]
    got = await store.get(working.task_id, "alice")  # this process reads what the other one wrote
    assert got is not None and got.status is FAILED and got.error == {"code": -32603, "message": "restarted"}
    expected = await store.get(done.task_id, "alice")
    await store.close()
    reopened, _ = shared()  # and a store opened afresh (a restart) finds them
    await reopened.start()
    try:
        assert expected is not None and await reopened.get(done.task_id, "alice") == expected
    finally:
        await reopened.close()


async def test_two_connections_interrupting_one_worker_claim_each_task_once(
    shared: Callable[[], tuple[TaskStore, str]],
) -> None:
    (a, _), (b, _) = shared(), shared()
    await a.start()
    await b.start()
    try:
        error = {"code": -32603, "message": "the worker died"}
        for round_ in range(50):
            dead = f"dead-{round_}"
            records = [task(worker=dead, name="resumable", request={"name": "resumable"}) for _ in range(5)]
            await asyncio.gather(*(a.create(r) for r in records))
            (fa, ca), (fb, cb) = await asyncio.gather(
                a.interrupt(dead, error, "died", resumable=frozenset({"resumable"}), claimer="a"),
                b.interrupt(dead, error, "died", resumable=frozenset({"resumable"}), claimer="b"),
            )
            assert fa == fb == 0
            ids = [r.task_id for r in ca + cb]
            assert sorted(ids) == sorted(r.task_id for r in records), round_  # each once, none lost
            for rec in ca + cb:
                assert await a.get(rec.task_id, "alice") == rec and rec.worker == ("a" if rec in ca else "b")
    finally:
        await a.close()
        await b.close()


async def test_two_processes_interrupting_one_worker_claim_each_task_once(
    shared: Callable[[], tuple[TaskStore, str]], tmp_path: Path
) -> None:
    store, opener = shared()
    await store.start()
    workers = [f"dead-{i}" for i in range(20)]
    records = [task(worker=w, name="resumable", request={"name": "resumable"}) for w in workers for _ in range(10)]
    await asyncio.gather(*(store.create(r) for r in records))
    # Both processes wait for each other, then interrupt all twenty workers at once.
    script = textwrap.dedent(
        f"""
        import asyncio, json, pathlib, sys, time
        from bemcp.tasks.redisstore import RedisTaskStore
        from bemcp.tasks.sqlitestore import SqliteTaskStore

        async def main() -> None:
            me, barrier = sys.argv[1], pathlib.Path({str(tmp_path)!r})
            store = {opener}
            await store.start()
            (barrier / me).touch()
            while len(list(barrier.glob("p*"))) < 2:
                time.sleep(0.001)
            outs = await asyncio.gather(*(
                store.interrupt(w, {{"code": -32603, "message": "died"}}, "died",
                                resumable=frozenset({{"resumable"}}), claimer=me)
                for w in {workers!r}
            ))
            print(json.dumps([sum(n for n, _ in outs), [r.task_id for _, c in outs for r in c]]))
            await store.close()

        asyncio.run(main())
        """
    )
    try:
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-c", script, me, stdout=PIPE, stderr=PIPE)
            for me in ("p1", "p2")
        ]
        outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
        claims: dict[str, list[str]] = {}
        for me, p, (out, err) in zip(("p1", "p2"), procs, outs, strict=True):
            assert p.returncode == 0, err.decode()
            failed, ids = json.loads(out)
            assert failed == 0
            for task_id in ids:
                claims.setdefault(task_id, []).append(me)
        assert sorted(claims) == sorted(r.task_id for r in records)
        assert all(len(by) == 1 for by in claims.values())  # each task claimed by exactly one process
        for task_id, (me,) in claims.items():
            got = await store.get(task_id, "alice")
            assert got is not None and (got.worker, got.status) == (me, W)
    finally:
        await store.close()


# -- SQLite only: the file, the threads, other connections and other processes --------------------------------


async def test_sqlite_groups_concurrent_writes_into_few_commits(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path / "tasks.sqlite3")
    await store.start()
    try:
        records = [task() for _ in range(2_000)]
        await asyncio.gather(*(store.create(r) for r in records))
        assert store.operations == 2_000
        assert store.commits <= 200, f"{store.commits} commits for 2,000 creations"
        assert len((await store.list("alice", None, 5_000))[0]) == 2_000
    finally:
        await store.close()


async def test_one_failing_write_in_a_group_fails_alone(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path / "tasks.sqlite3")
    await store.start()
    try:
        dup = task()
        await store.create(dup)
        fresh = [task() for _ in range(50)]
        results = await asyncio.gather(store.create(dup), *(store.create(r) for r in fresh), return_exceptions=True)
        assert isinstance(results[0], ValueError)
        assert results[1:] == [None] * 50
        assert all([await store.get(r.task_id, "alice") for r in fresh])
    finally:
        await store.close()


_OLD_SCHEMA = """
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    worker TEXT NOT NULL,
    method TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ttl_ms INTEGER NOT NULL,
    poll_interval_ms INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    status_message TEXT,
    result BLOB,
    error BLOB
);
CREATE INDEX tasks_owner ON tasks (owner, seq);
CREATE INDEX tasks_expiry ON tasks (expires_at);
CREATE INDEX tasks_worker ON tasks (worker, status);
"""


async def test_a_file_from_the_previous_schema_opens_and_works(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    old = task(name="resumable")
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    conn.execute(
        "INSERT INTO tasks (task_id, owner, worker, method, name, status, created_at, updated_at, ttl_ms, "
        "poll_interval_ms, expires_at, status_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (old.task_id, old.owner, old.worker, old.method, old.name, "working", old.created_at, old.updated_at,
         old.ttl_ms, old.poll_interval_ms, old.expires_at, None),
    )  # fmt: skip
    conn.commit()
    conn.close()
    a, b = SqliteTaskStore(path), SqliteTaskStore(path)
    await asyncio.gather(a.start(), b.start())  # two at once: each missing column is added once
    try:
        assert await a.get(old.task_id, "alice") == old
        assert await a.need_input(old.task_id, {"a": ASK}, None)
        rec = await b.answer(old.task_id, "alice", {"a": 1})
        assert rec is not None and not rec.input_requests and await a.take_answers(old.task_id) == {"a": 1}
        new = task(name="resumable", request={"name": "resumable"})
        await b.create(new)
        failed, claimed = await a.interrupt(
            "w1", {"code": 1, "message": "x"}, "x", resumable=frozenset({"resumable"}), claimer="w2"
        )
        assert failed == 1 and [r.task_id for r in claimed] == [new.task_id]  # the old task has no request
    finally:
        await a.close()
        await b.close()
    conn = sqlite3.connect(path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
    conn.close()
    assert {"input_requests", "request"} <= columns


async def test_an_unwritable_state_dir_fails_at_start_with_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = SqliteTaskStore(blocker / "tasks.sqlite3")
    with pytest.raises(OSError):
        await store.start()


async def test_a_store_not_started_says_so(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path / "tasks.sqlite3")
    with pytest.raises(RuntimeError, match="not started"):
        await store.create(task())
    with pytest.raises(RuntimeError, match="not started"):
        await store.get(new_task_id(), "alice")


# -- Redis only ------------------------------------------------------------------------------------------------


async def test_a_wrong_redis_url_fails_at_start() -> None:
    from tests.procs import free_port

    store = RedisTaskStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(OSError):
        await store.start()
