"""Inline SVG charts drawn in Python: line charts (linear or log axes, phase bands, reference lines) and stacked
horizontal bars. No JavaScript and no external assets, so report.html works offline and prints as it shows."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

TEXT = "#475569"
GRID = "#e2e8f0"
AXIS = "#94a3b8"
BANDS = ("#eef2f7", "#f7f9fc")  # two tints so adjacent phases stay apart


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[tuple[float, float | None]]  # None breaks the line
    color: str
    dash: str | None = None
    markers: bool = False
    area: bool = False
    width: float = 2.0
    tips: Sequence[str] | None = None  # hover text per point (an SVG <title>)


@dataclass(frozen=True, slots=True)
class Band:
    """A shaded x range with a label (a phase on a time axis)."""

    x0: float
    x1: float
    label: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A dashed reference line: horizontal at y=value (an SLO, a budget) or vertical at x=value (a limit)."""

    value: float
    label: str
    color: str
    vertical: bool = False


def _plain(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True, slots=True)
class Axis:
    label: str
    fmt: Callable[[float], str] = _plain
    log: bool = False
    lo: float | None = None
    hi: float | None = None
    ticks: Sequence[float] | None = None


@dataclass(slots=True)
class _Scale:
    lo: float
    hi: float
    p0: float
    p1: float
    log: bool
    ticks: list[float] = field(default_factory=list)

    def __call__(self, v: float) -> float:
        if self.log:
            a, b, x = math.log10(self.lo), math.log10(self.hi), math.log10(max(v, self.lo))
        else:
            a, b, x = self.lo, self.hi, v
        frac = (x - a) / (b - a) if b > a else 0.5
        return self.p0 + frac * (self.p1 - self.p0)


def nice_step(span: float, count: int) -> float:
    """A 1, 2, 2.5 or 5 times 10^k step giving about `count` intervals over `span`."""
    raw = span / max(count, 1)
    if raw <= 0:
        return 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    return next((m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw), 10 * mag)


def linear_ticks(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[float]]:
    """Rounded bounds and the ticks between them: the top tick is a round number at or above `hi`."""
    if hi <= lo:
        hi = lo + 1
    step = nice_step(hi - lo, count)
    start, end = math.floor(lo / step) * step, math.ceil(hi / step) * step
    n = round((end - start) / step)
    return start, end, [start + i * step for i in range(n + 1)]


def log_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """Decade bounds; 1-2-5 ticks when the range spans few decades, decades only when it spans many."""
    lo, hi = max(lo, 1e-9), max(hi, lo * 10)
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if b - a <= 3 else (1,)
    ticks = [
        m * 10.0**e
        for e in range(a, b + 1)
        for m in mults
        if lo <= m * 10.0**e * 1.0000001 and m * 10.0**e <= hi * 1.0000001
    ]
    # Tighten the bounds to the data's 1-2-5 neighbours so the plot is not mostly empty decades.
    lo_b = max((t for t in (m * 10.0**e for e in range(a, b + 1) for m in (1, 2, 5)) if t <= lo), default=10.0**a)
    hi_b = min((t for t in (m * 10.0**e for e in range(a, b + 2) for m in (1, 2, 5)) if t >= hi), default=10.0**b)
    ticks = [t for t in ticks if lo_b <= t <= hi_b] or [lo_b, hi_b]
    return lo_b, hi_b, ticks


def _scale(axis: Axis, values: Sequence[float], p0: float, p1: float, zero: bool) -> _Scale:
    if axis.log:
        positive = [v for v in values if v > 0]
        lo = axis.lo if axis.lo is not None else (min(positive) if positive else 1.0)
        hi = axis.hi if axis.hi is not None else (max(positive) if positive else 10.0)
        lo_b, hi_b, ticks = log_ticks(lo, hi)
        if axis.ticks is not None:
            lo_b, hi_b = min(lo, lo_b), max(hi, hi_b)
            ticks = [t for t in axis.ticks if lo_b <= t <= hi_b]
        return _Scale(lo_b, hi_b, p0, p1, True, ticks)
    lo = axis.lo if axis.lo is not None else (0.0 if zero else min(values, default=0.0))
    hi = axis.hi if axis.hi is not None else max(values, default=1.0)
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    if axis.ticks is not None:
        return _Scale(lo, hi, p0, p1, False, [t for t in axis.ticks if lo <= t <= hi])
    lo_b, hi_b, ticks = linear_ticks(lo, hi * 1.04 if zero else hi)
    return _Scale(lo if axis.lo is not None else lo_b, hi_b, p0, p1, False, ticks)


def _thin(ticks: Sequence[float], px: Callable[[float], float], min_gap: float) -> list[float]:
    """Drop ticks that would print on top of each other."""
    kept: list[float] = []
    for t in ticks:
        if not kept or abs(px(t) - px(kept[-1])) >= min_gap:
            kept.append(t)
    return kept


def _t(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "middle",
    size: int = 11,
    color: str = TEXT,
    weight: str = "normal",
    rotate: bool = False,
) -> str:
    transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{color}" '
        f'font-weight="{weight}"{transform}>{escape(text)}</text>'
    )


def line_chart(
    *,
    series: Sequence[Series],
    x: Axis,
    y: Axis,
    bands: Sequence[Band] = (),
    rules: Sequence[Rule] = (),
    width: int = 1100,
    height: int = 260,
    label: str = "",
) -> str:
    """One line chart as an `<svg>` element (it scales to its container's width)."""
    left, right, top, bottom = 64, 20, 14, 42
    xs = [px for s in series for px, _ in s.points] + [b.x0 for b in bands] + [b.x1 for b in bands]
    xs += [r.value for r in rules if r.vertical]
    ys = [py for s in series for _, py in s.points if py is not None] + [r.value for r in rules if not r.vertical]
    sx = _scale(x, xs, left, width - right, zero=False)
    sy = _scale(y, ys, height - bottom, top, zero=True)
    out = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="inherit">'
    ]
    for i, b in enumerate(bands):
        x0, x1 = sx(b.x0), sx(b.x1)
        out.append(
            f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 0):.1f}" height="{height - top - bottom}"'
            f' fill="{BANDS[i % 2]}"/>'
        )
        if x1 - x0 > 7 * len(b.label):
            out.append(_t(x0 + 5, top + 12, b.label, anchor="start", size=11, color="#64748b", weight="600"))
    for t in _thin(sy.ticks, sy, 18):
        py = sy(t)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py:.1f}" y2="{py:.1f}" stroke="{GRID}"/>')
        out.append(_t(left - 8, py + 4, y.fmt(t), anchor="end"))
    for t in _thin(sx.ticks, sx, 56):
        px = sx(t)
        out.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{height - bottom}" y2="{height - bottom + 4}" stroke="{AXIS}"/>'
        )
        out.append(_t(px, height - bottom + 17, x.fmt(t)))
    out.append(
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" stroke="{AXIS}"/>'
    )
    out.append(_t((left + width - right) / 2, height - 6, x.label, size=12))
    out.append(_t(14, (top + height - bottom) / 2, y.label, size=12, rotate=True))
    for s in series:
        out.extend(_draw_series(s, sx, sy, height - bottom))
    for r in rules:
        if r.vertical:
            px = sx(r.value)
            out.append(
                f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{height - bottom}" stroke="{r.color}" '
                'stroke-width="1.5" stroke-dasharray="5 4"/>'
            )
            # Labelled near the x axis, on the side with room: the top is where horizontal rules print theirs.
            right_half = px > (left + width - right) / 2
            out.append(
                _t(
                    px - 6 if right_half else px + 6,
                    height - bottom - 8,
                    r.label,
                    anchor="end" if right_half else "start",
                    color=r.color,
                    weight="600",
                )
            )
        else:
            py = sy(r.value)
            out.append(
                f'<line x1="{left}" x2="{width - right}" y1="{py:.1f}" y2="{py:.1f}" stroke="{r.color}" '
                'stroke-width="1.5" stroke-dasharray="6 4"/>'
            )
            out.append(_t(width - right - 4, py - 5, r.label, anchor="end", color=r.color, weight="600"))
    out.append("</svg>")
    return "".join(out)


def _draw_series(s: Series, sx: _Scale, sy: _Scale, base: float) -> list[str]:
    out: list[str] = []
    runs: list[list[tuple[float, float]]] = [[]]
    for px, py in s.points:
        if py is None:
            runs.append([])
        else:
            runs[-1].append((sx(px), sy(py)))
    dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
    for run in runs:
        if not run:
            continue
        coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in run)
        if s.area and len(run) > 1:
            out.append(
                f'<polygon points="{run[0][0]:.1f},{base:.1f} {coords} {run[-1][0]:.1f},{base:.1f}" '
                f'fill="{s.color}" fill-opacity="0.12" stroke="none"/>'
            )
        if len(run) > 1:
            out.append(
                f'<polyline points="{coords}" fill="none" stroke="{s.color}" stroke-width="{s.width}" '
                f'stroke-linejoin="round" stroke-linecap="round"{dash}/>'
            )
    if s.markers:
        for i, (px, py) in enumerate(s.points):
            if py is None:
                continue
            tip = f"<title>{escape(s.tips[i])}</title>" if s.tips and i < len(s.tips) else ""
            out.append(
                f'<circle cx="{sx(px):.1f}" cy="{sy(py):.1f}" r="3.5" fill="#fff" stroke="{s.color}" '
                f'stroke-width="2">{tip}</circle>'
            )
    return out


@dataclass(frozen=True, slots=True)
class Stack:
    name: str
    color: str
    values: Sequence[float]  # one per category


def stacked_bars(
    *,
    categories: Sequence[str],
    stacks: Sequence[Stack],
    notes: Sequence[str],
    x_fmt: Callable[[float], str],
    width: int = 1100,
    label: str = "",
) -> str:
    """Horizontal stacked bars, one per category, with a note at each bar's end."""
    left, right, top, bar, gap = 110, 260, 8, 24, 14
    height = top + len(categories) * (bar + gap) + 30
    totals = [sum(s.values[i] for s in stacks) for i in range(len(categories))]
    lo, hi, ticks = linear_ticks(0, max(totals, default=1) or 1)
    sx = _Scale(lo, hi, left, width - right, False, ticks)
    out = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(label)}" '
        'xmlns="http://www.w3.org/2000/svg" font-family="inherit">'
    ]
    axis_y = top + len(categories) * (bar + gap)
    for t in _thin(ticks, sx, 50):
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{axis_y}" stroke="{GRID}"/>')
        out.append(_t(sx(t), axis_y + 16, x_fmt(t)))
    for i, cat in enumerate(categories):
        y0 = top + i * (bar + gap) + gap / 2
        out.append(_t(left - 10, y0 + bar / 2 + 4, cat, anchor="end", size=12, color="#334155", weight="600"))
        x0 = float(left)
        for s in stacks:
            v = s.values[i]
            if v <= 0:
                continue
            w = sx(v) - sx(0)
            out.append(
                f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(w, 1.5):.1f}" height="{bar}" fill="{s.color}">'
                f"<title>{escape(f'{cat}: {s.name} {x_fmt(v)}')}</title></rect>"
            )
            x0 += w
        out.append(_t(x0 + 8, y0 + bar / 2 + 4, notes[i], anchor="start"))
    out.append("</svg>")
    return "".join(out)
