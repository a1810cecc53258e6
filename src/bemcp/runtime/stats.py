"""The runtime's Prometheus metrics: what /metrics shows."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from bemcp.runtime.metrics import LabelValues, Registry

if TYPE_CHECKING:
    from bemcp.runtime.runtime import Runtime

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
    counts sheds; every other number is read from the runtime's parts at scrape time."""

    def __init__(self, rt: Runtime) -> None:
        self.registry = reg = Registry("bemcp")
        reg.counter(
            "calls_completed_total", "Calls finished, by outcome.", ("outcome",), read=lambda: _by(rt.tasks.completed)
        )
        self.shed = reg.counter("calls_shed_total", "Calls refused before admission, by reason.", ("reason",))
        self.latency = reg.histogram(
            "call_duration_seconds", "Call duration from admission to answer.", ("method",), _LATENCY_BUCKETS
        )
        reg.gauge("in_flight", "Calls running now.", read=lambda: rt.tasks.in_flight)
        reg.gauge("queued", "Calls waiting for admission.", read=lambda: rt.admission.queued)
        reg.gauge("concurrency_limit", "The current concurrency limit.", read=lambda: rt.admission.limit)
        reg.counter("admitted_total", "Calls admitted since start.", read=lambda: rt.admission.admitted)
        reg.counter(
            "rejected_total",
            "Calls refused, by reason (admission's refusals and the sheds before it).",
            ("reason",),
            read=self._rejected,
        )
        reg.counter(
            "watchdog_events_total",
            "Watchdog events, by kind.",
            ("kind",),
            read=lambda: _by(rt.watchdog.snapshot()["events"]),
        )
        reg.gauge("loop_lag_seconds", "How late the last event-loop heartbeat was.", read=lambda: rt.watchdog.loop_lag)
        reg.gauge("loop_lag_max_seconds", "The worst heartbeat delay seen.", read=lambda: rt.watchdog.max_loop_lag)
        reg.gauge("rss_bytes", "Resident set size of the process.", read=lambda: rt.memory.snapshot().rss)
        reg.gauge(
            "memory_usage_bytes", "Memory usage the budget is compared with.", read=lambda: rt.memory.snapshot().usage
        )
        reg.gauge("memory_budget_bytes", "The memory budget.", read=lambda: rt.memory.budget)
        reg.gauge("memory_reserved_bytes", "Bytes held by reservations.", read=lambda: rt.memory.reserved)
        reg.gauge("memory_level", "0 normal, 1 elevated, 2 high, 3 critical.", read=lambda: int(rt.memory.level))
        reg.gauge("sync_threads_running", "Worker threads busy with sync tools.", read=lambda: rt.sync_running)
        reg.gauge(
            "sync_threads_abandoned",
            "Worker threads still running calls already answered.",
            read=lambda: rt.sync_abandoned,
        )
        reg.gauge(
            "abandoned_calls",
            "Calls answered while their work still runs (it ignored its cancellation); each keeps its slot.",
            read=lambda: len(rt.tasks.abandoned),
        )
        reg.counter(
            "calls_abandoned_total",
            "Calls ever answered while their work still ran.",
            read=lambda: rt.tasks.abandoned_total,
        )
        reg.gauge("subtasks", "Live fan-out sub-tasks.", read=lambda: rt.tasks.subtasks)
        reg.gauge("ready", "1 when the server accepts new calls.", read=lambda: int(rt.ready))
        reg.gauge("uptime_seconds", "Seconds since the runtime started.", read=lambda: rt.uptime)
        # What a scrape collects: the runtime's metrics and the standard process_* / python_* ones, in a registry
        # this object owns (never prometheus_client's global REGISTRY, which other code in the process may fill).
        self.collectors = CollectorRegistry()
        self.collectors.register(reg)
        ProcessCollector(registry=self.collectors)
        PlatformCollector(registry=self.collectors)
        GCCollector(registry=self.collectors)
        self._rt = rt
        self._mean_mark: tuple[float, int, float] | None = None  # (when, calls, seconds) at the last look
        self._mean_ns = 0.0

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

    def _rejected(self) -> dict[LabelValues, float]:
        rejected = dict(self._rt.admission.rejected)
        for reason, n in (*self.shed_counts().items(), *self._rt.refused.items()):
            rejected[reason] = rejected.get(reason, 0) + n
        return _by(rejected)

    def scrape(self, accept: str = "") -> tuple[bytes, str]:
        """One scrape: the body and its content type, in the format that `accept` (the request's Accept header)
        asks for, as prometheus_client negotiates it: OpenMetrics 1.0.0 for `application/openmetrics-text`,
        the Prometheus text format 0.0.4 by default."""
        encode, content_type = choose_encoder(accept)
        return encode(self.collectors), content_type


def _by(counts: Mapping[str, float]) -> dict[LabelValues, float]:
    """One-label counts as the {label values: number} that a labelled metric's reader returns."""
    return {(label,): float(n) for label, n in counts.items()}
