"""The Prometheus registry behind /metrics, and the runtime's call-path metrics.

The exposition text is read back with the stress tester's own parser (the one that scrapes real servers).
"""

from __future__ import annotations

import time

import pytest

from bemcp.runtime.admission import RETRY_AFTER_MIN_MS, Admission
from bemcp.runtime.limits import FixedLimit
from bemcp.runtime.metrics import Registry
from bemcp.runtime.runtime import Runtime
from bemcp.stress.sampler import parse_prometheus


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(m.name, tuple(sorted(m.labels.items()))): m.value for m in parse_prometheus(text)}


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    reg = Registry("t")
    h = reg.histogram("d_seconds", "durations", ("method",), (0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0):
        h.observe(v, "a")
    h.observe1(0.5, "b")
    got = _values(reg.render())
    assert got[("t_d_seconds_bucket", (("le", "0.1"), ("method", "a")))] == 2  # 0.05 and 0.1 (le is inclusive)
    assert got[("t_d_seconds_bucket", (("le", "1"), ("method", "a")))] == 3
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
    got = _values(reg.render())
    assert got[("t_d_bucket", (("le", "1"), ("method", "m")))] == 1
    assert got[("t_d_sum", (("method", "m"),))] == 5.5


def test_counter_and_gauge_render_with_escaped_labels() -> None:
    reg = Registry("t")
    c = reg.counter("c_total", "count", ("reason",))
    c.inc('a"b\\c\nd')
    c.inc('a"b\\c\nd', amount=2)
    g = reg.gauge("g", "read at scrape", read=lambda: 7.5)
    del g
    got = _values(reg.render())
    assert got[("t_c_total", (("reason", 'a"b\\c\nd'),))] == 3
    assert got[("t_g", ())] == 7.5


async def test_runtime_metrics_read_outcomes_from_the_task_registry() -> None:
    rt = Runtime()
    for outcome in ("ok", "ok", "error"):
        rec = rt.tasks.begin("tools/call", "x", None)
        rt.tasks.end(rec, outcome)
    got = _values(rt.metrics.render())
    assert got[("bemcp_calls_completed_total", (("outcome", "ok"),))] == 2
    assert got[("bemcp_calls_completed_total", (("outcome", "error"),))] == 1


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
    from bisect import bisect_left

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
    assert reg.render() == ref.render()
    assert h.totals() == (5, pytest.approx(8.65))


def test_histogram_buckets_must_ascend() -> None:
    for bad in ((), (1.0, 0.5), (0.5, 0.5)):
        with pytest.raises(ValueError, match="ascending"):
            Registry("t").histogram("d", "durations", (), bad)
