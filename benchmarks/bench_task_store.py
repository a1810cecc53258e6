"""Task store throughput: creations per second with group commit, and lookups per second.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_task_store.py                     # SQLite in a temp folder, and memory
    .venv/bin/python benchmarks/bench_task_store.py --tasks 50000 --concurrency 1000 --dir /var/tmp/x

Creations run `--concurrency` at a time on one event loop, as concurrent task-creating calls would: the SQLite
writer thread commits whatever is queued as one transaction (synchronous=FULL, so each commit is an fsync), and
the table prints how many creations one commit carried. Lookups are `get` by id, by the owner. The goal for SQLite
creations is 5,000/s or more.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bemcp.tasks.memstore import MemoryTaskStore
from bemcp.tasks.model import TaskRecord, TaskStatus, new_task_id
from bemcp.tasks.sqlite import SqliteTaskStore
from bemcp.tasks.store import TaskStore


def record(now: float) -> TaskRecord:
    return TaskRecord(new_task_id(), "owner", "w1", "tools/call", "slow", TaskStatus.WORKING, now, now, 3_600_000, 500)


async def measure(store: TaskStore, tasks: int, concurrency: int) -> tuple[float, float]:
    await store.start()
    try:
        records = [record(time.time()) for _ in range(tasks)]
        sem = asyncio.Semaphore(concurrency)

        async def create(r: TaskRecord) -> None:
            async with sem:
                await store.create(r)

        t0 = time.perf_counter()
        await asyncio.gather(*(create(r) for r in records))
        created = tasks / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for r in records:
            await store.get(r.task_id, "owner")
        got = tasks / (time.perf_counter() - t0)
        return created, got
    finally:
        await store.close()


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        sqlite = SqliteTaskStore(Path(folder) / "tasks.sqlite3")
        rows = [("sqlite", *(await measure(sqlite, args.tasks, args.concurrency)))]
        group = sqlite.operations / max(1, sqlite.commits)
        rows.append(("memory", *(await measure(MemoryTaskStore(), args.tasks, args.concurrency))))
    print(f"{args.tasks:,} tasks, {args.concurrency} creations in flight")
    print("| store | creations/s | gets/s |")
    print("|---|---|---|")
    for name, created, got in rows:
        print(f"| {name} | {created:,.0f} | {got:,.0f} |")
    print(f"SQLite: {sqlite.operations:,} writes in {sqlite.commits:,} commits ({group:.0f} per commit)")
    goal = rows[0][1] >= 5_000
    print(f"goal >= 5,000 SQLite creations/s: {'meets' if goal else 'MISSES'}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=500)
    p.add_argument("--dir", default=None, help="where the SQLite file goes (default: the system temp folder)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
