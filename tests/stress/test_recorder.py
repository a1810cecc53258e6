"""The recorder: HdrHistogram-exact percentiles, step and time-series accounting, serialisation and merging."""

from __future__ import annotations

import json
import math
import pickle
import random
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from bemcp.stress.histogram import DEFAULT_GEOMETRY, HIGHEST_US, Geometry, Histogram
from bemcp.stress.model import OUTCOMES, CallResult, Outcome
from bemcp.stress.recorder import Recorder

T0 = 1000.0  # a fixed monotonic origin: every test here is deterministic


def call(
    start: float,
    latency: float,
    outcome: Outcome = "ok",
    *,
    kind: str = "echo",
    queued: float = 0.0,
    detail: str | None = None,
) -> CallResult:
    """A call sent at `start` (intended `queued` seconds earlier) whose answer came `latency` after it was sent."""
    return CallResult(kind, start - queued, start, start + latency, outcome, detail)


def answered(row: dict[str, Any]) -> int:
    return int(row["achieved"]) + sum(row["errors"].values())


def lognormal_us(rng: random.Random, n: int) -> list[int]:
    return [max(1, int(rng.lognormvariate(math.log(3000), 1.2))) for _ in range(n)]


# -- the histogram ---------------------------------------------------------------------------


def test_bucket_index_is_hdrhistograms() -> None:
    hdr = HdrHistogram(1, HIGHEST_US, 3)
    rng = random.Random(7)
    values = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 10**6, HIGHEST_US - 1, HIGHEST_US]
    values += [rng.randrange(HIGHEST_US) for _ in range(2000)] + [int(10 ** rng.uniform(0, 9.5)) for _ in range(2000)]
    for v in values:
        if v > HIGHEST_US:
            continue
        i = DEFAULT_GEOMETRY.index(v)
        assert i == hdr._counts_index_for(v), v
        assert DEFAULT_GEOMETRY.lowest_equivalent(i) == hdr.get_lowest_equivalent_value(v), v
        assert DEFAULT_GEOMETRY.highest_equivalent(i) == hdr.get_highest_equivalent_value(v), v


@pytest.mark.parametrize("geometry", [Geometry(1, 60_000_000, 2), Geometry(1, HIGHEST_US, 3), Geometry(1, 10**7, 4)])
def test_geometry_matches_hdrhistogram_for_other_precisions(geometry: Geometry) -> None:
    hdr = HdrHistogram(geometry.lowest, geometry.highest, geometry.significant)
    for v in [0, 1, 99, 100, 2047, 2048, 65_535, 65_536, 1_234_567, geometry.highest]:
        assert geometry.index(v) == hdr._counts_index_for(v)


def test_percentiles_match_hdrhistogram_and_are_within_a_thousandth() -> None:
    rng = random.Random(42)
    values = [*lognormal_us(rng, 20_000), 1, 7, 5_000_000]
    ours, hdr = Histogram(), HdrHistogram(1, HIGHEST_US, 3)
    for v in values:
        ours.record(v)
        hdr.record_value(v)
    exact = sorted(values)
    for p in (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0):
        got = ours.percentile(p)
        # Identical to HdrHistogram's answer, except clamped to the exact extremes.
        assert got == min(max(hdr.get_value_at_percentile(p), ours.min), ours.max), p
        truth = exact[max(int(p / 100 * len(exact) + 0.5), 1) - 1]
        assert abs(got - truth) <= max(truth * 0.001, 1), (p, got, truth)
    assert ours.count == hdr.get_total_count() == len(values)
    assert ours.min == min(values) and ours.max == max(values)
    assert ours.mean == pytest.approx(sum(values) / len(values))


def test_percentiles_never_exceed_the_max() -> None:
    h = Histogram()
    for _ in range(10):
        h.record(5000)  # bucket [5000, 5003]: HdrHistogram alone would say p50 = 5003 > max
    s = h.summary()
    assert s["p50"] == s["p99"] == s["p999"] == s["max"] == 5.0


def test_values_out_of_range_are_clamped_not_dropped() -> None:
    h = Histogram()
    h.record(-5)
    h.record(HIGHEST_US * 10)
    assert h.count == 2 and h.min == 0 and h.max == HIGHEST_US


def test_empty_histogram_summary_is_zero() -> None:
    assert Histogram().summary() == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "mean": 0.0}


def test_encode_is_standard_hdrhistogram() -> None:
    rng = random.Random(3)
    h = Histogram()
    for v in lognormal_us(rng, 5000):
        h.record(v)
    decoded = HdrHistogram.decode(h.encode())
    assert decoded.get_total_count() == h.count
    for p in (50.0, 99.0, 99.9):
        assert decoded.get_value_at_percentile(p) >= h.percentile(p)
        assert decoded.values_are_equivalent(decoded.get_value_at_percentile(p), h.percentile(p))


def test_histogram_state_round_trip_and_add() -> None:
    rng = random.Random(5)
    a, b, both = Histogram(), Histogram(), Histogram()
    for i, v in enumerate(lognormal_us(rng, 3000)):
        (a if i % 3 else b).record(v)
        both.record(v)
    a2 = Histogram.from_state(json.loads(json.dumps(a.to_state())))
    a2.add(b)
    assert a2.items() == both.items()
    assert (a2.count, a2.sum, a2.min, a2.max) == (both.count, both.sum, both.min, both.max)
    broken = a.to_state()
    broken["count"] += 1
    with pytest.raises(ValueError):
        Histogram.from_state(broken)


# -- steps -------------------------------------------------------------------------------------


def test_step_counts_outcomes_details_and_rates() -> None:
    rec = Recorder(t0=T0)
    step = rec.step("tsunami", 8, now=T0)
    for i in range(80):
        step.record(call(T0 + i * 0.05, 0.010))
    for i in range(10):
        step.record(call(T0 + i * 0.1, 0.001, "overload", detail="concurrency_limit"))
    step.record(call(T0 + 1, 2.0, "timeout"))
    step.record(call(T0 + 1, 0.002, "tool_error", kind="fail"))
    step.finish(T0 + 4.0)
    d = step.to_dict()
    assert d["calls"] == 92
    assert d["outcomes"] == {
        "ok": 80,
        "tool_error": 1,
        "overload": 10,
        "protocol_error": 0,
        "timeout": 1,
        "transport_error": 0,
    }
    assert sum(d["outcomes"].values()) == d["calls"]
    assert d["details"] == {"overload:concurrency_limit": 10}
    assert d["duration_s"] == 4.0
    assert d["throughput"] == 20.0  # ok answers/s
    assert d["achieved_rate"] == 23.0  # answers of any outcome/s
    ok = step.histogram(outcomes=("ok",)).summary()
    assert ok["p50"] == ok["max"] == 10.0
    assert d["latency_ms"]["max"] == 2000.0
    assert set(d["kinds"]) == {"echo", "fail"}
    assert d["kinds"]["fail"]["outcomes"]["tool_error"] == 1
    assert d["kinds"]["echo"]["calls"] == 91
    assert d["model"] == "closed" and d["offered_rate"] is None and d["concurrency"] == 8
    lat = d["latency_ms"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]

    o = step.outcome()
    assert o.level == 8 and o.calls == 92
    assert o.error_rate == pytest.approx(1 / 92)
    assert o.overload_rate == pytest.approx(10 / 92)
    assert o.throughput == pytest.approx(20.0)
    assert o.p99_ms == pytest.approx(10.0, rel=1e-3)  # 91 of 92 calls took <= 10 ms
    assert not o.client_bound


def test_open_model_latency_counts_from_the_intended_send_time() -> None:
    """A call that waited 0.5 s to be sent (coordinated omission) shows the wait in its latency."""
    rec = Recorder(t0=T0)
    step = rec.step("rate", 100.0, model="open", now=T0)
    for i in range(99):
        step.record(call(T0 + i * 0.01, 0.002))
    step.record(call(T0 + 1.0, 0.002, queued=0.5))
    d = step.to_dict()
    assert d["offered_rate"] == 100.0 and d["concurrency"] is None
    assert d["latency_ms"]["max"] == pytest.approx(502.0, rel=1e-3)
    assert d["latency_ms"]["p50"] == 2.0


def test_unfinished_step_ends_at_its_last_answer_and_client_cpu_is_kept() -> None:
    rec = Recorder(t0=T0)
    step = rec.step("soak", 4, now=T0)
    step.record(call(T0 + 1.0, 1.0))
    assert step.duration == 2.0
    step.set_client_cpu(95.0, True)
    d = step.to_dict()
    assert d["client_cpu_percent"] == 95.0 and d["client_bound"] is True
    assert step.outcome().client_bound


def test_latency_is_clamped_to_the_histogram_range() -> None:
    rec = Recorder(t0=T0)
    step = rec.step("chaos", 1, now=T0)
    step.record(CallResult("echo", T0 + 1, T0 + 1, T0 + 0.5, "ok"))  # a clock oddity: negative latency
    step.record(CallResult("echo", T0, T0, T0 + 7200, "timeout"))  # two hours
    h = step.histogram()
    assert h.min == 0 and h.max == HIGHEST_US


# -- the time series ---------------------------------------------------------------------------


def test_time_series_buckets_by_second() -> None:
    rec = Recorder(t0=T0)
    step = rec.step("rate", 10.0, model="open", now=T0)
    step.record(call(T0 + 0.2, 0.1))  # second 0
    step.record(call(T0 + 0.9, 0.3))  # sent in 0, answered in 1
    step.record(call(T0 + 1.5, 0.01, "overload"))
    step.record(call(T0 + 1.95, 0.01, queued=1.0))  # intended in second 0
    step.record(call(T0 + 4.2, 0.02, "transport_error"))  # seconds 2 and 3 stay empty
    rows = rec.series.rows()
    assert [r["t"] for r in rows] == [0, 1, 2, 3, 4]
    r0, r1, r2, _, r4 = rows
    assert r0["offered"] == 3 and r0["achieved"] == 1 and sum(r0["errors"].values()) == 0
    assert r1["offered"] == 1 and r1["achieved"] == 2 and sum(r1["errors"].values()) == 1
    assert r1["errors"] == {"tool_error": 0, "overload": 1, "protocol_error": 0, "timeout": 0, "transport_error": 0}
    assert r2 == {
        "t": 2,
        "offered": 0,
        "achieved": 0,
        "errors": dict.fromkeys(OUTCOMES[1:], 0),
        "in_flight": 0.0,
        "p50_ms": None,
        "p99_ms": None,
    }
    assert r4["errors"]["transport_error"] == 1 and r4["achieved"] == 0
    assert r0["p50_ms"] == 100.0
    # In flight is time-weighted: 0.1 s + the first 0.1 s of the call sent at 0.9.
    assert r0["in_flight"] == pytest.approx(0.2)
    assert r1["in_flight"] == pytest.approx(0.2 + 0.01 + 0.01)
    # offered, achieved and errors add up to the calls
    assert sum(r["offered"] for r in rows) == 5
    assert sum(answered(r) for r in rows) == 5


def test_in_flight_obeys_littles_law_for_a_steady_closed_load() -> None:
    """8 callers, each back to back with 25 ms calls: 8 in flight every second, 320 calls/s."""
    rec = Recorder(t0=T0)
    step = rec.step("tsunami", 8, now=T0)
    for worker in range(8):
        t = T0 + worker * 0.003
        while t + 0.025 <= T0 + 3.5:
            step.record(call(t, 0.025))
            t += 0.025
    rows = rec.series.rows()
    for r in rows[1:-1]:
        assert r["in_flight"] == pytest.approx(8.0, abs=0.05)
        assert r["achieved"] == pytest.approx(320, abs=8)


def test_past_seconds_and_finished_steps_are_packed_and_still_take_late_answers() -> None:
    rng = random.Random(11)
    rec = Recorder(t0=T0)
    step = rec.step("soak", 4, now=T0)
    exact: dict[int, list[int]] = {}
    for i in range(10_000):
        start = T0 + i / 1000
        latency = rng.lognormvariate(math.log(0.005), 0.8)
        step.record(call(start, latency))
        end_second = int(start + latency - T0)
        exact.setdefault(end_second, []).append(int(latency * 1e6 + 0.5))
    packed = [s for s, sec in rec.series._seconds.items() if sec.hist._packed is not None]
    assert packed and max(packed) < max(exact) - 1  # the last seconds stay live
    rows = {r["t"]: r for r in rec.series.rows()}
    for second, values in exact.items():
        values.sort()
        p99 = values[max(int(0.99 * len(values) + 0.5), 1) - 1]
        assert rows[second]["p99_ms"] == pytest.approx(p99 / 1000, rel=0.01)  # 2 significant digits
        assert answered(rows[second]) == len(values)
    before = step.calls
    step.finish(T0 + 11)
    assert all(h._packed is not None and not h.counts for h in step._hists.values())
    step.record(call(T0 + 0.5, 0.1))  # a straggler for second 0, after the step was finished
    assert step.calls == before + 1 and step.histogram().count == before + 1
    assert answered(rec.series.rows()[0]) == len(exact[0]) + 1


def test_calls_outside_steps_show_only_in_the_series() -> None:
    rec = Recorder(t0=T0)
    rec.record(call(T0 + 0.5, 0.01))
    assert rec.series.rows()[0]["achieved"] == 1
    assert rec.totals()["calls"] == 0


def test_negative_seconds_are_floored() -> None:
    rec = Recorder(t0=T0)
    rec.record(call(T0 - 1.0, 0.5))
    rec.record(call(T0 - 0.25, 0.1))
    assert [r["t"] for r in rec.series.rows()] == [-1]


# -- the whole recorder, serialisation, merging --------------------------------------------------


def build(seed: int, share: int = 1, t0: float = T0, t0_wall: float = 1.7e9) -> Recorder:
    """A deterministic two-phase run; `share` scales the load as if one of several workers."""
    rng = random.Random(seed)
    rec = Recorder(t0=t0, t0_wall=t0_wall)
    for i, level in enumerate((4, 8)):
        step = rec.step("tsunami", level, now=t0 + i * 2)
        for _ in range(200 * share):
            start = t0 + i * 2 + rng.random() * 1.9
            outcome: Outcome = "ok" if rng.random() < 0.9 else "overload"
            step.record(call(start, rng.expovariate(100), outcome, detail="queue_timeout" if outcome != "ok" else None))
        step.finish(t0 + i * 2 + 2)
    step = rec.step("rate", 50.0, model="open", now=t0 + 4)
    for j in range(100 * share):
        start = t0 + 4 + j * 0.02 / share
        step.record(call(start, 0.004, kind="sleep", queued=rng.random() * 0.01))
    step.finish(t0 + 6)
    return rec


def test_to_dict_is_json_and_consistent() -> None:
    rec = build(1)
    d = rec.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["t0_wall"] == 1.7e9
    assert list(d["phases"]) == ["tsunami", "rate"]
    tsunami, rate = d["phases"]["tsunami"], d["phases"]["rate"]
    assert (tsunami["offset_s"], tsunami["duration_s"], rate["offset_s"], rate["duration_s"]) == (0.0, 4.0, 4.0, 2.0)
    steps = tsunami["steps"] + rate["steps"]
    assert [s["level"] for s in steps] == [4, 8, 50.0]
    assert [s["model"] for s in steps] == ["closed", "closed", "open"]
    totals = d["totals"]
    assert totals["calls"] == sum(s["calls"] for s in steps) == 500
    for o in OUTCOMES:
        assert totals["outcomes"][o] == sum(s["outcomes"][o] for s in steps)
    assert set(totals["kinds"]) == {"echo", "sleep"}
    assert sum(answered(r) for r in d["timeseries"]) == 500
    assert sum(r["offered"] for r in d["timeseries"]) == 500
    for s in steps:
        assert sum(s["outcomes"].values()) == s["calls"]
        lat = s["latency_ms"]
        assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert all(r["in_flight"] >= 0 for r in d["timeseries"])
    assert rec.steps[0].histogram().encode().startswith("HISTF")  # the standard HdrHistogram form, for other tools


def test_state_survives_json_and_pickle() -> None:
    rec = build(2)
    state = rec.to_state()
    from_json = Recorder.from_state(json.loads(json.dumps(state)))
    from_pickle = Recorder.from_state(pickle.loads(pickle.dumps(state)))
    whole_pickled = pickle.loads(pickle.dumps(rec))
    assert from_json.to_dict() == from_pickle.to_dict() == whole_pickled.to_dict() == rec.to_dict()


def test_merge_of_workers_equals_one_recorder_of_everything() -> None:
    """Two workers recording disjoint halves merge into the same numbers as one recorder of all calls."""
    rng = random.Random(9)
    calls = [
        call(T0 + rng.random() * 3, rng.expovariate(50), "ok" if rng.random() < 0.95 else "timeout")
        for _ in range(3000)
    ]
    whole = Recorder(t0=T0, t0_wall=1.7e9)
    parts = [Recorder(t0=T0 + 100, t0_wall=1.7e9) for _ in range(2)]  # another process: other monotonic origin
    w = whole.step("tsunami", 16, now=T0)
    p = [part.step("tsunami", 8, now=T0 + 100) for part in parts]
    for i, c in enumerate(calls):
        w.record(c)
        shifted = CallResult(c.kind, c.intended + 100, c.start + 100, c.end + 100, c.outcome, c.detail)
        p[i % 2].record(shifted)
    w.finish(T0 + 3.5)
    for s in p:
        s.finish(T0 + 103.5)
    p[0].set_client_cpu(40.0, False)
    p[1].set_client_cpu(93.0, True)
    merged = Recorder.merged(part.to_state() for part in parts)
    m, one = merged.to_dict(), whole.to_dict()
    assert m["timeseries"] == one["timeseries"]
    ms, os_ = m["phases"]["tsunami"]["steps"][0], one["phases"]["tsunami"]["steps"][0]
    assert ms["level"] == ms["concurrency"] == 16  # levels add: each worker ran half the callers
    assert ms["client_cpu_percent"] == 93.0 and ms["client_bound"] is True
    for key in ("calls", "outcomes", "latency_ms", "kinds", "details", "duration_s", "throughput", "achieved_rate"):
        assert ms[key] == os_[key], key
    assert m["totals"] == one["totals"]


def test_merge_aligns_by_wall_clock_and_appends_extra_steps() -> None:
    a = build(3)
    b = build(4, t0=T0 + 50, t0_wall=1.7e9 + 2)  # started two seconds later
    extra = b.step("soak", 2, now=T0 + 50 + 6)
    extra.record(call(T0 + 56.5, 0.01))
    a_rows = a.series.rows()
    a.merge(b)
    rows = a.series.rows()
    assert rows[0]["t"] == a_rows[0]["t"]
    assert sum(answered(r) for r in rows) == 1001
    b_first = min(r["t"] for r in b.series.rows())
    assert any(r["t"] == b_first + 2 for r in rows)
    assert [s.phase for s in a.steps] == ["tsunami", "tsunami", "rate", "soak"]
    soak = a.steps[3]
    assert soak.index == 3
    assert soak.started == pytest.approx(T0 + 8)
    assert a.steps[0].level == 8 and a.steps[2].offered_rate == 100.0


def test_merge_refuses_mismatched_steps() -> None:
    a = Recorder(t0=T0)
    a.step("tsunami", 1, now=T0)
    b = Recorder(t0=T0)
    b.step("rate", 1.0, model="open", now=T0)
    with pytest.raises(ValueError):
        a.merge(b)
    with pytest.raises(ValueError):
        Recorder.merged([])
    with pytest.raises(ValueError):
        Recorder.from_state({"version": 99})


# -- what report.json carries for other tools and about the sender ---------------------------------------


def test_report_histograms_decode_with_hdrh_to_the_same_percentiles() -> None:
    """report.json's `latency_hdr` (each step, and the whole run) is read by the HdrHistogram library itself."""
    rng = random.Random(11)
    rec = Recorder(t0=T0)
    for phase, n in (("tsunami", 4000), ("rate", 2500)):
        step = rec.step(phase, 8, now=T0)
        for us in lognormal_us(rng, n):
            step.record(call(T0 + 1, us / 1e6))
        step.finish(now=T0 + 3)
    out = rec.to_dict()
    pairs = [(s["latency_hdr"], s["calls"], s["latency_ms"]) for p in out["phases"].values() for s in p["steps"]]
    pairs.append((out["totals"]["latency_hdr"], out["totals"]["calls"], out["totals"]["latency_ms"]))
    for encoded, calls, lat in pairs:
        decoded = HdrHistogram.decode(encoded)
        assert decoded.get_total_count() == calls
        for key, p in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)):
            got_ms = decoded.get_value_at_percentile(p) / 1000
            assert got_ms == pytest.approx(lat[key], rel=1e-3, abs=1e-3), (key, got_ms, lat[key])
    assert rec.step("soak", 1, now=T0).to_dict()["latency_hdr"] is None  # no calls, nothing to encode


def test_sent_late_flags_an_open_step_and_merges_across_workers() -> None:
    rec, other = Recorder(t0=T0), Recorder(t0=T0)
    closed = rec.step("tsunami", 4, now=T0)
    assert closed.sent_late is None and not closed.sender_behind
    mine = rec.step("rate", 100.0, model="open", now=T0)
    theirs = other.step("tsunami", 4, now=T0)
    theirs_open = other.step("rate", 100.0, model="open", now=T0)
    for step in (mine, theirs_open):
        for i in range(100):
            step.record(call(T0 + i / 100, 0.001))
    mine.sent_late, theirs_open.sent_late = 5, 4  # 5% is within the allowance; more is behind
    assert not mine.sender_behind
    theirs.record(call(T0, 0.001))
    rec.merge(Recorder.from_state(json.loads(json.dumps(other.to_state()))))
    assert mine.sent_late == 9 and mine.calls == 200 and not mine.sender_behind
    mine.sent_late = 11
    assert mine.sender_behind
    d = mine.to_dict()
    assert d["sent_late"] == 11 and d["sender_behind"] is True
    assert rec.steps[0].to_dict()["sent_late"] is None and rec.steps[0].to_dict()["sender_behind"] is False
