"""The soak's leak verdict, from the target's RSS over the soak: `leak_verdict(points)`.

A leak is memory that grows with the work done and is never given back, so under a steady load RSS keeps
growing at a steady rate. What else makes RSS move must not read as one: a warm-up (caches, connection buffers,
allocator arenas reaching the load's high-water mark) grows and then levels off; a single large allocation is
one step; noise is noise. So the verdict asks whether RSS grew all the way through, and by more than its noise:

- the soak's samples are cut into four quarters of equal time, each summed up by its median (robust to a spike);
- the noise (its standard deviation) is estimated from the spread of successive differences (their median
  absolute deviation: a steady trend and a few steps do not inflate it), and from it the uncertainty `se` of a
  difference of two quarter medians;
- `leak`: RSS grew from every quarter to the next, each time by at least a quarter of the leak rate θ and by
  2 se, and grew at θ or more both over the whole soak and over its second half;
- `possible_leak`: not that, but the second half grew at θ/2 or more even after taking 2 se off (a late step,
  or growth that is real but not steady);
- `no_leak`: the second half grew at less than θ even with 2 se added (it levelled off, shrank, or grew slowly);
- `inconclusive`: RSS too noisy for either claim, fewer than 12 samples, a quarter with fewer than 2, or
  under 4 s of samples.

θ = max(1 MiB/min, 1% of the median RSS per minute): growth slower than that during a soak of a minute or less
has not shown a leak that matters, and a real one (a few KiB kept per call at thousands of calls/s) grows by
megabytes per second. No minimum duration beyond the samples is needed: the quick profile's 8 s soak, sampled
every 0.5 s, has 16.

Caveat: RSS is what the operating system sees. Memory freed earlier in the run and kept by the allocator is reused
before RSS grows again, so a leak smaller than what an earlier phase freed can hide in a full run; a soak run on
its own (`--phases soak`) measures it cleanly.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

MiB: Final = 1024 * 1024
PAGE: Final = 4096
MIN_SAMPLES: Final = 12
MIN_PER_QUARTER: Final = 2
MIN_SPAN_S: Final = 4.0
FLOOR_BYTES_PER_S: Final = MiB / 60  # 1 MiB/min
RELATIVE_PER_S: Final = 0.01 / 60  # 1% of RSS per minute

Verdict = Literal["no_leak", "possible_leak", "leak", "inconclusive"]


@dataclass(frozen=True, slots=True)
class LeakAnalysis:
    verdict: Verdict
    reason: str  # one sentence: why this verdict
    samples: int
    slope: float | None = None  # least-squares RSS slope over the soak, bytes/s
    threshold: float | None = None  # θ, bytes/s
    quarter_medians: list[int] = field(default_factory=list)  # bytes
    late_rate: float | None = None  # growth over the second half, bytes/s


def threshold(rss: float) -> float:
    """θ, the growth rate (bytes/s) that counts as a leak for a process of `rss` bytes."""
    return max(FLOOR_BYTES_PER_S, RELATIVE_PER_S * rss)


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mean_t) * (r - mean_r) for t, r in points) / var


def noise(points: Sequence[tuple[float, int]]) -> float:
    """The standard deviation of the RSS samples' noise, bytes, from successive differences, robustly (at least
    one 4 KiB page)."""
    diffs = [b[1] - a[1] for a, b in itertools.pairwise(points)]
    if len(diffs) < 2:
        return float(PAGE)
    centre = statistics.median(diffs)
    mad = statistics.median(abs(d - centre) for d in diffs)
    return max(float(PAGE), 1.4826 * mad / math.sqrt(2))  # a difference carries the noise of two samples


def leak_verdict(points: Sequence[tuple[float, int]]) -> LeakAnalysis:
    """The verdict from (t seconds, RSS bytes) samples of the soak, in any order."""
    pts = sorted(points)
    n = len(pts)
    slope = least_squares_slope(pts)
    if n < MIN_SAMPLES:
        return LeakAnalysis("inconclusive", f"{n} RSS samples, fewer than {MIN_SAMPLES}", n, slope)
    t0, span = pts[0][0], pts[-1][0] - pts[0][0]
    if span < MIN_SPAN_S:
        return LeakAnalysis("inconclusive", f"RSS samples over {span:.1f} s, under {MIN_SPAN_S:g} s", n, slope)
    quarters: list[list[int]] = [[], [], [], []]
    for t, rss in pts:
        quarters[min(3, int((t - t0) / span * 4))].append(rss)
    if min(len(q) for q in quarters) < MIN_PER_QUARTER:
        return LeakAnalysis("inconclusive", "a quarter of the soak has fewer than 2 RSS samples", n, slope)
    medians = [int(statistics.median(q)) for q in quarters]
    theta = threshold(statistics.median(r for _, r in pts))
    quarter = span / 4  # between the centres of neighbouring quarters
    # A median of k samples has a standard error of about 1.25 sd / √k; a difference of two, √2 times that.
    se = 1.25 * noise(pts) * math.sqrt(2 / min(len(q) for q in quarters))
    rises = [b - a for a, b in itertools.pairwise(medians)]
    overall = (medians[3] - medians[0]) / (3 * quarter)
    late = (medians[3] - medians[1]) / (2 * quarter)
    late_se = se / (2 * quarter)

    def analysis(verdict: Verdict, reason: str) -> LeakAnalysis:
        return LeakAnalysis(verdict, reason, n, slope, theta, medians, late)

    rate = (
        f"{late * 60 / MiB:.2f} ± {2 * late_se * 60 / MiB:.2f} MiB/min over the second half, "
        f"against θ = {theta * 60 / MiB:.2f} MiB/min"
    )
    if min(rises) >= max(theta * quarter / 4, 2 * se) and overall >= theta and late >= theta:
        return analysis("leak", f"RSS grew in every quarter of the soak, {rate}")
    if late - 2 * late_se >= theta / 2:
        return analysis("possible_leak", f"RSS grew, though not steadily through the soak: {rate}")
    if late + 2 * late_se < theta:
        return analysis("no_leak", f"RSS levelled off, shrank or grew slowly: {rate}")
    return analysis("inconclusive", f"RSS too noisy to tell: {rate}")
