"""The sweeper deletes expired tasks on its own schedule and survives a failing store; the factory maps
`--task-store` values to stores and refuses the rest with the accepted forms."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bemcp.tasks.factory import open_task_store
from bemcp.tasks.memstore import MemoryTaskStore
from bemcp.tasks.model import TaskRecord, TaskStatus, new_task_id
from bemcp.tasks.redisstore import RedisTaskStore
from bemcp.tasks.sqlitestore import SqliteTaskStore
from bemcp.tasks.sweeper import TaskSweeper


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def record(at: float, ttl_ms: int) -> TaskRecord:
    return TaskRecord(new_task_id(), "alice", "w1", "tools/call", "slow", TaskStatus.WORKING, at, at, ttl_ms, 500)


async def test_the_sweeper_deletes_expired_tasks_until_stopped() -> None:
    clock = Clock()
    store = MemoryTaskStore(clock)
    short, long = record(clock.now, 1_000), record(clock.now, 60_000)
    await store.create(short)
    await store.create(long)
    sweeper = TaskSweeper(store, interval_s=0.01)
    sweeper.start()
    sweeper.start()  # idempotent
    try:
        clock.now += 2
        for _ in range(500):
            if sweeper.swept:
                break
            await asyncio.sleep(0.01)
        assert sweeper.swept == 1
        assert await store.get(long.task_id, "alice") is not None
    finally:
        await sweeper.stop()
    assert not sweeper.running
    clock.now += 120
    await asyncio.sleep(0.05)
    assert sweeper.swept == 1  # stopped: nothing more is swept
    await sweeper.stop()  # idempotent


async def test_a_failing_sweep_is_counted_and_the_next_one_runs() -> None:
    class Flaky(MemoryTaskStore):
        calls = 0

        async def sweep(self) -> int:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("the store is down")
            return await super().sweep()

    store = Flaky()
    sweeper = TaskSweeper(store, interval_s=60)
    assert await sweeper.sweep_once() == 0 and sweeper.failures == 1
    assert await sweeper.sweep_once() == 0 and sweeper.failures == 1 and store.calls == 2


def test_task_store_specs(tmp_path: Path) -> None:
    sqlite = open_task_store("sqlite", tmp_path / "state")
    assert isinstance(sqlite, SqliteTaskStore) and sqlite.path == tmp_path / "state" / "tasks.sqlite3"
    assert isinstance(open_task_store("memory", tmp_path), MemoryTaskStore)
    redis = open_task_store("redis://127.0.0.1:6390/2", tmp_path)
    assert isinstance(redis, RedisTaskStore) and redis.url == "redis://127.0.0.1:6390/2"
    with pytest.raises(ValueError, match="expected sqlite, memory, or a redis://"):
        open_task_store("postgres://x", tmp_path)
    with pytest.raises(ValueError, match="interval_s must be positive"):
        TaskSweeper(MemoryTaskStore(), interval_s=0)
