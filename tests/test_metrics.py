"""The live metric storage behind /metrics, how it renders through prometheus_client, and the runtime's metrics.

The exposition is read back with prometheus_client's own parsers; tests/test_metrics_server.py reads a real server.
"""

from __future__ import annotations

import time
from bisect import bisect_left

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from bemcp.runtime.admission import RETRY_AFTER_MIN_MS, Admission
from bemcp.runtime.instruments import Registry
from bemcp.runtime.limits import FixedLimit
from bemcp.runtime.runtime import Runtime

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _values(collector: Collector) -> Samples:
    text = generate_latest(collector).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    reg = Registry("t")
    h = reg.histogram("d_seconds", "durations", ("method",), (0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0):
        h.observe(v, "a")
    h.observe1(0.5, "b")
    got = _values(reg)
    assert got[("t_d_seconds_bucket", (("le", "0.1"), ("method", "a")))] == 2  # 0.05 and 0.1 (le is inclusive)
    assert got[("t_d_seconds_bucket", (("le", "1.0"), ("method", "a")))] == 3
    assert got[("t_d_seconds_bucket", (("le", "+Inf"), ("method", "a")))] == 4
    assert got[("t_d_seconds_count", (("method", "a"),))] == 4
    assert got[("t_d_seconds_sum", (("method", "a"),))] == pytest.approx(2.65)
    assert got[("t_d_seconds_bucket", (("le", "0.1"), ("method", "b")))] == 0
    assert got[("t_d_seconds_count", (("method", "b"),))] == 1
    assert (h.count("a"), h.count("b"), h.count("zzz")) == (4, 1, 0)
    assert h.totals() == (5, pytest.approx(3.15))


def test_observe1_and_observe_feed_the_same_series() -> None:
    reg = Registry("t")
    h = reg.histogram("d", "durations", ("method",), (1.0,))
    h.observe1(0.5, "m")
    h.observe(2.0, "m")
    h.observe1(3.0, "m")
    assert len(h.series) == 1 and h.count("m") == 3
    got = _values(reg)
    assert got[("t_d_bucket", (("le", "1.0"), ("method", "m")))] == 1
    assert got[("t_d_sum", (("method", "m"),))] == 5.5


def test_counter_and_gauge_render_with_escaped_labels() -> None:
    reg = Registry("t")
    c = reg.counter("c_total", "count", ("reason",))
    c.inc('a"b\\c\nd')
    c.inc('a"b\\c\nd', amount=2)
    g = reg.gauge("g", "read at scrape", read=lambda: 7.5)
    del g
    got = _values(reg)
    assert got[("t_c_total", (("reason", 'a"b\\c\nd'),))] == 3
    assert got[("t_g", ())] == 7.5


async def test_runtime_metrics_read_outcomes_from_the_task_registry() -> None:
    rt = Runtime()
    for outcome in ("ok", "ok", "error"):
        rec = rt.calls.begin("tools/call", "x", None)
        rt.calls.end(rec, outcome)
    got = _values(rt.metrics.collectors)
    assert got[("bemcp_calls_completed_total", (("outcome", "ok"),))] == 2
    assert got[("bemcp_calls_completed_total", (("outcome", "error"),))] == 1


def test_each_timed_method_has_a_zero_series_before_its_first_call() -> None:
    """A scraper (and a test counting calls) finds tools/call, resources/read and prompts/get from the start."""
    got = _values(Runtime().metrics.collectors)
    for method in ("tools/call", "resources/read", "prompts/get"):
        assert got[("bemcp_call_duration_seconds_count", (("method", method),))] == 0


def test_recent_call_time_follows_the_last_second() -> None:
    rt = Runtime()
    m = rt.metrics
    assert m.recent_call_ns() == 0.0  # nothing timed yet
    for _ in range(20):
        m.latency.observe1(0.010, "tools/call")
    assert m.recent_call_ns() == pytest.approx(10e6)  # the first look: the lifetime mean
    for _ in range(20):
        m.latency.observe1(0.030, "tools/call")
    assert m.recent_call_ns() == pytest.approx(10e6)  # within the second: unchanged
    m._mean_mark = (time.monotonic() - 1.5, 20, 0.2)  # as if the last look were 1.5 s ago
    assert m.recent_call_ns() == pytest.approx(30e6)  # only the calls since then


def test_retry_hint_uses_the_runtime_s_call_time_for_a_fixed_limit() -> None:
    adm = Admission(FixedLimit(10), queue_timeout=2.0)
    assert adm.retry_after_ms() == 200  # no call timed: one queue timeout per call, 1 slot of 10
    adm.call_time_ns = lambda: 1e9  # 1 s calls
    assert adm.retry_after_ms() == 100  # a slot frees every 1 s / 10
    adm.call_time_ns = lambda: 5e6
    assert adm.retry_after_ms() == RETRY_AFTER_MIN_MS  # 0.5 ms, raised to the minimum
    assert adm.enter() and adm.in_flight == 1
    adm.leave()
    assert adm.in_flight == 0


def test_cells_updated_inline_render_like_observe() -> None:
    """The call path counts into `cells()` by hand; the result must equal what `observe` records."""
    reg = Registry("t")
    h = reg.histogram("d", "durations", ("method",), (0.1, 1.0))
    ref = Registry("t")
    r = ref.histogram("d", "durations", ("method",), (0.1, 1.0))
    cells = h.cells("m")
    assert h.cells("m") is cells
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        cells[0 if v <= h.first else bisect_left(h.buckets, v)] += 1
        cells[h.sum_at] += v
        r.observe(v, "m")
    assert generate_latest(reg) == generate_latest(ref)
    assert h.totals() == (5, pytest.approx(8.65))


def test_histogram_buckets_must_ascend() -> None:
    for bad in ((), (1.0, 0.5), (0.5, 0.5)):
        with pytest.raises(ValueError, match="ascending"):
            Registry("t").histogram("d", "durations", (), bad)


def test_names_promise_the_type() -> None:
    reg = Registry("t")
    with pytest.raises(ValueError, match="ends in _total"):
        reg.counter("calls", "a counter without _total")
    with pytest.raises(ValueError, match="promises a counter"):
        reg.gauge("calls_total", "a gauge named like a counter")
    reg.gauge("level", "a gauge")
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("level", "the same name again")


def test_readers_give_live_values_at_each_scrape() -> None:
    counts = {"a": 1}
    level = [2.5]
    reg = Registry("t")
    reg.counter("done_total", "by kind", ("kind",), read=lambda: {(k,): n for k, n in counts.items()})
    reg.gauge("level", "read at scrape", read=lambda: level[0])
    assert _values(reg) == {("t_done_total", (("kind", "a"),)): 1, ("t_level", ()): 2.5}
    counts["a"], counts["b"], level[0] = 4, 1, 0.5
    assert _values(reg) == {
        ("t_done_total", (("kind", "a"),)): 4,
        ("t_done_total", (("kind", "b"),)): 1,
        ("t_level", ()): 0.5,
    }


def test_counters_render_typed_counter_with_unchanged_sample_names() -> None:
    reg = Registry("t")
    reg.counter("admitted_total", "admitted").inc(amount=3)
    reg.gauge("in_flight", "running").set(1)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}
    assert (families["t_admitted"].type, [s.name for s in families["t_admitted"].samples]) == (
        "counter",
        ["t_admitted_total"],
    )
    assert (families["t_in_flight"].type, [s.name for s in families["t_in_flight"].samples]) == (
        "gauge",
        ["t_in_flight"],
    )


PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)


TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_1_0_0 = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("", TEXT_0_0_4),
        ("*/*", TEXT_0_0_4),
        ("text/plain", TEXT_0_0_4),
        ("application/openmetrics-text;version=0.0.1", TEXT_0_0_4),  # a version prometheus_client does not write
        ("text/plain; version=1.0.0", "text/plain; version=1.0.0; charset=utf-8; escaping=underscores"),
        ("application/openmetrics-text", OPENMETRICS_1_0_0),
        (PROMETHEUS_2_ACCEPT, OPENMETRICS_1_0_0 + "; escaping=underscores"),
        (PROMETHEUS_3_ACCEPT, OPENMETRICS_1_0_0 + "; escaping=allow-utf-8"),
    ],
)
def test_scrape_negotiates_the_format(accept: str, content_type: str) -> None:
    rt = Runtime()
    rt.metrics.latency.observe1(0.002, "tools/call")
    body, got = rt.metrics.scrape(accept)
    assert got == content_type
    text = body.decode()
    if content_type.startswith("application/openmetrics-text"):
        assert text.endswith("# EOF\n")
        families = {f.name: f for f in openmetrics_families(text)}  # strict: it raises on anything malformed
    else:
        assert "# EOF" not in text
        families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["bemcp_admitted"].type == "counter"
    assert families["bemcp_call_duration_seconds"].type == "histogram"
    assert families["process_cpu_seconds"].type == "counter"


def test_scrape_work_does_not_grow_with_calls() -> None:
    """A scrape renders one series per label set: ten thousand calls more add no sample."""
    rt = Runtime()
    cells = rt.metrics.latency.cells("tools/call")
    before = _values(rt.metrics.collectors)
    for _ in range(10_000):
        cells[0] += 1
        cells[rt.metrics.latency.sum_at] += 0.00005
    after = _values(rt.metrics.collectors)
    assert after.keys() == before.keys()
    assert after[("bemcp_call_duration_seconds_count", (("method", "tools/call"),))] == 10_000
