"""The escalation policy: which load level to try next, and what the highest sustainable level was.

A phase runs a step at the level the policy asks for, hands the step's
`StepOutcome` back, and repeats until the policy says stop (None); then
`result()` is the highest level the policy judged good. The policy never runs
load or reads the clock, so a test can drive it with a simulated server: a
pure function from level to `StepOutcome`.

Whether a step was good is `StepJudge`'s decision, kept apart so phases can
use the same rule to label steps in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol

from bemcp.stress.model import StepOutcome, Thresholds

StopReason = Literal["converged", "max_level", "bad_at_min", "client_bound", "max_steps", "unrefinable"]


class EscalationPolicy(Protocol):
    """Chooses load levels one step at a time."""

    def next(self, last: StepOutcome | None) -> float | None:
        """The level to run next, given the outcome of the level last returned (None on the first call).

        Returns None when the search is over.
        """
        ...

    def result(self) -> float | None:
        """The highest level judged sustainable so far (None if none was)."""
        ...


@dataclass(frozen=True, slots=True)
class StepJudge:
    """Whether a step was sustainable.

    A step is good when it completed at least one call and:

    - its error rate (protocol errors, timeouts, transport errors) is within
      `thresholds.error_budget`;
    - its p99 latency is within `thresholds.slo_p99_ms`;
    - its overload rate is within `overload_budget` (None: the error budget).
      An overload is a clean refusal, so it never fails the verdict, but a
      level at which the server turns calls away is not one it sustains. Pass
      1.0 to ignore overloads;
    - if `min_achieved_ratio` is set (open model: `level` is the offered rate),
      it achieved at least that fraction of it (`throughput >= ratio * level`).

    A client-bound step is judged like any other; what that means for the
    search is the policy's business.
    """

    thresholds: Thresholds = field(default_factory=Thresholds)
    overload_budget: float | None = None
    min_achieved_ratio: float | None = None

    def reasons(self, o: StepOutcome) -> list[str]:
        """Why the step was bad; empty when it was good."""
        if o.calls <= 0:
            return ["no calls completed"]
        why: list[str] = []
        t = self.thresholds
        if o.error_rate > t.error_budget:
            why.append(f"error rate {o.error_rate:.2%} > budget {t.error_budget:.2%}")
        if o.p99_ms > t.slo_p99_ms:
            why.append(f"p99 {o.p99_ms:.1f} ms > SLO {t.slo_p99_ms:.1f} ms")
        overload_budget = t.error_budget if self.overload_budget is None else self.overload_budget
        if o.overload_rate > overload_budget:
            why.append(f"overload rate {o.overload_rate:.2%} > {overload_budget:.2%}")
        if self.min_achieved_ratio is not None and o.throughput < self.min_achieved_ratio * o.level:
            why.append(f"achieved {o.throughput:.1f}/s < {self.min_achieved_ratio:.0%} of offered {o.level:g}/s")
        return why

    def good(self, o: StepOutcome) -> bool:
        return not self.reasons(o)


def _round_up(level: float) -> float:
    # The epsilon keeps float noise (4 * 1.1 = 4.4000000000000004, 3 * 1.5 = 4.5) from adding a whole level.
    return float(math.ceil(level - 1e-9))


class ExponentialBisect:
    """Grow exponentially while steps are good, then bisect between the last good and the first bad level.

    The search, for levels in [min_level, max_level]:

    1. Start at `start`.
    2. While every step has been good, multiply the level by `factor` (capped
       at `max_level`). A good step at `max_level` ends the search:
       `result() == max_level`, `stop_reason == "max_level"`.
    3. If the very first step is bad, search downwards instead: divide by
       `factor` (not below `min_level`) until a step is good, then continue
       with 4. A bad step at `min_level` ends the search with
       `result() is None` (`"bad_at_min"`): nothing tried was sustainable.
    4. With a good level G and a bad level B > G known, try the midpoint; a
       good midpoint becomes the new G, a bad one the new B. Stop when
       ``B - G <= max(resolution, relative_resolution * G)`` (`"converged"`)
       or, with integer levels, when no whole level lies strictly between
       them (`"unrefinable"`: G and B are adjacent, the answer is exact).
    5. `result()` is always the highest good level G: a level the server was
       *seen* to sustain, never an interpolation. The true capacity C (the
       highest good level) satisfies G <= C < B, so the answer is within the
       resolution of it.

    Also:

    - `integer=True` (the default, for concurrency) keeps every level whole:
      the bounds round inwards, the start and growth round up, midpoints
      round down.
    - A client-bound step ends the search at once (`"client_bound"`): the
      load generator, not the server, was the limit, so neither growing nor
      bisecting would measure the server. `result()` is then only a lower
      bound, which `client_limited` says.
    - At most `max_steps` steps are run (`"max_steps"`).
    - The server is assumed monotone (good below capacity, bad above); a noisy
      step is taken at its word, which can only move the answer within the
      bracket it was probed in.
    - The policy judges the level the step reports (`StepOutcome.level`), so a
      runner that could not run exactly the level asked for is still judged
      on what it ran.

    Levels are judged by `judge` (default: `StepJudge()` with default thresholds).
    """

    def __init__(
        self,
        start: float,
        *,
        factor: float = 2.0,
        max_level: float = 4096.0,
        min_level: float = 1.0,
        resolution: float = 1.0,
        relative_resolution: float = 0.0,
        judge: StepJudge | None = None,
        integer: bool = True,
        max_steps: int = 40,
    ) -> None:
        if integer:
            min_level, max_level = float(math.ceil(min_level)), float(math.floor(max_level))
            start = _round_up(start)
        if not 0 < min_level <= start <= max_level:
            raise ValueError(f"need 0 < min_level <= start <= max_level, got {min_level}, {start}, {max_level}")
        if factor <= 1.0:
            raise ValueError(f"factor must be > 1, got {factor}")
        if resolution < 0 or relative_resolution < 0 or max_steps < 1:
            raise ValueError("resolution and relative_resolution must be >= 0 and max_steps >= 1")
        self.start = start
        self.factor = factor
        self.max_level = max_level
        self.min_level = min_level
        self.resolution = resolution
        self.relative_resolution = relative_resolution
        self.judge = judge if judge is not None else StepJudge()
        self.integer = integer
        self.max_steps = max_steps
        self.good_level: float | None = None  # the highest good level seen (G)
        self.bad_level: float | None = None  # the lowest bad level seen (B)
        self.history: list[tuple[float, bool, list[str]]] = []  # (level, good, reasons) per step judged
        self.stop_reason: StopReason | None = None
        self.client_limited = False
        self._started = False

    def next(self, last: StepOutcome | None) -> float | None:
        if self.stop_reason is not None:
            return None
        if last is None:
            if self._started:
                raise ValueError("next(None) is only for the first step; pass the outcome of the last step")
            self._started = True
            return self.start
        if not self._started:
            raise ValueError("next() got an outcome before any level was handed out")
        level = last.level
        reasons = self.judge.reasons(last)
        good = not reasons
        self.history.append((level, good, reasons))
        if good:
            if self.good_level is None or level > self.good_level:
                self.good_level = level
        elif self.bad_level is None or level < self.bad_level:
            self.bad_level = level
        if last.client_bound:
            self.client_limited = True
            return self._stop("client_bound")
        if len(self.history) >= self.max_steps:
            return self._stop("max_steps")
        return self._choose(level)

    def _choose(self, level: float) -> float | None:
        g, b = self.good_level, self.bad_level
        if b is None:
            # Only good steps so far: grow.
            if level >= self.max_level:
                return self._stop("max_level")
            up = min(level * self.factor, self.max_level)
            return min(_round_up(up), self.max_level) if self.integer else up
        if g is None:
            # Only bad steps so far: shrink.
            if level <= self.min_level:
                return self._stop("bad_at_min")
            down = max(level / self.factor, self.min_level)
            return max(float(math.floor(down)), self.min_level) if self.integer else down
        if g > b:
            # Only possible when a step ran at a level other than the one asked for: there is no
            # bracket left to bisect, and the good level above the bad one was still seen.
            return self._stop("converged")
        if b - g <= max(self.resolution, self.relative_resolution * g):
            return self._stop("converged")
        mid = (g + b) / 2
        if self.integer:
            mid = float(math.floor(mid))
            if not g < mid < b:
                return self._stop("unrefinable")
        return mid

    def _stop(self, reason: StopReason) -> float | None:
        """End the search; returns what next() answers then (None)."""
        self.stop_reason = reason
        return None

    def result(self) -> float | None:
        return self.good_level

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    def __repr__(self) -> str:
        return (
            f"ExponentialBisect(good={self.good_level}, bad={self.bad_level}, steps={len(self.history)}, "
            f"stop={self.stop_reason})"
        )
