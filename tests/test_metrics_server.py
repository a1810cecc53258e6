"""A real `bemcp serve`'s /metrics, read by prometheus_client's parsers after real calls, refused ones included."""

from __future__ import annotations

import asyncio
import math
import urllib.request
from collections.abc import Iterable, Iterator
from itertools import pairwise
from pathlib import Path

import psutil
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from bemcp.stress.sampler import parse_prometheus
from tests.procs import HttpServer, http_server, post_call

pytestmark = pytest.mark.timeout(60)

# The families and their types, listed by hand: a new metric must be typed here on purpose.
BEMCP_COUNTERS = {
    "bemcp_admitted",
    "bemcp_rejected",
    "bemcp_calls_completed",
    "bemcp_calls_shed",
    "bemcp_watchdog_events",
    "bemcp_calls_abandoned",
    "bemcp_log_dropped",
    "bemcp_http_refused",
    "bemcp_sessions_refused",
    "bemcp_task_events",
}
BEMCP_GAUGES = {
    "bemcp_in_flight",
    "bemcp_queued",
    "bemcp_slots_lent",
    "bemcp_concurrency_limit",
    "bemcp_loop_lag_seconds",
    "bemcp_loop_lag_max_seconds",
    "bemcp_rss_bytes",
    "bemcp_memory_usage_bytes",
    "bemcp_memory_budget_bytes",
    "bemcp_memory_reserved_bytes",
    "bemcp_memory_level",
    "bemcp_sync_threads_running",
    "bemcp_sync_threads_abandoned",
    "bemcp_abandoned_calls",
    "bemcp_http_connections",
    "bemcp_subtasks",
    "bemcp_ready",
    "bemcp_uptime_seconds",
    "bemcp_sessions",
    "bemcp_tasks_unfinished",
}
BEMCP_HISTOGRAMS = {"bemcp_call_duration_seconds"}
PROCESS_GAUGES = {
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
}
PROCESS_COUNTERS = {"process_cpu_seconds", "python_gc_collections", "python_gc_objects_collected"}

SLEEPERS, SLEEP_S, ECHOES = 4, 0.3, 3


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    # One slot and no queue: concurrent sleeps past the first are refused (concurrency_limit).
    with http_server("--stress-tools", "--max-concurrency", "1", "--queue-size", "0", tmp=tmp_path) as s:
        yield s


async def make_calls(port: int) -> tuple[int, int, int]:
    """ECHOES echo calls one by one, then SLEEPERS concurrent sleeps; returns (answered, refused, sleeps run)."""
    echoes = [await post_call(port, "echo", {"text": "hi"}) for _ in range(ECHOES)]
    sleeps = await asyncio.gather(*(post_call(port, "sleep", {"seconds": SLEEP_S}) for _ in range(SLEEPERS)))
    assert echoes == [200] * ECHOES
    assert set(sleeps) <= {200, 503}
    return echoes.count(200) + sleeps.count(200), sleeps.count(503), sleeps.count(200)


def scrape(server: HttpServer, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(f"{server.base}/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return reply.headers["Content-Type"], reply.read().decode()


def by_name(families: Iterable[Metric]) -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    for f in families:
        assert f.name not in out, f"family {f.name} twice"
        out[f.name] = f
    return out


def value(family: Metric, sample: str, **labels: str) -> float:
    found = [s.value for s in family.samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels, family.samples)
    return found[0]


async def test_metrics_are_typed_honestly_and_count_the_calls(server: HttpServer) -> None:
    answered, refused, slept = await make_calls(server.port)
    assert refused > 0, "no concurrent sleep was refused: the test did not overload the server"
    content_type, text = scrape(server)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = by_name(text_string_to_metric_families(text))

    # Every counter is a counter: samples named *_total belong to counters, and counters' samples end in _total.
    for f in families.values():
        if any(s.name.endswith("_total") for s in f.samples):
            assert f.type == "counter", f.name
        if f.type == "counter":
            assert all(s.name == f.name + "_total" for s in f.samples), f.name
    types = {name: f.type for name, f in families.items()}
    bemcp = {name: t for name, t in types.items() if name.startswith("bemcp_")}
    assert bemcp == {
        **dict.fromkeys(BEMCP_COUNTERS, "counter"),
        **dict.fromkeys(BEMCP_GAUGES, "gauge"),
        **dict.fromkeys(BEMCP_HISTOGRAMS, "histogram"),
    }
    assert {name: types.get(name) for name in PROCESS_GAUGES} == dict.fromkeys(PROCESS_GAUGES, "gauge")
    assert {name: types.get(name) for name in PROCESS_COUNTERS} == dict.fromkeys(PROCESS_COUNTERS, "counter")

    # The counters agree with the answers the calls got.
    assert value(families["bemcp_admitted"], "bemcp_admitted_total") == answered
    rejected = families["bemcp_rejected"]
    assert value(rejected, "bemcp_rejected_total", reason="concurrency_limit") == refused
    assert sum(s.value for s in rejected.samples) == refused
    assert value(families["bemcp_calls_completed"], "bemcp_calls_completed_total", outcome="ok") == answered

    # Histogram buckets are cumulative, end at +Inf, and _count is the calls answered.
    duration = families["bemcp_call_duration_seconds"]
    methods = {s.labels["method"] for s in duration.samples}
    assert "tools/call" in methods
    for method in methods:
        buckets = [
            (float(s.labels["le"]), s.value)
            for s in duration.samples
            if s.name.endswith("_bucket") and s.labels["method"] == method
        ]
        assert [le for le, _ in buckets] == sorted(le for le, _ in buckets) and buckets[-1][0] == math.inf
        assert all(a <= b for (_, a), (_, b) in pairwise(buckets)), (method, buckets)
        count = value(duration, "bemcp_call_duration_seconds_count", method=method)
        assert buckets[-1][1] == count
    assert value(duration, "bemcp_call_duration_seconds_count", method="tools/call") == answered
    # Each sleep that ran counts its 0.3 s; the loop's timers (uvloop: whole milliseconds) may end one early.
    assert value(duration, "bemcp_call_duration_seconds_sum", method="tools/call") >= slept * (SLEEP_S - 0.002)

    # The standard process_* metrics describe the server process.
    proc = psutil.Process(server.proc.pid)
    assert value(families["process_resident_memory_bytes"], "process_resident_memory_bytes") > 10e6
    assert value(families["process_cpu_seconds"], "process_cpu_seconds_total") > 0
    open_fds = value(families["process_open_fds"], "process_open_fds")
    assert 3 <= open_fds <= value(families["process_max_fds"], "process_max_fds")
    started = value(families["process_start_time_seconds"], "process_start_time_seconds")
    assert started == pytest.approx(proc.create_time(), abs=1.0)

    # The stress tester's own parser (which samples targets' /metrics) reads the same samples.
    ours = {(m.name, tuple(sorted(m.labels.items()))): m.value for m in parse_prometheus(text)}
    theirs = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert ours == theirs


async def test_openmetrics_when_the_scraper_asks_for_it(server: HttpServer) -> None:
    answered, refused, _ = await make_calls(server.port)
    content_type, text = scrape(server, "application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith("# EOF\n")
    families = by_name(openmetrics_families(text))  # the strict parser: it raises on anything malformed
    duration = families["bemcp_call_duration_seconds"]
    assert value(duration, "bemcp_call_duration_seconds_count", method="tools/call") == answered
    assert value(families["bemcp_rejected"], "bemcp_rejected_total", reason="concurrency_limit") == refused

    # The same families, types and series as the text format.
    _, plain = scrape(server)
    families_plain = by_name(text_string_to_metric_families(plain))
    assert {n: f.type for n, f in families.items()} == {n: f.type for n, f in families_plain.items()}
    series = {(s.name, tuple(sorted(s.labels.items()))) for f in families.values() for s in f.samples}
    series_plain = {(s.name, tuple(sorted(s.labels.items()))) for f in families_plain.values() for s in f.samples}
    assert series == series_plain
