"""A small Prometheus registry: counters, gauges and histograms with labels, and the text exposition format.

Updates are plain dict and float operations, cheap enough for the hot path;
rendering happens only when `/metrics` is scraped. Gauges may be read from a
callback at scrape time, so values that already live elsewhere are not copied.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TypeVar

LabelValues = tuple[str, ...]


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Counter:
    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.doc, self.label_names = name, doc, labels
        self.values: dict[LabelValues, float] = {} if labels else {(): 0.0}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.doc}"
        yield f"# TYPE {self.name} counter"
        for lv, v in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, lv)} {_fmt(v)}"


class Gauge:
    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...] = (), read: Callable[[], float] | None = None
    ) -> None:
        self.name, self.doc, self.label_names = name, doc, labels
        self.values: dict[LabelValues, float] = {}
        self._read = read

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.doc}"
        yield f"# TYPE {self.name} gauge"
        if self._read is not None:
            yield f"{self.name} {_fmt(float(self._read()))}"
        for lv, v in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, lv)} {_fmt(v)}"


_INF = 'le="+Inf"'
DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Buckets per label set. A series is one list: the counts per bucket (non-cumulative, `bucket i` holds
    values <= buckets[i] and > buckets[i-1]), the overflow count, then the sum at `sum_at`.

    `cells(label)` hands out a series' live list so that a hot path can count a value inline, without a
    function call: `cells[0 if v <= h.first else bisect_left(h.buckets, v)] += 1; cells[h.sum_at] += v`.
    """

    __slots__ = ("_one", "buckets", "doc", "first", "label_names", "name", "series", "sum_at")

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

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.doc}"
        yield f"# TYPE {self.name} histogram"
        for lv, s in sorted(self.series.items()):
            running = 0
            for bound, n in zip(self.buckets, s, strict=False):
                running += int(n)
                le = 'le="' + _fmt(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.label_names, lv, le)} {running}"
            running += int(s[-2])
            yield f"{self.name}_bucket{_labels(self.label_names, lv, _INF)} {running}"
            yield f"{self.name}_sum{_labels(self.label_names, lv)} {_fmt(s[-1])}"
            yield f"{self.name}_count{_labels(self.label_names, lv)} {running}"


M = TypeVar("M", Counter, Gauge, Histogram)


class Registry:
    """Owns a set of metrics and renders them in the Prometheus text format (version 0.0.4)."""

    def __init__(self, prefix: str = "bemcp") -> None:
        self.prefix = prefix
        self._metrics: list[Counter | Gauge | Histogram] = []

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._add(Counter(f"{self.prefix}_{name}", doc, labels))

    def gauge(
        self, name: str, doc: str, labels: tuple[str, ...] = (), read: Callable[[], float] | None = None
    ) -> Gauge:
        return self._add(Gauge(f"{self.prefix}_{name}", doc, labels, read))

    def histogram(
        self, name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._add(Histogram(f"{self.prefix}_{name}", doc, labels, buckets))

    def _add(self, metric: M) -> M:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        return "\n".join(line for m in self._metrics for line in m.render()) + "\n"
