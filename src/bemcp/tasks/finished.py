"""`Finished`: the terminal records this process stored, kept for the gets that would read them straight back.

A client polls the task it created, mostly on the server that ran it, and a finished task's record never changes
(the stores' first rule: a terminal status is final). So the copy `finish` returned stays true until the task
expires, and a `tasks/get` or `tasks/result` on it need not go to the store: for Redis that is a network round
trip and redis-py's parsing, for SQLite a read and a JSON decode. A get on another process, or of a task this one
did not finish, reads the store as before.

Bounded three ways, so that it never holds much: a record with a large result (over `max_record` bytes, estimated
without serializing it) is not kept; past `max_items` records or `max_bytes` in all, the oldest go first. An
expired record is dropped when looked up (the store would call it unknown too), and the oldest on each put.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from bemcp.tasks.model import TaskRecord

MAX_ITEMS = 10_000
MAX_BYTES = 16 * 1024 * 1024
MAX_RECORD = 64 * 1024
_NODES = 256  # a result with more values than this is not worth walking: treated as too large
_OVERHEAD = 64  # per value: a rough price of the Python object around it


def estimate(value: Any, budget: int) -> int | None:
    """Roughly how many bytes `value` (JSON-shaped) takes, or None once that passes `budget` (or it is large)."""
    total = 0
    stack = [value]
    nodes = 0
    while stack:
        v = stack.pop()
        nodes += 1
        if nodes > _NODES:
            return None
        total += _OVERHEAD
        if isinstance(v, str | bytes):
            total += len(v)
        elif isinstance(v, dict):
            for k, item in v.items():
                total += len(k) if isinstance(k, str) else _OVERHEAD
                stack.append(item)
        elif isinstance(v, list | tuple):
            stack.extend(v)
        if total > budget:
            return None
    return total


class Finished:
    def __init__(self, max_items: int = MAX_ITEMS, max_bytes: int = MAX_BYTES, max_record: int = MAX_RECORD) -> None:
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._max_record = max_record
        self._records: OrderedDict[str, tuple[TaskRecord, int]] = OrderedDict()  # oldest put first
        self.bytes = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._records)

    def put(self, rec: TaskRecord, now: float) -> None:
        """Keep a terminal record as the store returned it (a record that is not terminal is ignored)."""
        if not rec.status.terminal or rec.expired(now):
            return
        size = estimate((rec.result, rec.error, rec.status_message, rec.request), self._max_record)
        if size is None:
            return
        old = self._records.pop(rec.task_id, None)
        if old is not None:
            self.bytes -= old[1]
        self._records[rec.task_id] = (rec, size)
        self.bytes += size
        records = self._records
        while len(records) > self._max_items or self.bytes > self._max_bytes:
            _, (_, dropped) = records.popitem(last=False)
            self.bytes -= dropped
        # Records are put in about the order they expire (TTLs differ only by what clients ask): the oldest
        # expired one goes now, so that a quiet server does not keep them all until the count bound.
        if records:
            first_id = next(iter(records))
            first, first_size = records[first_id]
            if first.expired(now):
                del records[first_id]
                self.bytes -= first_size

    def get(self, task_id: str, now: float) -> TaskRecord | None:
        """The kept record, or None when it is not kept (or has just expired: dropped)."""
        kept = self._records.get(task_id)
        if kept is None:
            return None
        rec, size = kept
        if rec.expired(now):
            del self._records[task_id]
            self.bytes -= size
            return None
        self.hits += 1
        return rec
