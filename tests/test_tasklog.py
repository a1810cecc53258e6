"""TaskLog: JSON lines, rotation, lifecycle, dropping on overload, and an event loop that never waits on the sink."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bemcp.runtime.runtime import Runtime
from bemcp.runtime.tasklog import DROP_EVENT, TaskLog, TaskLogSnapshot


class MemoryStream:
    """A text stream for StreamHandler: optionally slow, optionally gated, thread-safe to read."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        self.gate.wait()
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self._lines.append(s)
        return len(s)

    def flush(self) -> None:
        pass

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            text = "".join(self._lines)
        return [orjson.loads(line) for line in text.splitlines()]

    @property
    def writes(self) -> int:
        with self._lock:
            return len(self._lines)


def listener_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bemcp-tasklog" or "_monitor" in t.name]


def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


def test_records_are_json_lines_with_fields() -> None:
    stream = MemoryStream()
    tl = TaskLog(stream=stream)
    tl.start()
    tl.task_started(7, "tools/call", "echo", request_id="r-1", deadline_s=2.5)
    tl.task_finished(7, "tools/call", "echo", outcome="ok", duration_ms=12.34567)
    tl.task_finished(8, "tools/call", "boom", outcome="error", duration_ms=1.0, error="ValueError: nope")
    tl.event("watchdog_stall", level=logging.WARNING, lag_ms=250.0, msg="forged", ts="forged")
    tl.stop()

    started, finished, failed, event = stream.records()
    for rec in (started, finished, failed, event):
        assert {"ts", "level", "logger", "msg"} <= rec.keys()
        ts = datetime.fromisoformat(rec["ts"])
        assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert abs((datetime.now(UTC) - ts).total_seconds()) < 60
        assert rec["logger"] == "bemcp.tasks"
    assert started["event"] == "task_started" and started["level"] == "INFO"
    assert (started["task_id"], started["method"], started["name"]) == (7, "tools/call", "echo")
    assert (started["request_id"], started["deadline_s"]) == ("r-1", 2.5)
    assert finished["outcome"] == "ok" and finished["duration_ms"] == 12.346 and "error" not in finished
    assert failed["level"] == "WARNING" and failed["error"] == "ValueError: nope"
    assert event["event"] == "watchdog_stall" and event["lag_ms"] == 250.0 and event["level"] == "WARNING"
    # Fields merge at top level but cannot overwrite the envelope.
    assert event["msg"] == "watchdog_stall" and event["ts"] != "forged"


def test_unserialisable_fields_still_produce_a_line() -> None:
    stream = MemoryStream()
    tl = TaskLog(stream=stream)
    tl.start()
    tl.event("odd", path=Path("/x"), obj=object(), big=2**70, nested={1: "int key"})
    tl.stop()
    (rec,) = stream.records()
    assert rec["event"] == "odd" and rec["path"] == "/x"


def test_attach_routes_ordinary_logging_and_restores_on_stop() -> None:
    stream = MemoryStream()
    logger = logging.getLogger(f"bemcp.test.{uuid.uuid4().hex}")
    logger.setLevel(logging.INFO)
    original = logging.NullHandler()
    logger.addHandler(original)
    tl = TaskLog(stream=stream)
    tl.start()
    tl.attach(logger)
    assert logger.handlers == [tl.handler] and logger.propagate is False
    args = ["mutable"]
    logger.info("hello %s", args, extra={"fields": {"session": "s1"}})
    args.append("changed after the call")
    try:
        raise ValueError("kaput")
    except ValueError:
        logger.exception("it broke")
    logging.getLogger(f"{logger.name}.child").warning("from a child")
    tl.stop()

    assert logger.handlers == [original] and logger.propagate is True
    hello, broke, child = stream.records()
    assert hello["msg"] == "hello ['mutable']" and hello["session"] == "s1" and hello["logger"] == logger.name
    assert broke["level"] == "ERROR" and "ValueError: kaput" in broke["exc"]
    assert child["msg"] == "from a child"


def test_rotation(tmp_path: Path) -> None:
    path = tmp_path / "tasks.log"
    tl = TaskLog(path, max_bytes=400, backup_count=3)
    tl.start()
    for i in range(60):
        tl.event("tick", i=i)
    tl.stop()

    files = sorted(tmp_path.glob("tasks.log*"))
    assert path.with_name("tasks.log.1") in files
    assert len(files) == 4  # the current file plus backup_count backups
    seen = []
    for f in files:
        assert f.stat().st_size <= 400
        seen += [orjson.loads(line)["i"] for line in f.read_text().splitlines()]
    # The newest records survive; the oldest rotated away.
    assert 59 in seen and 0 not in seen


def test_start_twice_is_a_noop_and_stop_joins() -> None:
    before = set(listener_threads())
    stream = MemoryStream()
    tl = TaskLog(stream=stream)
    tl.start()
    thread = tl.thread
    assert thread is not None and thread.is_alive()
    tl.start()
    assert tl.thread is thread
    assert len(set(listener_threads()) - before) == 1
    for i in range(500):
        tl.event("tick", i=i)
    tl.stop()
    assert not thread.is_alive()
    assert thread not in threading.enumerate()
    assert set(listener_threads()) <= before
    assert [r["i"] for r in stream.records()] == list(range(500))
    assert not tl.running and tl.thread is None
    tl.stop()  # stop twice is also harmless


def test_restart_after_stop() -> None:
    stream = MemoryStream()
    tl = TaskLog(stream=stream)
    tl.start()
    tl.event("one")
    tl.stop()
    tl.event("queued while stopped")
    tl.start()
    tl.event("two")
    tl.stop()
    assert [r["msg"] for r in stream.records()] == ["one", "queued while stopped", "two"]


def test_full_queue_drops_and_counts_instead_of_blocking() -> None:
    stream = MemoryStream()
    tl = TaskLog(stream=stream, queue_size=10)
    # Not started: nothing drains the queue, so a blocking put would hang here.
    t0 = time.monotonic()
    for i in range(100):
        tl.event("tick", i=i)
    assert time.monotonic() - t0 < 1.0
    assert tl.dropped == 90
    assert tl.snapshot() == TaskLogSnapshot(enabled=True, running=False, dropped=90)
    tl.start()
    tl.stop()
    records = stream.records()
    assert [r["i"] for r in records[:-1]] == list(range(10))
    final = records[-1]
    assert final["event"] == DROP_EVENT and final["level"] == "WARNING"
    assert final["dropped"] == 90 and final["dropped_total"] == 90


def test_drops_are_reported_periodically_while_running() -> None:
    stream = MemoryStream()
    stream.gate.clear()  # the sink hangs until released
    tl = TaskLog(stream=stream, queue_size=5, report_interval_s=0.05)
    tl.start()
    try:
        for i in range(50):
            tl.event("tick", i=i)
        assert tl.dropped >= 40
        stream.gate.set()
        assert wait_for(lambda: any(r.get("event") == DROP_EVENT for r in stream.records()))
        report = next(r for r in stream.records() if r.get("event") == DROP_EVENT)
        assert report["dropped_total"] == tl.dropped
    finally:
        stream.gate.set()
        tl.stop()
    assert sum(r["dropped"] for r in stream.records() if r.get("event") == DROP_EVENT) == tl.dropped


async def _max_loop_lag(tl: TaskLog, *, tasks: int, per_burst: int, min_duration: float) -> float:
    """Log `tasks` start/finish pairs in bursts while a 5 ms ticker measures how late the loop wakes."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    lags: list[float] = []

    async def ticker() -> None:
        while not done.is_set():
            scheduled = loop.time() + 0.005
            await asyncio.sleep(0.005)
            lags.append(loop.time() - scheduled)

    async def producer() -> None:
        for i in range(tasks):
            tl.task_started(i, "tools/call", "echo", request_id=i, deadline_s=30.0)
            tl.task_finished(i, "tools/call", "echo", outcome="ok", duration_ms=0.5)
            if i % per_burst == per_burst - 1:
                await asyncio.sleep(0.001)

    tick = asyncio.create_task(ticker())
    t0 = loop.time()
    await producer()
    await asyncio.sleep(max(0.0, min_duration - (loop.time() - t0)))
    done.set()
    await tick
    return max(lags)


async def test_event_loop_stays_responsive_with_a_slow_sink() -> None:
    # Each write sleeps 200 ms: a logger that wrote on the caller would show ~200 ms of loop lag
    # per record. Scheduling noise on a busy 2-core box can add a one-off spike, so the best of a
    # few attempts is what is judged; a real blocking bug fails all of them by a wide margin.
    tasks, attempts = 2500, 3
    lags = []
    for _ in range(attempts):
        stream = MemoryStream(delay=0.2)
        tl = TaskLog(stream=stream)
        tl.start()
        gc.collect()
        try:
            lag = await _max_loop_lag(tl, tasks=tasks, per_burst=25, min_duration=1.0)
            # The sink really was the bottleneck: a handful written (5 per second) while we logged 5000.
            assert stream.writes < 100
        finally:
            stream.delay = 0.0
            tl.stop()
        # Nothing was lost: the queue (10,000) absorbed the burst and stop() flushed it all.
        assert tl.dropped == 0
        records = stream.records()
        assert len(records) == 2 * tasks
        assert sum(r["event"] == "task_finished" for r in records) == tasks
        lags.append(lag)
        if lag < 0.05:
            break
    assert min(lags) < 0.05, f"loop lag per attempt (s): {lags}"


async def test_overloaded_slow_sink_drops_without_stalling_the_loop() -> None:
    stream = MemoryStream(delay=0.2)
    tl = TaskLog(stream=stream, queue_size=1000)
    tl.start()
    try:
        lag = await _max_loop_lag(tl, tasks=2500, per_burst=25, min_duration=0.3)
    finally:
        stream.delay = 0.0
        tl.stop()
    assert tl.dropped >= 5000 - 1000 - 20
    records = stream.records()
    drops = [r for r in records if r.get("event") == DROP_EVENT]
    assert drops and drops[-1]["dropped_total"] == tl.dropped
    assert len(records) - len(drops) + tl.dropped == 5000
    # Generous: the dedicated test above holds the tight bound; here dropping must not block either.
    assert lag < 0.15


@pytest.mark.parametrize("kwargs", [{"queue_size": 0}, {"queue_size": -1}, {"report_interval_s": 0}])
def test_rejects_unbounded_queue_and_busy_polling(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TaskLog(**kwargs)


def test_the_runtime_reports_task_log_drops_in_metrics_and_server_health() -> None:
    """Drops are counted once, by the log, and read from one health snapshot by both reports."""
    rt = Runtime()
    rt.tasklog = TaskLog(stream=MemoryStream(), queue_size=5)  # never started: the queue only fills
    for i in range(12):
        rt.tasklog.event("tick", i=i)
    assert rt.health()["task_log"] == {"enabled": True, "dropped": 7}
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(generate_latest(rt.metrics.collectors).decode())
        for s in family.samples
    }
    assert samples["bemcp_log_dropped_total"] == 7
