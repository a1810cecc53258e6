"""The default task store: one SQLite file, in WAL mode, written by one thread that commits in groups.

Every write goes to the writer thread, which takes whatever is queued (up to `batch_max` operations) and runs it
as one transaction: under load, a thousand task creations cost one commit and one fsync, not a thousand. Each
operation runs in a savepoint of its own, so one that fails (a duplicate id) fails alone. Writers in other
processes on the same file are serialised by SQLite's own lock (`BEGIN IMMEDIATE`, with a busy timeout), and
terminal transitions are conditional updates, so a cancel racing a completion has one winner across processes.

Reads run on the caller's thread, on a connection of their own: in WAL mode a read never waits for a writer,
and a lookup by primary key in a file the page cache holds takes microseconds, less than a thread hop.

Besides `tasks`: `answers` (the client's answers a worker has not taken yet), `signals` (what each worker must
act on: "cancel" or "input", in order) and `workers` (each worker's lease). A file an older version created
gains the missing columns and tables when it is opened.
"""

from __future__ import annotations

import asyncio
import builtins
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bemcp.tasks.model import TERMINAL, TaskRecord, TaskStatus
from bemcp.tasks.store import TaskNotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
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
    error BLOB,
    input_requests BLOB,
    request BLOB
);
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner, seq);
CREATE INDEX IF NOT EXISTS tasks_expiry ON tasks (expires_at);
CREATE INDEX IF NOT EXISTS tasks_worker ON tasks (worker, status);
CREATE TABLE IF NOT EXISTS answers (
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (task_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signals (
    seq INTEGER PRIMARY KEY,
    worker TEXT NOT NULL,
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS signals_worker ON signals (worker, seq);
CREATE INDEX IF NOT EXISTS signals_task ON signals (task_id);
CREATE INDEX IF NOT EXISTS signals_at ON signals (at);
CREATE TABLE IF NOT EXISTS workers (
    worker TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
"""
# Columns added since the first schema: a file it created gains them when it is opened.
_ADDED_COLUMNS = (("input_requests", "BLOB"), ("request", "BLOB"))
_COLUMNS = (
    "task_id, owner, worker, method, name, status, created_at, updated_at, ttl_ms, poll_interval_ms, "
    "status_message, result, error, input_requests, request"
)
_NOT_TERMINAL = "status NOT IN ('completed', 'failed', 'cancelled')"
_VISIBLE = "task_id = ? AND owner = ? AND expires_at > ?"  # what `get` may see
SIGNAL_MAX_AGE_S = 600.0  # a signal nobody took in ten minutes is for a worker that never came back
_STOP = object()


def _json(value: dict[str, Any] | None) -> bytes | None:
    return None if value is None else orjson.dumps(value)


def _load(value: bytes | None) -> Any:
    return None if value is None else orjson.loads(value)


def _record(row: tuple[Any, ...]) -> TaskRecord:
    return TaskRecord(
        task_id=row[0],
        owner=row[1],
        worker=row[2],
        method=row[3],
        name=row[4],
        status=TaskStatus(row[5]),
        created_at=row[6],
        updated_at=row[7],
        ttl_ms=row[8],
        poll_interval_ms=row[9],
        status_message=row[10],
        result=_load(row[11]),
        error=_load(row[12]),
        input_requests=_load(row[13]),
        request=_load(row[14]),
    )


def _migrate(conn: sqlite3.Connection) -> None:
    """Create what is missing, in one write transaction: of two processes opening an old file at once, the
    second sees the columns the first added."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        have = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE tasks ADD COLUMN {name} {kind}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


Work = Callable[[sqlite3.Connection], Any]


@dataclass(slots=True)
class _Op:
    work: Work
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up (cancelled); the write stands all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _settle_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in outcomes:
        _settle(future, value, error)


class SqliteTaskStore:
    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        batch_max: int = 1024,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._batch_max = batch_max
        self._busy_timeout_s = busy_timeout_s
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self.commits = 0  # transactions the writer committed (operations / commits = the group size)
        self.operations = 0

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the file (creating it and its folder), start the writer thread; idempotent."""
        if self._thread is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(
            target=self._write_loop, args=(asyncio.get_running_loop(), ready), name="bemcp-task-store", daemon=True
        )
        self._thread.start()
        try:
            await ready  # the schema exists before the first read
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        self._reader = self._connect()

    async def close(self) -> None:
        """Commit what is queued, stop the writer thread and close both connections; idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(thread.join)
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: the writer opens its own transactions; a reader reads the last committed state.
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        return conn

    # -- the writer thread ----------------------------------------------------------------------------------

    def _write_loop(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # each group's commit is durable; groups keep it cheap
            _migrate(conn)
        except BaseException as e:  # an unwritable state dir: start() raises it
            loop.call_soon_threadsafe(_settle, ready, None, e)
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                stop = False
                while len(batch) < self._batch_max:
                    try:
                        op = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if op is _STOP:
                        stop = True
                        break
                    batch.append(op)
                self._run_group(conn, batch)  # type: ignore[arg-type]
                if stop:
                    return
        finally:
            conn.close()

    def _run_group(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        try:
            outcomes = self._group(conn, batch)
        except Exception as e:  # the transaction itself failed (disk full, lock timeout): every op fails with it
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(None, e)] * len(batch)
        else:
            self.commits += 1
            self.operations += len(batch)
        # One wake-up of each waiting loop per group, not one per operation.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for op, (value, error) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(op.loop, []).append((op.future, value, error))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settled)

    @staticmethod
    def _group(conn: sqlite3.Connection, batch: list[_Op]) -> list[tuple[Any, BaseException | None]]:
        """Run `batch` as one transaction. The common case, no operation failing, runs them as they are; when one
        fails, the transaction is rolled back and run again with a savepoint per operation, so that the failing
        one fails alone (operations are functions of the database only: running one again is safe)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            values = [op.work(conn) for op in batch]
        except Exception:
            conn.execute("ROLLBACK")
        else:
            conn.execute("COMMIT")
            return [(v, None) for v in values]
        outcomes: list[tuple[Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        for op in batch:
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((op.work(conn), None))
                conn.execute("RELEASE op")
            except Exception as e:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((None, e))
        conn.execute("COMMIT")
        return outcomes

    async def _write(self, work: Work) -> Any:
        if self._thread is None:
            raise RuntimeError("the task store is not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Op(work, future, loop))
        return await future

    # -- reads (on the caller's thread) ---------------------------------------------------------------------

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("the task store is not started")
        return self._reader

    async def get(self, task_id: str, owner: str) -> TaskRecord | None:
        row = (
            self._read()
            .execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE task_id = ? AND owner = ? AND expires_at > ?",
                (task_id, owner, self._clock()),
            )
            .fetchone()
        )
        return None if row is None else _record(row)

    async def list(self, owner: str, cursor: str | None, limit: int) -> tuple[list[TaskRecord], str | None]:
        after = 0
        if cursor is not None:
            found = self._read().execute("SELECT seq FROM tasks WHERE task_id = ? AND owner = ?", (cursor, owner))
            row = found.fetchone()
            after = row[0] if row is not None else 1 << 62  # an unknown cursor: an empty page
        rows = (
            self._read()
            .execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE owner = ? AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?",
                (owner, after, self._clock(), limit + 1),
            )
            .fetchall()
        )
        page = [_record(r) for r in rows[:limit]]
        return page, (page[-1].task_id if len(rows) > limit else None)

    async def expired_workers(self) -> builtins.list[str]:
        rows = self._read().execute("SELECT worker FROM workers WHERE expires_at <= ?", (self._clock(),))
        return [r[0] for r in rows.fetchall()]

    # -- writes ---------------------------------------------------------------------------------------------
    # Each `work` runs inside the writer's BEGIN IMMEDIATE transaction, which holds the file's write lock: a
    # read followed by a write in one `work` is atomic against every other connection and process.

    async def create(self, record: TaskRecord) -> None:
        r = record
        values = (
            r.task_id, r.owner, r.worker, r.method, r.name, r.status.value, r.created_at, r.updated_at,
            r.ttl_ms, r.poll_interval_ms, r.expires_at, r.status_message, _json(r.result), _json(r.error),
            _json(r.input_requests or None), _json(r.request),
        )  # fmt: skip

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO tasks (task_id, owner, worker, method, name, status, created_at, updated_at, ttl_ms, "
                "poll_interval_ms, expires_at, status_message, result, error, input_requests, request) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )

        try:
            await self._write(work)
        except sqlite3.IntegrityError:
            raise ValueError(f"task {record.task_id!r} exists") from None

    async def update(self, task_id: str, status: TaskStatus, message: str | None) -> bool:
        if status in TERMINAL:
            raise ValueError("a terminal status is set with finish()")
        now = self._clock()

        def work(conn: sqlite3.Connection) -> bool | None:
            cur = conn.execute(
                "UPDATE tasks SET status = ?1, status_message = ?2, updated_at = ?3, "
                "input_requests = CASE WHEN ?1 = 'working' THEN NULL ELSE input_requests END "
                f"WHERE task_id = ?4 AND {_NOT_TERMINAL}",
                (status.value, message, now, task_id),
            )
            if cur.rowcount:
                return True
            exists = conn.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            return False if exists else None

        changed: bool | None = await self._write(work)
        if changed is None:
            raise TaskNotFound(task_id)
        return changed

    async def need_input(self, task_id: str, requests: dict[str, dict[str, Any]], message: str | None) -> bool:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> bool | None:
            row = conn.execute("SELECT status, input_requests FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            if row is None:
                return None
            if TaskStatus(row[0]) in TERMINAL:
                return False
            merged = {**(_load(row[1]) or {}), **requests}
            conn.execute(
                "UPDATE tasks SET status = 'input_required', status_message = ?, updated_at = ?, input_requests = ? "
                "WHERE task_id = ?",
                (message, now, _json(merged or None), task_id),
            )
            return True

        changed: bool | None = await self._write(work)
        if changed is None:
            raise TaskNotFound(task_id)
        return changed

    async def answer(self, task_id: str, owner: str, responses: dict[str, Any]) -> TaskRecord | None:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> TaskRecord | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM tasks WHERE {_VISIBLE}", (task_id, owner, now)).fetchone()
            if row is None:
                return None
            rec = _record(row)
            pending = rec.input_requests or {}
            answered = {k: v for k, v in responses.items() if k in pending}
            if rec.status in TERMINAL or not answered:
                return rec
            left = {k: v for k, v in pending.items() if k not in answered}
            row = conn.execute(
                f"UPDATE tasks SET input_requests = ?, updated_at = ? WHERE task_id = ? RETURNING {_COLUMNS}",
                (_json(left or None), now, task_id),
            ).fetchall()[0]
            conn.executemany(
                "INSERT OR REPLACE INTO answers (task_id, key, value) VALUES (?, ?, ?)",
                [(task_id, k, orjson.dumps(v)) for k, v in answered.items()],
            )
            _signal(conn, rec.worker, task_id, "input", now)
            return _record(row)

        stored: TaskRecord | None = await self._write(work)
        return stored

    async def take_answers(self, task_id: str) -> dict[str, Any]:
        def work(conn: sqlite3.Connection) -> dict[str, Any]:
            rows = conn.execute("DELETE FROM answers WHERE task_id = ? RETURNING key, value", (task_id,)).fetchall()
            return {k: orjson.loads(v) for k, v in rows}

        taken: dict[str, Any] = await self._write(work)
        return taken

    async def cancel(self, task_id: str, owner: str, message: str | None) -> TaskRecord | None:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> TaskRecord | None:
            won = conn.execute(
                "UPDATE tasks SET status = 'cancelled', result = NULL, error = NULL, status_message = ?, "
                f"updated_at = ? WHERE {_VISIBLE} AND {_NOT_TERMINAL} RETURNING {_COLUMNS}",
                (message, now, task_id, owner, now),
            ).fetchall()
            if won:  # the cancel won (one conditional UPDATE, so across processes too): its worker learns it
                rec = _record(won[0])
                _signal(conn, rec.worker, task_id, "cancel", now)
                return rec
            row = conn.execute(f"SELECT {_COLUMNS} FROM tasks WHERE {_VISIBLE}", (task_id, owner, now)).fetchone()
            return None if row is None else _record(row)

        stored: TaskRecord | None = await self._write(work)
        return stored

    async def signals(self, worker: str, limit: int = 1000) -> builtins.list[tuple[str, str]]:
        # Asked every tick: a read (no lock, no fsync) says whether there is anything to take at all.
        if self._read().execute("SELECT 1 FROM signals WHERE worker = ? LIMIT 1", (worker,)).fetchone() is None:
            return []

        def work(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute(
                "DELETE FROM signals WHERE seq IN (SELECT seq FROM signals WHERE worker = ? ORDER BY seq LIMIT ?) "
                "RETURNING seq, task_id, kind",
                (worker, limit),
            ).fetchall()
            return [(task_id, kind) for _, task_id, kind in sorted(rows)]  # RETURNING's order is unspecified

        taken: list[tuple[str, str]] = await self._write(work)
        return taken

    async def heartbeat(self, worker: str, lease_s: float) -> None:
        until = self._clock() + lease_s

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO workers (worker, expires_at) VALUES (?, ?) "
                "ON CONFLICT (worker) DO UPDATE SET expires_at = excluded.expires_at",
                (worker, until),
            )

        await self._write(work)

    async def finish(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> TaskRecord:
        if status not in TERMINAL:
            raise ValueError(f"{status} is not terminal")
        now = self._clock()
        values = (status.value, _json(result), _json(error), message, now, task_id)

        def work(conn: sqlite3.Connection) -> TaskRecord | None:
            # The columns this write did not set come back with it: the record needs no second read, and the
            # result no decoding, when this finish is the one stored (as it nearly always is).
            won = conn.execute(
                "UPDATE tasks SET status = ?, result = ?, error = ?, status_message = ?, updated_at = ? "
                f"WHERE task_id = ? AND {_NOT_TERMINAL} "
                "RETURNING owner, worker, method, name, created_at, ttl_ms, poll_interval_ms, input_requests, request",
                values,
            ).fetchone()
            if won is not None:
                owner, worker, method, name, created_at, ttl_ms, poll_ms, inputs, request = won
                return TaskRecord(
                    task_id, owner, worker, method, name, status, created_at, now, ttl_ms, poll_ms,
                    status_message=message, result=result, error=error, input_requests=_load(inputs),
                    request=_load(request),
                )  # fmt: skip
            row = conn.execute(f"SELECT {_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            return None if row is None else _record(row)

        stored: TaskRecord | None = await self._write(work)
        if stored is None:
            raise TaskNotFound(task_id)
        return stored

    async def interrupt(
        self,
        worker: str,
        error: dict[str, Any],
        message: str,
        *,
        resumable: frozenset[str] = frozenset(),
        claimer: str | None = None,
    ) -> tuple[int, builtins.list[TaskRecord]]:
        now = self._clock()
        names = orjson.dumps(sorted(resumable) if claimer is not None else [])  # no claimer: nothing resumes
        claimable = "request IS NOT NULL AND name IN (SELECT value FROM json_each(?))"

        def work(conn: sqlite3.Connection) -> tuple[int, list[TaskRecord]]:
            # Fail first, then claim: when the claimer is the worker itself, claimed tasks must not then fail.
            failed = conn.execute(
                "UPDATE tasks SET status = 'failed', error = ?, status_message = ?, updated_at = ? "
                f"WHERE worker = ? AND {_NOT_TERMINAL} AND NOT ({claimable})",
                (_json(error), message, now, worker, names),
            ).rowcount
            rows: list[tuple[Any, ...]] = []
            if claimer is not None:
                rows = conn.execute(
                    "UPDATE tasks SET worker = ?, status = 'working', input_requests = NULL, updated_at = ? "
                    f"WHERE worker = ? AND {_NOT_TERMINAL} AND {claimable} RETURNING seq, {_COLUMNS}",
                    (claimer, now, worker, names),
                ).fetchall()
            conn.execute("DELETE FROM workers WHERE worker = ?", (worker,))
            return failed, [_record(r[1:]) for r in sorted(rows)]  # creation order

        outcome: tuple[int, list[TaskRecord]] = await self._write(work)
        return outcome

    async def sweep(self) -> int:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> int:
            gone = [r[0] for r in conn.execute("DELETE FROM tasks WHERE expires_at <= ? RETURNING task_id", (now,))]
            if gone:
                ids = orjson.dumps(gone)
                conn.execute("DELETE FROM answers WHERE task_id IN (SELECT value FROM json_each(?))", (ids,))
                conn.execute("DELETE FROM signals WHERE task_id IN (SELECT value FROM json_each(?))", (ids,))
            conn.execute("DELETE FROM signals WHERE at < ?", (now - SIGNAL_MAX_AGE_S,))
            return len(gone)

        n: int = await self._write(work)
        return n


def _signal(conn: sqlite3.Connection, worker: str, task_id: str, kind: str, at: float) -> None:
    conn.execute("INSERT INTO signals (worker, task_id, kind, at) VALUES (?, ?, ?, ?)", (worker, task_id, kind, at))
