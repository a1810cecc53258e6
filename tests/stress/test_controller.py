"""The escalation policy against simulated servers of known capacity (pure functions, fully deterministic)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from bemcp.stress.controller import EscalationPolicy, ExponentialBisect, StepJudge
from bemcp.stress.model import CallResult, StepOutcome, Thresholds
from bemcp.stress.recorder import Recorder

SLO_MS = 100.0
THRESHOLDS = Thresholds(slo_p99_ms=SLO_MS, error_budget=0.01)
Server = Callable[[float], StepOutcome]


def latency_server(capacity: float, service_ms: float = 20.0) -> Server:
    """Up to `capacity` every call is served at once; beyond it p99 jumps past the SLO (a queue builds)."""

    def step(level: float) -> StepOutcome:
        p99 = service_ms if level <= capacity else SLO_MS * (1.5 + level / capacity)
        return StepOutcome(level, calls=1000, error_rate=0.0, overload_rate=0.0, p99_ms=p99, throughput=level * 50)

    return step


def erroring_server(capacity: float) -> Server:
    """Beyond `capacity` calls time out, more the further past it."""

    def step(level: float) -> StepOutcome:
        errors = 0.0 if level <= capacity else min(1.0, 0.02 + (level - capacity) / capacity)
        return StepOutcome(level, calls=1000, error_rate=errors, overload_rate=0.0, p99_ms=10.0, throughput=level)

    return step


def shedding_server(capacity: float) -> Server:
    """Beyond `capacity` the server refuses cleanly (overload) and stays fast."""

    def step(level: float) -> StepOutcome:
        # (level - capacity) / level of the calls find every slot taken; at least 2% so a 1% budget sees it.
        refused = 0.0 if level <= capacity else max(0.02, (level - capacity) / level)
        return StepOutcome(level, calls=1000, error_rate=0.0, overload_rate=refused, p99_ms=5.0, throughput=capacity)

    return step


def open_model_server(capacity_rps: float) -> Server:
    """An open-model server: achieved = min(offered, capacity); latency stays in the SLO."""

    def step(rate: float) -> StepOutcome:
        return StepOutcome(
            rate,
            calls=int(rate * 5) + 1,
            error_rate=0.0,
            overload_rate=0.0,
            p99_ms=50.0,
            throughput=min(rate, capacity_rps),
        )

    return step


def drive(policy: ExponentialBisect, server: Server, limit: int = 200) -> list[float]:
    """Run the policy to the end against `server`; return the levels it ran."""
    levels: list[float] = []
    level = policy.next(None)
    while level is not None:
        assert len(levels) < limit, "the policy did not stop"
        assert level not in levels, f"level {level} ran twice"
        levels.append(level)
        level = policy.next(server(level))
    return levels


def max_steps_expected(start: float, capacity: float, max_level: float, resolution: float = 1.0) -> int:
    """Growth steps to pass the capacity, plus bisection steps to close the bracket, plus slack."""
    grow = math.ceil(math.log2(max(min(capacity, max_level) / start, 1.0))) + 2
    bracket = max(capacity, start)
    return grow + math.ceil(math.log2(max(bracket / resolution, 2.0))) + 2


def test_is_an_escalation_policy() -> None:
    policy: EscalationPolicy = ExponentialBisect(1)
    assert policy.result() is None


@pytest.mark.parametrize("capacity", [1, 2, 3, 7, 8, 9, 31, 64, 100, 127, 500, 1000, 2047, 4095])
@pytest.mark.parametrize("make_server", [latency_server, erroring_server, shedding_server])
def test_finds_the_capacity_exactly_with_unit_resolution(capacity: int, make_server: Callable[[float], Server]) -> None:
    policy = ExponentialBisect(1, max_level=4096, judge=StepJudge(THRESHOLDS))
    levels = drive(policy, make_server(capacity))
    assert policy.result() == capacity
    assert policy.stop_reason in ("converged", "unrefinable")
    assert len(levels) <= max_steps_expected(1, capacity, 4096)


def test_finds_random_capacities_from_random_starts_within_the_resolution() -> None:
    rng = random.Random(20240501)
    for _ in range(300):
        capacity = rng.randint(1, 5000)
        start = rng.randint(1, 300)
        resolution = rng.choice([1, 2, 5, 10, 50])
        policy = ExponentialBisect(start, max_level=8192, resolution=resolution, judge=StepJudge(THRESHOLDS))
        levels = drive(policy, latency_server(capacity))
        found = policy.result()
        if capacity < start:
            # Bad at the start: it searched downwards and still found it.
            assert levels[0] == start and levels[1] < start
        assert found is not None
        assert found <= capacity, (capacity, start, resolution, levels)
        assert capacity - found <= resolution, (capacity, start, resolution, levels)
        assert len(levels) <= max_steps_expected(start, capacity, 8192, resolution) + 2


def test_relative_resolution_stops_early_on_large_levels() -> None:
    policy = ExponentialBisect(1, max_level=100_000, relative_resolution=0.05, judge=StepJudge(THRESHOLDS))
    levels = drive(policy, latency_server(30_000))
    found = policy.result()
    assert found is not None and found <= 30_000 and 30_000 - found <= 0.05 * found + 1
    exact = ExponentialBisect(1, max_level=100_000, judge=StepJudge(THRESHOLDS))
    assert len(levels) < len(drive(exact, latency_server(30_000)))


def test_fractional_levels_for_the_open_model() -> None:
    judge = StepJudge(THRESHOLDS, min_achieved_ratio=0.95)
    policy = ExponentialBisect(10.0, max_level=10_000.0, resolution=5.0, integer=False, judge=judge)
    drive(policy, open_model_server(1234.5))
    found = policy.result()
    # Good while achieved >= 95% of offered: up to 1234.5 / 0.95 = 1299.5 calls/s.
    assert found is not None and 1299.5 - 5.0 <= found <= 1299.5


def test_never_bad_stops_at_max_level() -> None:
    policy = ExponentialBisect(3, max_level=1000, judge=StepJudge(THRESHOLDS))
    levels = drive(policy, latency_server(10**9))
    assert levels == [3, 6, 12, 24, 48, 96, 192, 384, 768, 1000]
    assert policy.result() == 1000 and policy.stop_reason == "max_level"


def test_bad_at_the_minimum_level_gives_no_result() -> None:
    policy = ExponentialBisect(16, max_level=1000, judge=StepJudge(THRESHOLDS))
    levels = drive(policy, erroring_server(0.5))
    assert levels == [16, 8, 4, 2, 1]
    assert policy.result() is None and policy.stop_reason == "bad_at_min"


def test_bad_at_the_start_searches_downwards() -> None:
    policy = ExponentialBisect(64, max_level=1000, judge=StepJudge(THRESHOLDS))
    levels = drive(policy, latency_server(11))
    assert levels[:4] == [64, 32, 16, 8]
    assert policy.result() == 11


def test_start_equal_to_max_level() -> None:
    good = ExponentialBisect(50, max_level=50, judge=StepJudge(THRESHOLDS))
    assert drive(good, latency_server(100)) == [50]
    assert good.result() == 50 and good.stop_reason == "max_level"
    bad = ExponentialBisect(50, max_level=50, judge=StepJudge(THRESHOLDS))
    drive(bad, latency_server(20))
    assert bad.result() == 20


def test_a_client_bound_step_ends_the_search() -> None:
    def server(level: float) -> StepOutcome:
        o = latency_server(10_000)(level)
        o.client_bound = level >= 64
        return o

    policy = ExponentialBisect(1, max_level=4096, judge=StepJudge(THRESHOLDS))
    levels = drive(policy, server)
    assert levels[-1] == 64
    assert policy.stop_reason == "client_bound" and policy.client_limited
    assert policy.result() == 64  # good, but only a lower bound on the server


def test_max_steps_caps_the_search() -> None:
    policy = ExponentialBisect(1, max_level=1_000_000, max_steps=5, judge=StepJudge(THRESHOLDS))
    assert len(drive(policy, latency_server(777_777))) == 5
    assert policy.stop_reason == "max_steps" and policy.result() == 16


def test_a_step_without_calls_is_bad() -> None:
    judge = StepJudge(THRESHOLDS)
    assert judge.reasons(StepOutcome(4, 0, 0.0, 0.0, 0.0, 0.0)) == ["no calls completed"]


def test_judge_reasons_and_overload_budget() -> None:
    o = StepOutcome(8, calls=100, error_rate=0.02, overload_rate=0.3, p99_ms=150.0, throughput=2.0)
    why = StepJudge(THRESHOLDS, min_achieved_ratio=0.9).reasons(o)
    assert len(why) == 4
    assert any("error rate" in w for w in why) and any("p99" in w for w in why)
    assert any("overload" in w for w in why) and any("achieved" in w for w in why)
    ignore_overload = StepJudge(THRESHOLDS, overload_budget=1.0)
    assert ignore_overload.good(StepOutcome(8, 100, 0.0, 0.9, 5.0, 1.0))
    assert not StepJudge(THRESHOLDS).good(StepOutcome(8, 100, 0.0, 0.9, 5.0, 1.0))


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError):
        ExponentialBisect(0)
    with pytest.raises(ValueError):
        ExponentialBisect(10, max_level=5)
    with pytest.raises(ValueError):
        ExponentialBisect(1, factor=1.0)
    policy = ExponentialBisect(1)
    with pytest.raises(ValueError):
        policy.next(latency_server(5)(1))  # an outcome before any level was handed out
    policy.next(None)
    with pytest.raises(ValueError):
        policy.next(None)


def test_after_stopping_next_keeps_answering_none() -> None:
    policy = ExponentialBisect(4, max_level=4, judge=StepJudge(THRESHOLDS))
    drive(policy, latency_server(100))
    assert policy.done
    assert policy.next(latency_server(100)(4)) is None
    assert policy.result() == 4


def test_non_integer_factor_never_repeats_a_level() -> None:
    policy = ExponentialBisect(1, factor=1.1, max_level=200, judge=StepJudge(THRESHOLDS))
    levels = drive(policy, latency_server(150))
    assert levels[:4] == [1, 2, 3, 4]  # 1.1x rounded up still grows by at least one
    assert policy.result() == 150


def test_finds_capacity_of_a_queueing_server_measured_through_the_recorder() -> None:
    """End to end through real step measurements: a closed-model server with C slots and 10 ms service.

    With L callers and C slots every call waits for L/C services, so latency is 10 ms * max(1, L/C); with an
    SLO of 25 ms the last sustainable level is floor(2.5 * C).
    """
    slots, service = 12, 0.010
    judge = StepJudge(Thresholds(slo_p99_ms=25.0, error_budget=0.01))
    policy = ExponentialBisect(1, max_level=1024, judge=judge)
    rec = Recorder(t0=0.0)
    clock = 0.0

    def run_step(level: float) -> StepOutcome:
        nonlocal clock
        step = rec.step("tsunami", level, now=clock)
        latency = service * max(1.0, level / slots)
        for caller in range(int(level)):
            t = clock + caller * latency / level
            while t + latency <= clock + 1.0:
                step.record(CallResult("sleep", t, t, t + latency, "ok"))
                t += latency
        clock += 1.0
        step.finish(clock)
        return step.outcome()

    level = policy.next(None)
    while level is not None:
        level = policy.next(run_step(level))
    assert policy.result() == math.floor(2.5 * slots)
    rows = rec.series.rows()
    assert len(rows) == len(rec.steps)
