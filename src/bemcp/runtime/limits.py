"""Concurrency-limit algorithms: how many calls may run at once, learned from call latency.

Every algorithm sits behind `LimitAlgorithm`, so admission control never
knows which one it drives. Algorithms are pure state machines over the
samples they are given (time is an argument, never read; randomness comes
from an injectable `random.Random`), which is what lets tests drive them
with a simulated clock.

The adaptive algorithms learn what healthy latency looks like from the calls
they see, so start them below capacity: a baseline learned while already
overloaded looks healthy, and only drops (or, for Vegas, probes) correct it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Final, Protocol

LIMIT_KINDS: Final = ("fixed", "adaptive", "vegas")


class LimitAlgorithm(Protocol):
    """A concurrency limit that may learn from the calls it admitted."""

    @property
    def limit(self) -> int:
        """How many calls may run at once right now; always >= 1."""
        ...

    def on_sample(self, now_ns: int, rtt_ns: int, in_flight: int, dropped: bool) -> None:
        """Learn from one finished call.

        `rtt_ns` is how long the call held its slot, `in_flight` how many calls
        were running when it was admitted (itself included) and `dropped`
        whether it ended in a way that signals overload (a timeout, say).
        """
        ...


class FixedLimit:
    """A limit that never changes: the ceiling is whatever the operator configured."""

    __slots__ = ("_limit",)

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._limit = limit

    @property
    def limit(self) -> int:
        return self._limit

    def on_sample(self, now_ns: int, rtt_ns: int, in_flight: int, dropped: bool) -> None:
        return None

    def __repr__(self) -> str:
        return f"FixedLimit({self._limit})"


class _Ema:
    """An exponential moving average that starts as a plain mean.

    The plain mean over the first `warmup` samples keeps a single outlier at
    start-up from dominating the average for hundreds of samples.
    """

    __slots__ = ("_count", "_factor", "_warmup", "value")

    def __init__(self, window: int, warmup: int) -> None:
        self._factor = 2.0 / (window + 1)
        self._warmup = warmup
        self._count = 0
        self.value = 0.0

    def add(self, sample: float) -> float:
        if self._count < self._warmup:
            self._count += 1
            self.value += (sample - self.value) / self._count
        else:
            self.value += (sample - self.value) * self._factor
        return self.value


def _check_bounds(initial: int, min_limit: int, max_limit: int) -> None:
    if not 1 <= min_limit <= initial <= max_limit:
        raise ValueError(f"need 1 <= min_limit <= initial <= max_limit, got {min_limit}, {initial}, {max_limit}")


class Gradient2Limit:
    """Latency-gradient limit in the style of Netflix's Gradient2.

    Meant to be fed one sample per window (see `WindowedLimit`). Each sample
    feeds a long-term RTT (an exponential moving average over `long_window`
    samples, standing in for "latency when healthy") and a short-term RTT
    (the same over `short_window` samples; with the default 1 it is the
    latest window's average, "latency now"). Then::

        gradient  = clamp(long / short, 0.5, 1.0)
        new_limit = limit * gradient + queue_size(limit)
        limit     = limit * (1 - smoothing) + new_limit * smoothing

    clamped to [min_limit, max_limit]. While latency holds, the gradient is 1
    and the limit grows by `smoothing * queue_size(limit)` per sample; once
    calls queue inside the server, short RTT rises above long RTT and the
    limit shrinks. On a server whose latency grows in proportion to the load
    beyond C slots, the limit settles near ``C + queue_size(C)``.

    The long-term RTT adapts, which is what lets the limit survive a real
    change in baseline latency, but it also means that under overload that
    never ends it follows the queued latency and the limit creeps up, by
    roughly ``sqrt(limit) / long_window`` per sample. Drops and `max_limit`
    bound that.

    Also:

    - When the short RTT falls below half the long RTT (load went away after
      a long spike inflated the baseline), the long RTT decays by 10% per
      sample instead of waiting out its window.
    - The limit grows only while at least half of it is in use: an idle
      server has no evidence that more concurrency would be fine.
    - Unlike Netflix's version, a dropped call (a timeout) applies the floor
      gradient 0.5 and leaves both averages alone: its RTT says how long we
      waited, not how long the call took.

    Defaults: initial_limit=20, min_limit=1, max_limit=1000, smoothing=0.2,
    long_window=600, short_window=1, warmup=10 (the long average is a plain
    mean over its first 10 samples), queue_size=math.sqrt.
    """

    __slots__ = ("_estimate", "_limit", "_long", "_max", "_min", "_queue_size", "_short", "_smoothing")

    def __init__(
        self,
        initial_limit: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = 1000,
        smoothing: float = 0.2,
        long_window: int = 600,
        short_window: int = 1,
        warmup: int = 10,
        queue_size: Callable[[float], float] = math.sqrt,
    ) -> None:
        _check_bounds(initial_limit, min_limit, max_limit)
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self._estimate = float(initial_limit)
        self._limit = initial_limit
        self._min = min_limit
        self._max = max_limit
        self._smoothing = smoothing
        self._queue_size = queue_size
        self._long = _Ema(long_window, warmup)
        self._short = _Ema(short_window, min(warmup, short_window))

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def long_rtt_ns(self) -> float:
        return self._long.value

    @property
    def short_rtt_ns(self) -> float:
        return self._short.value

    def on_sample(self, now_ns: int, rtt_ns: int, in_flight: int, dropped: bool) -> None:
        estimate = self._estimate
        if dropped:
            gradient = 0.5
        else:
            if rtt_ns <= 0:
                return
            short = self._short.add(rtt_ns)
            long = self._long.add(rtt_ns)
            if long > 2.0 * short:
                self._long.value = long * 0.9
            if in_flight < estimate / 2:
                return
            gradient = max(0.5, min(1.0, long / short))
        target = estimate * gradient + self._queue_size(estimate)
        estimate += (target - estimate) * self._smoothing
        estimate = max(self._min, min(self._max, estimate))
        self._estimate = estimate
        self._limit = int(estimate)

    def __repr__(self) -> str:
        return f"Gradient2Limit(limit={self._limit}, long_rtt_ms={self._long.value / 1e6:.3f})"


def _log10_floor(limit: float) -> int:
    # Integer steps keep alpha and beta stable while the limit wobbles around a power of ten.
    return max(1, int(math.log10(max(limit, 1.0))))


class VegasLimit:
    """Queue-estimating limit in the style of TCP Vegas (and Netflix's VegasLimit).

    `rtt_noload` is the smallest RTT seen: the latency of a call that waited
    for nothing. An RTT above it means calls queue inside the server, about
    ``queue = limit * (1 - rtt_noload / rtt)`` of them. With
    ``L = max(1, floor(log10(limit)))``:

    - queue <= L (threshold): grow fast, limit += beta = 6 * L;
    - queue < alpha = 3 * L: grow, limit += L;
    - queue > beta: shrink, by L or half the excess queue (queue - beta),
      whichever is more;
    - otherwise hold.

    Shrinking by half the excess, where Vegas subtracts only L, brings the
    limit down in a few windows when capacity falls sharply, rather than
    after hundreds.

    A dropped call multiplies the limit by `backoff_ratio` whatever its RTT:
    fed one sample per window, a single drop may stand for many timeouts, and
    subtracting L would be too gentle. The limit grows only while at least
    half of it is in use.

    `rtt_noload` can never rise by itself, yet the server's true baseline
    does (a slower dependency, say), so every `probe_every` samples (times a
    random jitter in [0.5, 1) so servers behind one balancer do not probe in
    step) the limit probes: it forgets `rtt_noload`, drops to `probe_ratio`
    of itself for `probe_samples` samples while relearning the minimum, then
    returns to where it was. Resetting `rtt_noload` to the current RTT
    instead, as Netflix does, measures an already-queued call under
    sustained overload and lets the limit ratchet up by about alpha per
    probe; lowering the load first measures a call that did not queue, as
    long as `probe_ratio * limit` is below capacity (otherwise it takes
    another probe or two).

    Defaults: initial_limit=20, min_limit=1, max_limit=1000, smoothing=1.0,
    backoff_ratio=0.9, probe_every=100, probe_ratio=0.5, probe_samples=2;
    `rng` (default: an unseeded `random.Random`) draws the probe jitter.
    """

    __slots__ = (
        "_backoff",
        "_estimate",
        "_limit",
        "_max",
        "_min",
        "_probe_at",
        "_probe_count",
        "_probe_every",
        "_probe_left",
        "_probe_ratio",
        "_probe_samples",
        "_resume",
        "_rng",
        "_rtt_noload",
        "_smoothing",
    )

    def __init__(
        self,
        initial_limit: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = 1000,
        smoothing: float = 1.0,
        backoff_ratio: float = 0.9,
        probe_every: int = 100,
        probe_ratio: float = 0.5,
        probe_samples: int = 2,
        rng: random.Random | None = None,
    ) -> None:
        _check_bounds(initial_limit, min_limit, max_limit)
        for name, value in (("smoothing", smoothing), ("backoff_ratio", backoff_ratio), ("probe_ratio", probe_ratio)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if probe_every < 1 or probe_samples < 1:
            raise ValueError("probe_every and probe_samples must be >= 1")
        self._estimate = float(initial_limit)
        self._limit = initial_limit
        self._min = min_limit
        self._max = max_limit
        self._smoothing = smoothing
        self._backoff = backoff_ratio
        self._probe_every = probe_every
        self._probe_ratio = probe_ratio
        self._probe_samples = probe_samples
        self._rng = rng if rng is not None else random.Random()
        self._rtt_noload = 0
        self._probe_count = 0
        self._probe_left = 0  # samples left in the current probe
        self._resume = 0.0  # the estimate to return to after the probe
        self._probe_at = self._next_probe()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def rtt_noload_ns(self) -> int:
        return self._rtt_noload

    @property
    def probing(self) -> bool:
        return self._probe_left > 0

    def _next_probe(self) -> int:
        return max(1, int(self._rng.uniform(0.5, 1.0) * self._probe_every))

    def _set(self, estimate: float) -> None:
        estimate = max(self._min, min(self._max, estimate))
        self._estimate = estimate
        self._limit = int(estimate)

    def on_sample(self, now_ns: int, rtt_ns: int, in_flight: int, dropped: bool) -> None:
        if self._probe_left:
            self._probe_left -= 1
            if dropped:
                self._resume *= self._backoff  # overload during a probe still counts
            elif rtt_ns > 0 and (self._rtt_noload == 0 or rtt_ns < self._rtt_noload):
                self._rtt_noload = rtt_ns
            if not self._probe_left:
                self._set(self._resume)
            return
        if dropped:
            self._set(self._estimate * self._backoff)
            return
        if rtt_ns <= 0:
            return
        self._probe_count += 1
        if self._probe_count >= self._probe_at:
            self._probe_count = 0
            self._probe_at = self._next_probe()
            self._probe_left = self._probe_samples
            self._resume = self._estimate
            self._rtt_noload = 0
            self._set(self._estimate * self._probe_ratio)
            return
        if self._rtt_noload == 0 or rtt_ns < self._rtt_noload:
            self._rtt_noload = rtt_ns
            return
        estimate = self._estimate
        if in_flight * 2 < estimate:
            return
        log = _log10_floor(estimate)
        queue = math.ceil(estimate * (1.0 - self._rtt_noload / rtt_ns))
        if queue <= log:
            target = estimate + 6 * log
        elif queue < 3 * log:
            target = estimate + log
        elif queue > 6 * log:
            target = estimate - max(log, (queue - 6 * log) / 2)
        else:
            return
        self._set(estimate + (target - estimate) * self._smoothing)

    def __repr__(self) -> str:
        return f"VegasLimit(limit={self._limit}, rtt_noload_ms={self._rtt_noload / 1e6:.3f})"


class WindowedLimit:
    """Feeds its delegate one aggregate sample per window instead of one per call.

    A limit change shows in latency only about one RTT later, after every call
    admitted under the old limit has finished; an algorithm updated per call
    reacts to the same stale evidence `limit` times over and swings wildly.
    A window closes once it holds `min_samples` calls and spans
    `window_rtts` times its own average RTT, and then passes on the average
    RTT of its successful calls, the largest `in_flight` seen and whether any
    call was dropped (a dropped call's RTT, a timeout, is left out of the
    average: it says how long we waited, not how long the call took).

    Defaults: min_samples=10, window_rtts=2.0.
    """

    __slots__ = (
        "_all_sum",
        "_count",
        "_delegate",
        "_dropped",
        "_max_in_flight",
        "_min_samples",
        "_ok",
        "_ok_sum",
        "_start",
        "_window_rtts",
    )

    def __init__(self, delegate: LimitAlgorithm, *, min_samples: int = 10, window_rtts: float = 2.0) -> None:
        if min_samples < 1 or window_rtts < 0:
            raise ValueError("min_samples must be >= 1 and window_rtts >= 0")
        self._delegate = delegate
        self._min_samples = min_samples
        self._window_rtts = window_rtts
        self._start: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._ok = 0
        self._ok_sum = 0
        self._all_sum = 0
        self._max_in_flight = 0
        self._dropped = False

    @property
    def delegate(self) -> LimitAlgorithm:
        return self._delegate

    @property
    def limit(self) -> int:
        return self._delegate.limit

    def on_sample(self, now_ns: int, rtt_ns: int, in_flight: int, dropped: bool) -> None:
        if self._start is None:
            self._start = now_ns - rtt_ns
        self._count += 1
        self._all_sum += rtt_ns
        if in_flight > self._max_in_flight:
            self._max_in_flight = in_flight
        if dropped:
            self._dropped = True
        else:
            self._ok += 1
            self._ok_sum += rtt_ns
        if self._count < self._min_samples:
            return
        # The span counts dropped calls too: a burst of timeouts must not close a
        # window every few calls and cut the limit once per window.
        if now_ns - self._start < self._window_rtts * (self._all_sum / self._count):
            return
        rtt = self._ok_sum // self._ok if self._ok else self._all_sum // self._count
        self._delegate.on_sample(now_ns, rtt, self._max_in_flight, self._dropped)
        self._start = now_ns
        self._reset()

    def __repr__(self) -> str:
        return f"WindowedLimit({self._delegate!r})"


def make_limit(kind: str, initial: int, max_limit: int) -> LimitAlgorithm:
    """Build the limit named by configuration.

    "fixed" pins the limit at `initial` (`max_limit` only validates it);
    "adaptive" is `Gradient2Limit` and "vegas" is `VegasLimit`, both starting
    at `initial`, bounded to [1, max_limit], with their other defaults.
    """
    if not 1 <= initial <= max_limit:
        raise ValueError(f"need 1 <= initial <= max_limit, got {initial}, {max_limit}")
    if kind == "fixed":
        return FixedLimit(initial)
    if kind == "adaptive":
        return WindowedLimit(Gradient2Limit(initial, max_limit=max_limit))
    if kind == "vegas":
        return WindowedLimit(VegasLimit(initial, max_limit=max_limit))
    raise ValueError(f"unknown limit kind {kind!r}; expected one of {', '.join(LIMIT_KINDS)}")
