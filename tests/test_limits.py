"""Limit algorithms driven by a simulated clock against simulated servers of known capacity."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field

import pytest

from bemcp.runtime.limits import (
    FixedLimit,
    Gradient2Limit,
    LimitAlgorithm,
    VegasLimit,
    WindowedLimit,
    make_limit,
)

MS = 1_000_000


@dataclass
class Simulation:
    """A server with `capacity` workers under demand that always fills the limit.

    `mode="latency"`: beyond `capacity` calls share the workers, so every
    call admitted at in-flight n > capacity takes n / capacity times longer.
    `mode="drops"`: latency never changes, but a call admitted beyond
    `capacity` fails (a downstream that rejects overload): only drops tell.
    Latency carries a uniform jitter of up to `jitter` times the base.
    Everything runs on a simulated clock; the seed makes it repeatable.
    """

    algorithm: LimitAlgorithm
    capacity: int
    mode: str = "latency"
    base_ns: int = 10 * MS
    jitter: float = 0.2
    seed: int = 1
    now: int = 0
    in_flight: int = 0
    _rng: random.Random = field(init=False)
    _calls: list[tuple[int, int, int, int, bool]] = field(init=False, default_factory=list)
    _seq: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _fill(self) -> None:
        while self.in_flight < self.algorithm.limit:
            self.in_flight += 1
            self._seq += 1
            slowdown = max(1.0, self.in_flight / self.capacity) if self.mode == "latency" else 1.0
            dropped = self.mode == "drops" and self.in_flight > self.capacity
            rtt = int(self.base_ns * slowdown * (1.0 + self.jitter * self._rng.random()))
            heapq.heappush(self._calls, (self.now + rtt, self._seq, self.now, self.in_flight, dropped))

    def run(self, samples: int) -> list[int]:
        """Complete `samples` calls; the limit after each one."""
        history = []
        self._fill()
        for _ in range(samples):
            end, _, start, in_flight, dropped = heapq.heappop(self._calls)
            self.now = end
            self.in_flight -= 1
            self.algorithm.on_sample(end, end - start, in_flight, dropped)
            history.append(self.algorithm.limit)
            self._fill()
        return history


def tail(history: list[int], fraction: float = 0.25) -> list[int]:
    return history[-int(len(history) * fraction) :]


def percentile(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def gradient2(initial: int, max_limit: int = 2000) -> WindowedLimit:
    return WindowedLimit(Gradient2Limit(initial, max_limit=max_limit))


def vegas(initial: int, max_limit: int = 2000, seed: int = 7) -> WindowedLimit:
    return WindowedLimit(VegasLimit(initial, max_limit=max_limit, rng=random.Random(seed)))


def vegas_band(capacity: int) -> tuple[float, float]:
    """Where Vegas should settle on a "latency" server of `capacity` workers.

    Above capacity the queue estimate is exactly limit - capacity. Vegas
    grows by beta = 6 * log while that is <= log (log = floor(log10(limit))),
    so it can reach capacity + log + beta, and shrinks once it exceeds beta.
    Below capacity the RTT is flat, yet window-to-window jitter (about 1%
    here) reads as a phantom queue of about 1% of the limit that can hold the
    limit short of capacity; 10% below is far more than that noise explains.
    """
    log = max(1, int(math.log10(capacity)))
    return 0.9 * capacity, capacity + log + 6 * log


def assert_vegas_settled(settled: list[int], capacity: int) -> None:
    low, high = vegas_band(capacity)
    # Periodic probes halve the limit for a couple of windows, and just after
    # one the relearned baseline can be a little off, letting the limit
    # overshoot by one growth step until the next window corrects it. Both
    # are brief, so the band holds for 90% of the calls, the median and,
    # give or take one step (beta), the maximum.
    assert percentile(settled, 0.05) >= low
    assert percentile(settled, 0.9) <= high
    assert low <= percentile(settled, 0.5) <= high
    assert max(settled) <= high + 6 * max(1, int(math.log10(capacity)))


# --- FixedLimit and the factory ---------------------------------------------------------------------------


def test_fixed_limit_never_changes() -> None:
    limit = FixedLimit(7)
    history = Simulation(limit, capacity=3).run(2000)
    for dropped in (True, False):
        limit.on_sample(0, 10**12, 10_000, dropped)
    assert set(history) == {7}
    assert limit.limit == 7


def test_fixed_limit_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FixedLimit(0)


def test_make_limit_builds_each_kind() -> None:
    fixed = make_limit("fixed", 50, 100)
    assert isinstance(fixed, FixedLimit) and fixed.limit == 50
    adaptive = make_limit("adaptive", 20, 100)
    assert isinstance(adaptive, WindowedLimit) and isinstance(adaptive.delegate, Gradient2Limit)
    assert adaptive.limit == 20
    vegas_limit = make_limit("vegas", 20, 100)
    assert isinstance(vegas_limit, WindowedLimit) and isinstance(vegas_limit.delegate, VegasLimit)
    assert vegas_limit.limit == 20


@pytest.mark.parametrize(("kind", "initial", "max_limit"), [("bogus", 10, 100), ("fixed", 0, 10), ("adaptive", 20, 10)])
def test_make_limit_rejects_bad_arguments(kind: str, initial: int, max_limit: int) -> None:
    with pytest.raises(ValueError):
        make_limit(kind, initial, max_limit)


# --- Gradient2 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("capacity", "initial", "samples"), [(25, 10, 8_000), (150, 10, 60_000)])
def test_gradient2_converges_near_capacity(capacity: int, initial: int, samples: int) -> None:
    history = Simulation(gradient2(initial), capacity).run(samples)
    settled = tail(history)
    # Equilibrium is where the gradient capacity / limit cancels the queue
    # allowance: limit = capacity + sqrt(limit), about capacity + sqrt(capacity).
    # The long-term RTT then slowly follows the queued latency (the drift the
    # docstring describes), so allow three square roots over this horizon.
    assert min(settled) >= capacity
    assert max(settled) <= capacity + 3 * math.sqrt(capacity)


def test_gradient2_follows_capacity_down() -> None:
    sim = Simulation(gradient2(10), capacity=200)
    sim.run(60_000)
    sim.capacity = 50
    settled = tail(sim.run(20_000))
    assert min(settled) >= 50 and max(settled) <= 50 + 3 * math.sqrt(50)


def test_gradient2_finds_capacity_from_drops_alone() -> None:
    history = Simulation(gradient2(10), capacity=100, mode="drops").run(40_000)
    settled = tail(history)
    # A sawtooth: grow until calls beyond capacity fail, back off by ~10%
    # per window that saw a drop. It overshoots by a window's growth
    # (0.2 * sqrt(limit) ~ 2), two if a drop-free window straddles a backoff,
    # and falls back no further than a few backoffs.
    assert max(settled) <= 100 + 5
    assert percentile(settled, 0.05) >= 70
    assert 80 <= percentile(settled, 0.5) <= 100


def test_gradient2_backs_off_on_drops_down_to_min() -> None:
    limit = Gradient2Limit(100, min_limit=5, max_limit=200)
    seen = [limit.limit]
    for i in range(200):
        limit.on_sample(i * MS, 10 * MS, 100, True)
        seen.append(limit.limit)
    assert seen[1] < seen[0]
    assert all(b <= a for a, b in itertools.pairwise(seen))
    assert seen[-1] == 5


def test_gradient2_respects_max_limit() -> None:
    history = Simulation(gradient2(10, max_limit=40), capacity=500).run(20_000)
    assert max(history) == 40


def test_gradient2_does_not_grow_while_app_limited() -> None:
    limit = Gradient2Limit(100)
    for i in range(1000):
        limit.on_sample(i * MS, 10 * MS, 10, False)
    assert limit.limit == 100


def test_gradient2_long_rtt_recovers_quickly_after_a_spike() -> None:
    limit = Gradient2Limit(50, min_limit=1, max_limit=1000)
    for i in range(2000):
        limit.on_sample(i, 10 * MS, 50, False)
    for i in range(2000):
        limit.on_sample(i, 200 * MS, 50, False)  # a long overload inflates the baseline
    assert limit.long_rtt_ns > 100 * MS
    low = limit.limit
    for i in range(40):
        limit.on_sample(i, 10 * MS, limit.limit, False)
    # A plain 600-sample average would still be ~190 ms after 40 samples.
    assert limit.long_rtt_ns < 20 * MS
    assert limit.limit > low


# --- Vegas ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("capacity", "initial", "samples"), [(25, 10, 10_000), (150, 10, 60_000)])
def test_vegas_converges_near_capacity(capacity: int, initial: int, samples: int) -> None:
    history = Simulation(vegas(initial), capacity).run(samples)
    assert_vegas_settled(tail(history), capacity)


def test_vegas_follows_capacity_down() -> None:
    sim = Simulation(vegas(10), capacity=200)
    sim.run(60_000)
    sim.capacity = 50
    assert_vegas_settled(tail(sim.run(20_000)), 50)


def test_vegas_finds_capacity_from_drops_alone() -> None:
    history = Simulation(vegas(10), capacity=100, mode="drops").run(40_000)
    settled = tail(history)
    # Flat latency means "no queue": grow by beta (12) per window until drops
    # bite, then shrink by 10% per window that saw one. The overshoot is a
    # growth step, two if a drop-free window straddles a backoff; probes dip
    # below the sawtooth now and then.
    assert max(settled) <= 100 + 2 * 12
    assert percentile(settled, 0.1) >= 70
    assert 80 <= percentile(settled, 0.5) <= 100 + 12


def test_vegas_backs_off_on_drops_down_to_min() -> None:
    limit = VegasLimit(100, min_limit=5, rng=random.Random(1))
    limit.on_sample(0, 10 * MS, 100, False)
    seen = [limit.limit]
    for i in range(100):
        limit.on_sample(i * MS, 10 * MS, 100, True)
        seen.append(limit.limit)
    assert seen[1] == 90
    assert all(b <= a for a, b in itertools.pairwise(seen))
    assert seen[-1] == 5


def test_vegas_respects_max_limit() -> None:
    history = Simulation(vegas(10, max_limit=40), capacity=500).run(20_000)
    assert max(history) == 40


def test_vegas_probe_relearns_a_slower_baseline() -> None:
    limit = VegasLimit(50, max_limit=1000, probe_every=20, rng=random.Random(3))
    for i in range(10):
        limit.on_sample(i, 10 * MS, limit.limit, False)
    assert limit.rtt_noload_ns == 10 * MS
    # The server becomes twice as slow for good, at any load. Without probing
    # Vegas would read the extra 10 ms as a queue of half the limit forever.
    probed = False
    for i in range(200):
        limit.on_sample(i, 20 * MS, limit.limit, False)
        probed = probed or limit.probing
    assert probed
    assert limit.rtt_noload_ns == 20 * MS
    assert limit.limit > 50


def test_vegas_probe_restores_the_limit() -> None:
    limit = VegasLimit(100, min_limit=1, probe_every=10, probe_samples=2, rng=random.Random(5))
    limits = []
    for i in range(10):
        limit.on_sample(i, 10 * MS, 20, False)  # app-limited: the limit holds still
        limits.append((limit.limit, limit.probing))
    assert (50, True) in limits
    assert limits[-1] == (100, False)


# --- WindowedLimit ----------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.samples: list[tuple[int, int, int, bool]] = []

    @property
    def limit(self) -> int:
        return 10

    def on_sample(self, now_ns: int, rtt_ns: int, in_flight: int, dropped: bool) -> None:
        self.samples.append((now_ns, rtt_ns, in_flight, dropped))


def test_windowed_limit_aggregates_a_window() -> None:
    recorder = Recorder()
    windowed = WindowedLimit(recorder, min_samples=4, window_rtts=2.0)
    # The first call was admitted at t=0; the window needs 4 calls and 2 average RTTs.
    windowed.on_sample(10 * MS, 10 * MS, 3, False)
    windowed.on_sample(11 * MS, 10 * MS, 7, False)
    windowed.on_sample(12 * MS, 30 * MS, 4, True)  # a timeout: flags, but stays out of the average
    windowed.on_sample(13 * MS, 10 * MS, 5, False)
    assert recorder.samples == []  # 4 calls, but 13 ms < 2 * 15 ms average
    windowed.on_sample(40 * MS, 10 * MS, 2, False)
    assert recorder.samples == [(40 * MS, 10 * MS, 7, True)]
    assert windowed.limit == 10


def test_windowed_limit_starts_a_fresh_window() -> None:
    recorder = Recorder()
    windowed = WindowedLimit(recorder, min_samples=2, window_rtts=1.0)
    for t in (10, 20, 30, 40):
        windowed.on_sample(t * MS, 10 * MS, 1, False)
    assert [s[0] for s in recorder.samples] == [20 * MS, 40 * MS]
    assert all(not s[3] for s in recorder.samples)
