"""Live metric storage behind /metrics: counters, gauges and histograms with labels.

Updates are plain dict and list operations, cheap enough for the hot path (the call path counts latency straight
into `Histogram.cells()`). Nothing is formatted until a scrape: `Registry` is a prometheus_client collector, and its
`collect()` turns the live numbers into metric families at that moment, so the exposition formats (Prometheus text,
OpenMetrics) are the library's. A counter or gauge may `read` its value from a callback at scrape time, so numbers
that already live elsewhere are not copied on every change.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from itertools import accumulate
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

LabelValues = tuple[str, ...]
# A scrape-time reader: a number for an unlabelled metric, {label values: number} for a labelled one.
Read = Callable[[], float] | Callable[[], Mapping[LabelValues, float]]


class _Scalar:
    """What counters and gauges share: live values by label set, or a reader that replaces them (then the
    live values are not shown: a metric is either updated in place or read)."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], read: Read | None) -> None:
        self.name, self.doc, self.label_names = name, doc, labels
        self.values: dict[LabelValues, float] = {}
        self._read = read

    def _series(self) -> list[tuple[LabelValues, float]]:
        if self._read is None:
            return sorted(self.values.items())
        got = self._read()
        if isinstance(got, Mapping):
            return sorted(got.items())
        return [((), float(got))]


class Counter(_Scalar):
    """Only goes up. Named `*_total`, the sample name in both exposition formats."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = (), read: Read | None = None) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r}: a counter's name ends in _total")
        super().__init__(name, doc, labels, read)
        if not labels:
            self.values[()] = 0.0

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.doc, labels=self.label_names)  # the family drops "_total"
        for labels, value in self._series():
            family.add_metric(labels, value)
        return family


class Gauge(_Scalar):
    """A level that goes up and down."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = (), read: Read | None = None) -> None:
        if name.endswith("_total"):
            raise ValueError(f"gauge {name!r}: a _total name promises a counter")
        super().__init__(name, doc, labels, read)

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value

    def family(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(self.name, self.doc, labels=self.label_names)
        for labels, value in self._series():
            family.add_metric(labels, value)
        return family


DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Buckets per label set. A series is one list: the counts per bucket (non-cumulative, `bucket i` holds
    values <= buckets[i] and > buckets[i-1]), the overflow count, then the sum at `sum_at`.

    `cells(label)` hands out a series' live list so that a hot path can count a value inline, without a
    function call: `cells[0 if v <= h.first else bisect_left(h.buckets, v)] += 1; cells[h.sum_at] += v`.
    A scrape makes the counts cumulative (`family()`); the hot path never does.
    """

    __slots__ = ("_le", "_one", "buckets", "doc", "first", "label_names", "name", "series", "sum_at")

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = DEFAULT_BUCKETS
    ) -> None:
        if not buckets or list(buckets) != sorted(set(buckets)):
            raise ValueError("histogram buckets must be distinct and ascending")
        self.name, self.doc, self.label_names = name, doc, labels
        self.buckets = buckets
        self.first = buckets[0]
        self.sum_at = len(buckets) + 1
        self.series: dict[LabelValues, list[float]] = {}
        self._one: dict[str, list[float]] = {}  # the same lists by a single label value
        # `le` values formatted once, as prometheus_client formats them (its helper has no annotations).
        self._le = [floatToGoString(b) for b in buckets] + ["+Inf"]  # type: ignore[no-untyped-call]

    def _new(self, labels: LabelValues) -> list[float]:
        s = self.series[labels] = [0] * (len(self.buckets) + 1) + [0.0]
        if len(labels) == 1:
            self._one[labels[0]] = s
        return s

    def cells(self, label: str) -> list[float]:
        """The live series of a one-label histogram (made if new), to update inline; see the class doc."""
        return self._one.get(label) or self._new((label,))

    def observe(self, value: float, *labels: str) -> None:
        self._count(self.series.get(labels) or self._new(labels), value)

    def observe1(self, value: float, label: str) -> None:
        """`observe(value, label)` for a one-label histogram, without building a label tuple."""
        self._count(self.cells(label), value)

    def _count(self, s: list[float], value: float) -> None:
        s[bisect_left(self.buckets, value)] += 1
        s[self.sum_at] += value

    def count(self, *labels: str) -> int:
        s = self.series.get(labels)
        return int(sum(s[:-1])) if s else 0

    def totals(self) -> tuple[int, float]:
        """Observations and their sum over every label set."""
        n, total = 0, 0.0
        for s in list(self.series.values()):
            n += int(sum(s[:-1]))
            total += s[-1]
        return n, total

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.label_names)
        for labels, s in sorted(self.series.items()):
            *counts, total = s
            family.add_metric(labels, list(zip(self._le, accumulate(counts), strict=True)), total)
        return family


M = TypeVar("M", Counter, Gauge, Histogram)


class Registry:
    """Owns a set of live metrics under one name prefix; a prometheus_client collector over them."""

    def __init__(self, prefix: str = "bemcp") -> None:
        self.prefix = prefix
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = (), read: Read | None = None) -> Counter:
        return self._add(Counter(f"{self.prefix}_{name}", doc, labels, read))

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = (), read: Read | None = None) -> Gauge:
        return self._add(Gauge(f"{self.prefix}_{name}", doc, labels, read))

    def histogram(
        self, name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._add(Histogram(f"{self.prefix}_{name}", doc, labels, buckets))

    def _add(self, metric: M) -> M:
        if metric.name in self._metrics:  # a second family of one name makes the whole scrape invalid
            raise ValueError(f"metric {metric.name!r} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def collect(self) -> Iterable[Metric]:
        """The metric families as they are now (prometheus_client's collector protocol)."""
        return [m.family() for m in self._metrics.values()]
