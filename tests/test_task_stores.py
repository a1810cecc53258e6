"""The task stores against one contract: the in-memory store, SQLite (a real file, real threads) and Redis (a real
redis-server on a loopback port), with a second process or a second connection where the rule is about
concurrency."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bemcp.tasks.memstore import MemoryTaskStore
from bemcp.tasks.model import TaskRecord, TaskStatus, new_task_id
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


def task(owner: str = "alice", *, worker: str = "w1", ttl_ms: int = 60_000, at: float = 1_800_000_000.0) -> TaskRecord:
    return TaskRecord(new_task_id(), owner, worker, "tools/call", "slow", W, at, at, ttl_ms, 500)


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
    ids = {new_task_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 22 for i in ids)  # 16 bytes, URL-safe base64 without padding


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
    assert await store.interrupt("w1", error, "interrupted by a restart") == 2
    for t in (working, waiting):
        got = await store.get(t.task_id, "alice")
        assert got is not None and got.status is FAILED and got.error == error
    got = await store.get(finished.task_id, "alice")
    assert got is not None and got.status is DONE
    got = await store.get(elsewhere.task_id, "alice")
    assert got is not None and got.status is W


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
            n = await store.interrupt("w1", {{"code": -32603, "message": "restarted"}}, "interrupted")
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
