"""The runtime's Prometheus metrics: what /metrics shows."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from bemcp.runtime.instruments import LabelValues, Registry

if TYPE_CHECKING:
    from bemcp.runtime.health import HealthSnapshot

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


# Fewer calls than this since the last look: keep the mean from before (or the lifetime one).
_MEAN_MIN_CALLS = 16


class RuntimeMetrics:
    """What /metrics shows: the call path only times each call (counted inline into `latency.cells()`) and
    counts sheds; every other number is read at scrape time from one `HealthSnapshot` (the same figures
    `server_health` reports), taken by `health` once per scrape."""

    def __init__(self, health: Callable[[], HealthSnapshot]) -> None:
        self._health = health
        self._snap: HealthSnapshot | None = None  # the snapshot of the scrape in progress
        self.registry = reg = Registry("bemcp")
        snap = self._snapshot
        reg.counter(
            "calls_completed_total",
            "Calls finished, by outcome.",
            ("outcome",),
            read=lambda: _by(snap().calls.completed),
        )
        self.shed = reg.counter("calls_shed_total", "Calls refused before admission, by reason.", ("reason",))
        self.latency = reg.histogram(
            "call_duration_seconds", "Call duration from admission to answer.", ("method",), _LATENCY_BUCKETS
        )
        reg.gauge("in_flight", "Calls running now.", read=lambda: snap().in_flight)
        reg.gauge("queued", "Calls waiting for admission.", read=lambda: snap().queued)
        reg.gauge(
            "slots_lent",
            "Admission slots given up by tasks waiting for their client (input_required).",
            read=lambda: snap().admission.lent,
        )
        reg.gauge("concurrency_limit", "The current concurrency limit.", read=lambda: snap().limit)
        reg.counter("admitted_total", "Calls admitted since start.", read=lambda: snap().admitted)
        reg.counter(
            "rejected_total",
            "Calls refused, by reason (admission's refusals and the sheds before it).",
            ("reason",),
            read=lambda: _by(snap().rejected),
        )
        reg.counter(
            "watchdog_events_total", "Watchdog events, by kind.", ("kind",), read=lambda: _by(snap().watchdog.events)
        )
        reg.gauge(
            "loop_lag_seconds",
            "How late the last event-loop heartbeat was.",
            read=lambda: snap().watchdog.loop_lag_ms / 1000,
        )
        reg.gauge(
            "loop_lag_max_seconds",
            "The worst heartbeat delay seen.",
            read=lambda: snap().watchdog.max_loop_lag_ms / 1000,
        )
        reg.gauge("rss_bytes", "Resident set size of the process.", read=lambda: snap().memory.rss)
        reg.gauge("memory_usage_bytes", "Memory usage the budget is compared with.", read=lambda: snap().memory.usage)
        reg.gauge("memory_budget_bytes", "The memory budget.", read=lambda: snap().memory.budget)
        reg.gauge("memory_reserved_bytes", "Bytes held by reservations.", read=lambda: snap().memory.reserved)
        reg.gauge("memory_level", "0 normal, 1 elevated, 2 high, 3 critical.", read=lambda: int(snap().memory.level))
        reg.gauge(
            "sync_threads_running", "Worker threads busy with sync tools.", read=lambda: snap().sync_threads.running
        )
        reg.gauge(
            "sync_threads_abandoned",
            "Worker threads still running calls already answered.",
            read=lambda: snap().sync_threads.abandoned,
        )
        reg.gauge(
            "abandoned_calls",
            "Calls answered while their work still runs (it ignored its cancellation); each keeps its slot.",
            read=lambda: snap().calls.abandoned.calls,
        )
        reg.counter(
            "calls_abandoned_total",
            "Calls ever answered while their work still ran.",
            read=lambda: snap().calls.abandoned.total,
        )
        reg.gauge("subtasks", "Live sub-tasks that calls spawned (fan-outs).", read=lambda: snap().calls.subtasks)
        reg.counter(
            "log_dropped_total",
            "Task-log records dropped because the log's queue was full (the call path never waits for the log).",
            read=lambda: snap().task_log.dropped,
        )
        reg.gauge(
            "tasks_unfinished",
            "Unfinished MCP tasks this process runs, by status (working, input_required).",
            ("status",),
            read=lambda: _tasks_now(snap()),
        )
        reg.counter(
            "task_events_total",
            "MCP tasks since start, by event: created, completed, failed, cancelled, refused (--max-tasks), "
            "resumed and interrupted (after a restart or a lost worker).",
            ("event",),
            read=lambda: _task_counts(snap()),
        )
        reg.gauge("ready", "1 when the server accepts new calls.", read=lambda: int(snap().ready))
        reg.gauge("uptime_seconds", "Seconds since the runtime started.", read=lambda: snap().uptime_s)
        # What a scrape collects: the runtime's metrics and the standard process_* / python_* ones, in a registry
        # this object owns (never prometheus_client's global REGISTRY, which other code in the process may fill).
        self.collectors = CollectorRegistry()
        self.collectors.register(reg)
        ProcessCollector(registry=self.collectors)
        PlatformCollector(registry=self.collectors)
        GCCollector(registry=self.collectors)
        self._mean_mark: tuple[float, int, float] | None = None  # (when, calls, seconds) at the last look
        self._mean_ns = 0.0

    def _snapshot(self) -> HealthSnapshot:
        return self._snap if self._snap is not None else self._health()

    def recent_call_ns(self) -> float:
        """Mean call duration (ns) over the last second or more of calls, for retry hints (0 before any call).

        Computed from the latency histogram when asked (on a refusal or a scrape), so the call path keeps
        no average of its own.
        """
        now = time.monotonic()
        mark = self._mean_mark
        if mark is None or now - mark[0] >= 1.0 or not self._mean_ns:
            n, total = self.latency.totals()
            if mark is not None and n - mark[1] >= _MEAN_MIN_CALLS:
                self._mean_ns = (total - mark[2]) / (n - mark[1]) * 1e9
            elif n and (mark is None or not self._mean_ns):
                self._mean_ns = total / n * 1e9
            self._mean_mark = (now, n, total)
        return self._mean_ns

    def shed_counts(self) -> dict[str, int]:
        return {labels[0]: int(v) for labels, v in self.shed.values.items()}

    def scrape(self, accept: str = "") -> tuple[bytes, str]:
        """One scrape: the body and its content type, in the format that `accept` (the request's Accept header)
        asks for, as prometheus_client negotiates it: OpenMetrics 1.0.0 for `application/openmetrics-text`,
        the Prometheus text format 0.0.4 by default."""
        encode, content_type = choose_encoder(accept)
        self._snap = self._health()
        try:
            return encode(self.collectors), content_type
        finally:
            self._snap = None


def _tasks_now(snap: HealthSnapshot) -> dict[LabelValues, float]:
    tasks = snap.tasks
    if tasks is None:
        return {}
    return {("working",): float(tasks.working), ("input_required",): float(tasks.input_required)}


def _task_counts(snap: HealthSnapshot) -> dict[LabelValues, float]:
    return _by(snap.tasks.counts) if snap.tasks is not None else {}


def _by(counts: Mapping[str, float]) -> dict[LabelValues, float]:
    """One-label counts as the {label values: number} that a labelled metric's reader returns."""
    return {(label,): float(n) for label, n in counts.items()}
