"""A weighted mix of calls for the load phases, as a cycle computed once.

`--tool a=3 --tool b=1` is a mix of two entries with weights 3 and 1. The load generator draws its calls before a
step starts (`load.closed_calls`, `load.open_calls`), so the mix costs the hot path nothing: `Mix.__call__` walks
a cycle of entries built once by smooth weighted round-robin (nginx's: `a b a a`, every window as even as it can
be), and a step's call lists are whole cycles (`Mix.period`), so each caller's list and each open step's schedule
hold the weights exactly. Weights are shares of calls, not of time: a slow tool keeps its share of the calls.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from bemcp.stress.discovery import Call

# The longest cycle: weights whose ratio needs more slots (0.37 : 0.63) are rounded to the nearest 1/32 (more
# slots would multiply every caller's list of calls, drawn up front).
MAX_PERIOD: Final = 32


@dataclass(frozen=True, slots=True)
class MixEntry:
    """One tool (or protocol method) of the mix and how to make its calls."""

    name: str
    weight: float
    make: Callable[[random.Random], Call]
    kind: Literal["tool", "method"] = "tool"
    arguments: Literal["generated", "fixed", "none"] = "generated"


class Mix:
    """Calls from `entries` in proportion to their weights; call it like a `load.MakeCall`."""

    def __init__(self, entries: Sequence[MixEntry]) -> None:
        if not entries:
            raise ValueError("a mix needs at least one entry")
        if any(not (e.weight > 0 and math.isfinite(e.weight)) for e in entries):
            raise ValueError("mix weights must be positive numbers")
        self.entries = tuple(entries)
        self.slots = slots_for([e.weight for e in entries], max(MAX_PERIOD, len(entries)))
        self.cycle = smooth_cycle(self.slots)
        self.period = len(self.cycle)
        self._next = 0

    def __call__(self, rng: random.Random) -> Call:
        entry = self.entries[self.cycle[self._next]]
        self._next = (self._next + 1) % self.period
        return entry.make(rng)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def tools(self) -> list[MixEntry]:
        return [e for e in self.entries if e.kind == "tool"]


def slots_for(weights: Sequence[float], limit: int) -> list[int]:
    """Whole slots per weight, at least one each, over the shortest cycle (up to `limit`) that keeps the ratio
    exactly, else over the cycle that comes closest."""
    total = sum(weights)
    best: tuple[float, list[int]] | None = None
    for period in range(len(weights), max(limit, len(weights)) + 1):
        slots = _apportion(weights, total, period)
        if slots is None:
            continue
        error = max(abs(n / period - w / total) for n, w in zip(slots, weights, strict=True))
        if error < 1e-9:
            return slots
        if best is None or error < best[0] - 1e-12:
            best = (error, slots)
    assert best is not None  # period == len(weights) always apportions: one slot each
    return best[1]


def _apportion(weights: Sequence[float], total: float, period: int) -> list[int] | None:
    """Largest-remainder apportionment of `period` slots with at least one each (None when that overshoots)."""
    quotas = [w / total * period for w in weights]
    slots = [max(1, math.floor(q + 1e-9)) for q in quotas]
    left = period - sum(slots)
    if left < 0:
        return None
    by_remainder = sorted(range(len(weights)), key=lambda i: slots[i] - quotas[i])
    for i in by_remainder[:left]:
        slots[i] += 1
    return slots


def smooth_cycle(slots: Sequence[int]) -> tuple[int, ...]:
    """Entry indexes in smooth weighted round-robin order: entry i appears slots[i] times, spread out."""
    total = sum(slots)
    current = [0] * len(slots)
    cycle: list[int] = []
    for _ in range(total):
        for i, n in enumerate(slots):
            current[i] += n
        best = max(range(len(slots)), key=lambda i: current[i])
        current[best] -= total
        cycle.append(best)
    return tuple(cycle)
