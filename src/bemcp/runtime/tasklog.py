"""`TaskLog`: JSON-lines task and event records, written by a listener thread, never by the caller.

The calling side (the event loop, worker threads) only builds a record and offers it to a bounded
queue; a full queue drops the record and counts it. Formatting and I/O happen on the listener
thread, so a slow disk or a blocked stderr pipe cannot stall the loop.
"""

from __future__ import annotations

import copy
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

DEFAULT_QUEUE_SIZE = 10_000
DROP_EVENT = "log_dropped"

_Queue = queue.SimpleQueue["logging.LogRecord | tuple[int, str, dict[str, Any]] | None"]


class TextSink(Protocol):
    """What a stream sink needs: `write` (and `flush`, which logging calls when present)."""

    def write(self, s: str, /) -> object: ...


class JsonFormatter(logging.Formatter):
    """One JSON object per record: `ts`, `level`, `logger`, `msg`, then the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[Any, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                # A field must not be able to forge the envelope a reader filters on.
                if key not in out:
                    out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return _dumps(out)


def _dumps(obj: dict[Any, Any]) -> str:
    try:
        return _encode(obj)
    except (orjson.JSONEncodeError, TypeError, ValueError):
        pass
    # e.g. an int past 64 bits or a __str__ that raises: keep the record, degrade only the bad fields.
    safe: dict[str, Any] = {}
    for key, value in obj.items():
        try:
            _encode(value)
            safe[str(key)] = value
        except (orjson.JSONEncodeError, TypeError, ValueError):
            safe[str(key)] = _safe_repr(value)
    return _encode(safe)


def _encode(obj: Any) -> str:
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Offers records to a bounded queue; never blocks and never writes anything itself."""

    def __init__(self, q: _Queue, maxsize: int) -> None:
        super().__init__(q)
        self._q = q
        self.maxsize = maxsize
        # Only touched inside emit()/handleError(), which logging.Handler.handle() serialises.
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Merge msg and args now: the args may be mutated once the call returns. Tracebacks stay
        # unformatted (exc_info is kept) because formatting reads source files: I/O for the listener.
        try:
            msg = record.getMessage()
        except Exception:
            msg = f"{_safe_repr(record.msg)} % {_safe_repr(record.args)}"
        record = copy.copy(record)
        record.message = msg
        record.msg = msg
        record.args = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = dict(fields)
        return record

    def emit(self, record: logging.LogRecord) -> None:
        # full() first so an overloaded process does not pay for prepare() on records it drops.
        if self._q.qsize() >= self.maxsize:
            self.dropped += 1
            return
        try:
            self._q.put_nowait(self.prepare(record))
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - the stdlib's name
        # The stdlib prints a traceback to stderr here: that is I/O on the caller, so count instead.
        self.dropped += 1


class _Listener(logging.handlers.QueueListener):
    """The stdlib listener with a named thread, a blocking sentinel and a periodic `tick`."""

    def __init__(
        self,
        q: _Queue,
        sink: logging.Handler,
        *,
        tick: Callable[[], None],
        tick_s: float,
        make_record: Callable[[int, str, dict[str, Any]], logging.LogRecord],
    ) -> None:
        super().__init__(q, sink)
        self._q = q
        self._tick = tick
        self._tick_s = tick_s
        self._make_record = make_record
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        self.thread = self._thread
        if self.thread is not None:
            self.thread.name = "bemcp-tasklog"

    def dequeue(self, block: bool) -> logging.LogRecord:
        while True:
            try:
                record = self._q.get(block, self._tick_s if block else None)
            except queue.Empty:
                if not block:
                    raise
                # Idle: still report drops that happened just before the traffic stopped.
                self._tick()
                continue
            if isinstance(record, tuple):  # the task fast path: the LogRecord is built here, off the loop
                return self._make_record(*record)
            # The stdlib loop compares against its sentinel (None) itself.
            return record  # type: ignore[return-value]

    def handle(self, record: logging.LogRecord) -> None:
        super().handle(record)
        self._tick()

    def enqueue_sentinel(self) -> None:
        # Always accepted: the bound is the producers' rule, and the sentinel must get through.
        self._q.put(None)


@dataclass(frozen=True, slots=True)
class TaskLogSnapshot:
    enabled: bool
    running: bool
    dropped: int  # records dropped because the queue was full (or unusable)


class TaskLog:
    """Non-blocking JSON-lines log for task lifecycles and runtime events.

    Writes to a rotating file when `path` is given, else to `stream` (default: stderr at start()).
    `start()` and `stop()` are explicit and idempotent; `stop()` detaches attached loggers, writes
    everything already queued, reports any drops and joins the listener thread. Records offered
    while stopped wait in the queue (bounded as always) for the next start().
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = 10 * 1024 * 1024,
        backup_count: int = 5,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        stream: TextSink | None = None,
        level: int = logging.INFO,
        name: str = "bemcp.tasks",
        report_interval_s: float = 10.0,
        enabled: bool = True,
    ) -> None:
        if queue_size <= 0:
            raise ValueError("queue_size must be positive: an unbounded queue can exhaust memory")
        if report_interval_s <= 0:
            raise ValueError("report_interval_s must be positive: it is also the listener's idle poll")
        self.path = path
        self.enabled = enabled  # False: every record is ignored at once (no queue, no thread)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.stream = stream
        self.level = level
        self.name = name
        self.report_interval_s = report_interval_s
        # SimpleQueue is C code with no Python-level lock; its bound is enforced by the producers.
        self._queue: _Queue = queue.SimpleQueue()
        self._handler = _DroppingQueueHandler(self._queue, queue_size)
        self._listener: _Listener | None = None
        self._sink: logging.Handler | None = None
        self._attached: dict[logging.Logger, tuple[list[logging.Handler], bool]] = {}
        self._reported = 0
        self._last_report = 0.0

    @property
    def running(self) -> bool:
        return self._listener is not None

    @property
    def dropped(self) -> int:
        """Records dropped so far because the queue was full (or unusable)."""
        return self._handler.dropped

    def snapshot(self) -> TaskLogSnapshot:
        return TaskLogSnapshot(self.enabled, self._listener is not None, self._handler.dropped)

    @property
    def handler(self) -> logging.Handler:
        """The non-blocking handler, for wiring into a logging configuration by hand."""
        return self._handler

    @property
    def thread(self) -> threading.Thread | None:
        return None if self._listener is None else self._listener.thread

    def start(self) -> None:
        if self._listener is not None or not self.enabled:
            return
        sink = self._open_sink()
        sink.setFormatter(JsonFormatter())
        listener = _Listener(
            self._queue, sink, tick=self._tick, tick_s=self.report_interval_s, make_record=self._record
        )
        self._last_report = time.monotonic()
        listener.start()
        self._sink, self._listener = sink, listener

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        sink, self._sink = self._sink, None
        if listener is None or sink is None:
            return
        for logger in list(self._attached):
            self.detach(logger)
        listener.stop()
        # The listener thread is gone, so the sink and the drop counters are ours alone now.
        self._report_drops(sink)
        sink.close()

    def _open_sink(self) -> logging.Handler:
        if self.path is not None:
            return logging.handlers.RotatingFileHandler(
                self.path, maxBytes=self.max_bytes, backupCount=self.backup_count, encoding="utf-8"
            )
        # Resolved here, not at import: tests and embedders swap sys.stderr.
        return logging.StreamHandler(self.stream if self.stream is not None else sys.stderr)

    def _tick(self) -> None:
        """Listener thread only: report drops at most once per interval."""
        now = time.monotonic()
        if now - self._last_report < self.report_interval_s:
            return
        self._last_report = now
        sink = self._sink
        if sink is not None:
            self._report_drops(sink)

    def _report_drops(self, sink: logging.Handler) -> None:
        total = self._handler.dropped
        if total <= self._reported:
            return
        fields = {"event": DROP_EVENT, "dropped": total - self._reported, "dropped_total": total}
        self._reported = total
        sink.handle(self._record(logging.WARNING, DROP_EVENT, fields))

    # --- routing ordinary logging -------------------------------------------------------------

    def attach(self, logger: logging.Logger, *, exclusive: bool = True) -> None:
        """Send `logger`'s records (and its descendants') through this log's queue.

        With `exclusive`, the logger's own handlers are set aside and propagation is turned off,
        since those handlers (and the root's) would otherwise still write on the caller's thread.
        `detach()` (or `stop()`) puts them back.
        """
        if logger in self._attached:
            return
        self._attached[logger] = (list(logger.handlers), logger.propagate)
        if exclusive:
            for h in list(logger.handlers):
                logger.removeHandler(h)
            logger.propagate = False
        logger.addHandler(self._handler)

    def detach(self, logger: logging.Logger) -> None:
        saved = self._attached.pop(logger, None)
        if saved is None:
            return
        handlers, propagate = saved
        logger.removeHandler(self._handler)
        for h in handlers:
            logger.addHandler(h)
        logger.propagate = propagate

    # --- records ------------------------------------------------------------------------------

    def task_started(
        self, task_id: int, method: str, name: str, request_id: str | int | None, deadline_s: float | None
    ) -> None:
        self._enqueue(
            logging.INFO,
            "task started",
            {
                "event": "task_started",
                "task_id": task_id,
                "method": method,
                "name": name,
                "request_id": request_id,
                "deadline_s": deadline_s,
            },
        )

    def task_finished(
        self, task_id: int, method: str, name: str, outcome: str, duration_ms: float, error: str | None = None
    ) -> None:
        fields: dict[str, Any] = {
            "event": "task_finished",
            "task_id": task_id,
            "method": method,
            "name": name,
            "outcome": outcome,
            "duration_ms": round(duration_ms, 3),
        }
        if error is not None:
            fields["error"] = error
        failed = error is not None or outcome in ("error", "timeout")
        self._enqueue(logging.WARNING if failed else logging.INFO, "task finished", fields)

    def _enqueue(self, level: int, msg: str, fields: dict[str, Any]) -> None:
        # Two records per call are on the hot path: a plain tuple costs a fraction of a
        # LogRecord plus the handler's lock and copy; the listener builds the record.
        if level < self.level or not self.enabled:
            return
        if self._queue.qsize() >= self._handler.maxsize:
            self._handler.dropped += 1
            return
        self._queue.put_nowait((level, msg, fields))

    def event(self, kind: str, *, level: int = logging.INFO, **fields: Any) -> None:
        """A runtime event (watchdog, memory pressure, ...): `msg` and `event` are both `kind`."""
        self._offer(level, kind, {"event": kind, **fields})

    def log(self, level: int, msg: str, **fields: Any) -> None:
        self._offer(level, msg, fields)

    def _offer(self, level: int, msg: str, fields: dict[str, Any]) -> None:
        if level < self.level or not self.enabled:
            return
        self._handler.handle(self._record(level, msg, fields))

    def _record(self, level: int, msg: str, fields: dict[str, Any]) -> logging.LogRecord:
        # Built directly rather than through a Logger: no caller lookup (a stack walk) and no
        # entry in the process-wide logger registry for each TaskLog.
        record = logging.LogRecord(self.name, level, "", 0, msg, None, None)
        record.fields = fields
        return record
