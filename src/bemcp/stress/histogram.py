"""A latency histogram with HdrHistogram's bucketing, stored sparsely so it is cheap to record into and to keep many of.

The `hdrhistogram` package is a faithful HdrHistogram, but it is pure Python:
`record_value` costs about 2 µs and every histogram holds a dense counts array
of ~23,500 slots (188 KB) for 1 µs .. 1 h at 3 significant digits. The stress
tester keeps one histogram per step and operation kind plus one per second of
the run, and records from the load generator's hot path, so it needs both to
be cheaper. This class uses exactly HdrHistogram's bucket geometry (the same
counts index for every value, so the same percentiles and the same ≤ 0.1%
relative error at 3 significant digits) but keeps only the buckets that were
hit, in a dict, and computes the index with `int.bit_length`. `to_hdr()` turns
it into a real `hdrh.histogram.HdrHistogram` (and `encode()` into the standard
compressed V2 "HISTF..." form) for interoperability with HdrHistogram tools.

A histogram can also be `pack()`ed: its buckets move into two compact
arrays (12 bytes a bucket instead of ~100 in a dict); later records go to the
dict again and reads see both, so packing never gets in the hot path's way.
The recorder packs a second of its time series once it is over, and a step
once it is finished.

Values are integers in the histogram's unit (the stress tester uses
microseconds); values outside [0, highest] are clamped into it, so an absurd
latency is still counted instead of silently dropped.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from typing import Any, Final

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

LOWEST: Final = 1
HIGHEST_US: Final = 3_600_000_000  # one hour in microseconds
SIGNIFICANT_DIGITS: Final = 3

# Percentiles every summary exposes, as (key, percentile).
PERCENTILES: Final = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


class Geometry:
    """HdrHistogram's bucket layout for (lowest, highest, significant digits), as in its Java/C/Python versions."""

    __slots__ = ("half_count", "half_magnitude", "highest", "lowest", "mask", "shift", "significant", "unit_magnitude")

    def __init__(self, lowest: int = LOWEST, highest: int = HIGHEST_US, significant: int = SIGNIFICANT_DIGITS) -> None:
        if lowest < 1 or highest < 2 * lowest or not 1 <= significant <= 5:
            raise ValueError(f"bad histogram geometry: lowest={lowest}, highest={highest}, digits={significant}")
        self.lowest, self.highest, self.significant = lowest, highest, significant
        self.unit_magnitude = math.floor(math.log2(lowest))
        count_magnitude = math.ceil(math.log2(2 * 10**significant))
        self.half_magnitude = max(count_magnitude - 1, 0)
        self.half_count = 1 << self.half_magnitude
        self.mask = ((2 * self.half_count) - 1) << self.unit_magnitude
        # bucket_index = bit_length(value | mask) - shift
        self.shift = self.unit_magnitude + self.half_magnitude + 1

    def index(self, value: int) -> int:
        """The counts index HdrHistogram uses for `value` (already clamped to [0, highest])."""
        bucket = (value | self.mask).bit_length() - self.shift
        return ((bucket + 1) << self.half_magnitude) + (value >> (bucket + self.unit_magnitude)) - self.half_count

    def lowest_equivalent(self, index: int) -> int:
        bucket = (index >> self.half_magnitude) - 1
        sub = (index & (self.half_count - 1)) + self.half_count
        if bucket < 0:
            sub -= self.half_count
            bucket = 0
        return sub << (bucket + self.unit_magnitude)

    def highest_equivalent(self, index: int) -> int:
        bucket = max((index >> self.half_magnitude) - 1, 0)
        return self.lowest_equivalent(index) + (1 << (bucket + self.unit_magnitude)) - 1

    def key(self) -> tuple[int, int, int]:
        return (self.lowest, self.highest, self.significant)


DEFAULT_GEOMETRY: Final = Geometry()
# For the 1-second time series: p50 and p99 to within 1% need ~10x fewer buckets than 0.1%,
# and a long run keeps one histogram per second.
COARSE_GEOMETRY: Final = Geometry(LOWEST, HIGHEST_US, 2)


def _geometry(key: tuple[int, int, int]) -> Geometry:
    for known in (DEFAULT_GEOMETRY, COARSE_GEOMETRY):
        if known.key() == key:
            return known
    return Geometry(*key)


class Histogram:
    """Counts of values by HdrHistogram bucket, plus the exact count, sum, min and max."""

    __slots__ = ("_packed", "count", "counts", "geometry", "max", "min", "sum")

    def __init__(self, geometry: Geometry = DEFAULT_GEOMETRY) -> None:
        self.geometry = geometry
        self.counts: dict[int, int] = {}  # bucket index -> count, recorded since the last pack()
        self._packed: tuple[array[int], array[int]] | None = None  # (indexes, counts) from before it
        self.count = 0
        self.sum = 0
        self.min = 0
        self.max = 0

    def clamp(self, value: int) -> int:
        if value < 0:
            return 0
        highest = self.geometry.highest
        return highest if value > highest else value

    def record(self, value: int) -> None:
        value = self.clamp(value)
        self.record_at(self.geometry.index(value), value)

    def record_at(self, index: int, value: int) -> None:
        """Record `value` (already clamped) whose bucket `index` the caller computed with this geometry.

        The recorder's hot path computes indexes inline, where a call to
        `Geometry.index` would cost as much as the arithmetic itself.
        """
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        if self.count:
            if value > self.max:
                self.max = value
            elif value < self.min:
                self.min = value
        else:
            self.min = self.max = value
        self.count += 1
        self.sum += value

    def items(self) -> list[tuple[int, int]]:
        """(bucket index, count) for every bucket hit, in index order."""
        if self._packed is None:
            return sorted(self.counts.items())
        merged = dict(zip(self._packed[0], self._packed[1], strict=True))
        for index, n in self.counts.items():
            merged[index] = merged.get(index, 0) + n
        return sorted(merged.items())

    def pack(self) -> None:
        """Move every bucket into the compact arrays (see the module docstring)."""
        if not self.counts:
            return
        items = self.items()
        self._packed = (array("I", [i for i, _ in items]), array("Q", [n for _, n in items]))
        self.counts = {}

    def add(self, other: Histogram) -> None:
        if other.geometry.key() != self.geometry.key():
            raise ValueError("cannot add histograms with different geometries")
        if not other.count:
            return
        counts = self.counts
        for index, n in other.items():
            counts[index] = counts.get(index, 0) + n
        if self.count:
            self.min = min(self.min, other.min)
            self.max = max(self.max, other.max)
        else:
            self.min, self.max = other.min, other.max
        self.count += other.count
        self.sum += other.sum

    @classmethod
    def combined(cls, histograms: Iterable[Histogram], geometry: Geometry = DEFAULT_GEOMETRY) -> Histogram:
        total = cls(geometry)
        for h in histograms:
            total.add(h)
        return total

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def percentiles(self, wanted: Iterable[float]) -> dict[float, int]:
        """Values at the given percentiles (0..100), HdrHistogram's way, in one pass over the hit buckets.

        A percentile is the highest value equivalent to the bucket holding the
        target count (as `HdrHistogram.get_value_at_percentile` returns), then
        clamped to the exact recorded [min, max]: the bucket's upper edge may
        lie above the largest value seen, and p99 > max would be a lie.
        """
        ps = sorted(set(wanted))
        out: dict[float, int] = {}
        if not self.count:
            return dict.fromkeys(ps, 0)
        geometry = self.geometry
        items = self.items()
        running = 0
        i = 0
        for p in ps:
            target = max(int(min(p, 100.0) * self.count / 100 + 0.5), 1)
            while running < target and i < len(items):
                running += items[i][1]
                i += 1
            index = items[i - 1][0] if i else items[0][0]
            value = geometry.highest_equivalent(index) if p > 0 else geometry.lowest_equivalent(index)
            out[p] = min(max(value, self.min), self.max)
        return out

    def percentile(self, p: float) -> int:
        return self.percentiles((p,))[p]

    def summary(self, scale: float = 1e-3, digits: int = 3) -> dict[str, float]:
        """p50, p90, p99, p999, max and mean, each multiplied by `scale` (µs → ms by default)."""
        values = self.percentiles(p for _, p in PERCENTILES)
        out = {key: round(values[p] * scale, digits) for key, p in PERCENTILES}
        out["max"] = round(self.max * scale, digits)
        out["mean"] = round(self.mean * scale, digits)
        return out

    # ---- serialisation: JSON-able and picklable; the merge form for worker processes ----

    def to_state(self) -> dict[str, Any]:
        items = self.items()
        return {
            "geometry": list(self.geometry.key()),
            "index": [i for i, _ in items],
            "n": [n for _, n in items],
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Histogram:
        lowest, highest, significant = state["geometry"]
        h = cls(_geometry((int(lowest), int(highest), int(significant))))
        h.counts = {int(i): int(n) for i, n in zip(state["index"], state["n"], strict=True)}
        h.count = int(state["count"])
        h.sum = int(state["sum"])
        h.min = int(state["min"])
        h.max = int(state["max"])
        if sum(h.counts.values()) != h.count:
            raise ValueError("histogram state is inconsistent: bucket counts do not add up to count")
        return h

    def to_hdr(self) -> Any:
        """The same data as an `hdrh.histogram.HdrHistogram` (allocates its dense array: not for the hot path)."""
        g = self.geometry
        hdr = HdrHistogram(g.lowest, g.highest, g.significant)
        for index, n in self.items():
            hdr.record_value(g.lowest_equivalent(index), n)
        if self.count:
            # Keep the exact extremes, not the bucket edges.
            hdr.min_value = self.min
            hdr.max_value = self.max
        return hdr

    def encode(self) -> str:
        """The standard compressed, base64 HdrHistogram V2 encoding ("HISTF..."), readable by any HdrHistogram."""
        encoded = self.to_hdr().encode()
        return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, min={self.min}, max={self.max})"
