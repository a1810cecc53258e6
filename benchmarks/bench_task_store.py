"""Task store throughput: creations per second with group commit, and lookups per second.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_task_store.py            # SQLite in a temp folder, Redis, and memory
    .venv/bin/python benchmarks/bench_task_store.py --tasks 50000 --concurrency 1000 --dir /var/tmp/x
    .venv/bin/python benchmarks/bench_task_store.py --redis redis://10.0.0.5:6379/0

Without `--redis`, a redis-server (Debian's, `make servers`) is started on a free loopback port for the run,
with persistence off; the Redis row is left out when there is none.

Creations run `--concurrency` at a time on one event loop, as concurrent task-creating calls would: the SQLite
writer thread commits whatever is queued as one transaction (synchronous=FULL, so each commit is an fsync), and
the table prints how many creations one commit carried. Lookups are `get` by id, by the owner. The goal for SQLite
creations is 5,000/s or more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bemcp.tasks.memstore import MemoryTaskStore
from bemcp.tasks.model import TaskRecord, TaskStatus, new_task_id
from bemcp.tasks.redisstore import RedisTaskStore
from bemcp.tasks.sqlitestore import SqliteTaskStore
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


@contextlib.contextmanager
def local_redis(folder: str) -> Iterator[str | None]:
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        sqlite = SqliteTaskStore(Path(folder) / "tasks.sqlite3")
        rows = [("sqlite", *(await measure(sqlite, args.tasks, args.concurrency)))]
        group = sqlite.operations / max(1, sqlite.commits)
        with local_redis(folder) if args.redis is None else contextlib.nullcontext(args.redis) as url:
            if url is not None:
                store = RedisTaskStore(url, prefix=f"bench-{new_task_id()}:")
                rows.append(("redis", *(await measure(store, args.tasks, args.concurrency))))
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
    p.add_argument("--redis", default=None, help="a Redis URL to measure instead of a local redis-server")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
