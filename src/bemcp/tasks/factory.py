"""`--task-store` to a store: `sqlite` (the default: one file under `--state-dir`), `redis://…` or `rediss://…`
(shared by many processes and hosts), or `memory` (tests only: nothing survives a restart)."""

from __future__ import annotations

from pathlib import Path

from bemcp.tasks.memstore import MemoryTaskStore
from bemcp.tasks.sqlitestore import SqliteTaskStore
from bemcp.tasks.store import TaskStore

SQLITE_FILE = "tasks.sqlite3"


def open_task_store(spec: str, state_dir: str | Path) -> TaskStore:
    """The store `spec` names (not started); ValueError with the accepted forms when it names none."""
    if spec == "sqlite":
        return SqliteTaskStore(Path(state_dir) / SQLITE_FILE)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from bemcp.tasks.redisstore import RedisTaskStore  # only a Redis deployment needs the redis package

        return RedisTaskStore(spec)
    if spec == "memory":
        return MemoryTaskStore()
    raise ValueError(f"--task-store {spec!r}: expected sqlite, memory, or a redis://HOST:PORT/DB URL")
