"""What the load generator measured: latency histograms per step and operation kind, and a 1-second time series.

`Recorder` owns a run's measurements. A phase opens a step with
`Recorder.step(...)` and records every finished call into it with
`StepRecorder.record(result)`: the call lands in the step's histogram for its
(kind, outcome) and in the run's 1-second time series. That one method is the
load generator's hot path, so it does a fixed, small amount of dict and integer
work (about 1 µs) and nothing else; percentiles and summaries are computed
only when asked for.

Latency is measured from the call's *intended* send time (`CallResult.latency`),
which makes open-model steps coordinated-omission safe; in the closed model
`intended == start`. Latencies are recorded in microseconds (1 µs .. 1 h, 3
significant digits, HdrHistogram bucketing: see `histogram.py`).

Several worker processes (`--workers N`) each keep their own recorder;
`to_state()` is a JSON-able, picklable form of everything and
`merge()`/`Recorder.merged()` add them up (see `Recorder.merge`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, Final, Literal

from bemcp.stress.histogram import COARSE_GEOMETRY, DEFAULT_GEOMETRY, HIGHEST_US, Histogram
from bemcp.stress.model import ERROR_OUTCOMES, OUTCOMES, CallResult, StepOutcome

StepModel = Literal["closed", "open"]
STATE_VERSION: Final = 1
_NON_OK: Final = tuple(o for o in OUTCOMES if o != "ok")
_US: Final = 1_000_000
# Geometry.index, inlined in the hot path (a call costs as much as the arithmetic): steps use
# DEFAULT_GEOMETRY (0.1%), the 1-second series COARSE_GEOMETRY (1%).
_MASK: Final = DEFAULT_GEOMETRY.mask
_SHIFT: Final = DEFAULT_GEOMETRY.shift
_HALF_MAG: Final = DEFAULT_GEOMETRY.half_magnitude
_HALF_COUNT: Final = DEFAULT_GEOMETRY.half_count
_C_MASK: Final = COARSE_GEOMETRY.mask
_C_SHIFT: Final = COARSE_GEOMETRY.shift
_C_HALF_MAG: Final = COARSE_GEOMETRY.half_magnitude
_C_HALF_COUNT: Final = COARSE_GEOMETRY.half_count
assert DEFAULT_GEOMETRY.unit_magnitude == COARSE_GEOMETRY.unit_magnitude == 0, "the inlined index assumes lowest 1"
# A second of the series is packed (see Histogram.pack) once answers arrive this many seconds after it.
_PACK_AFTER: Final = 2
# An open step whose sender put out more than this share of its calls late (see load.SENDER_LATE_S) fell behind
# its schedule: what reached the target was less than the offered rate, like a client-bound closed step.
SENDER_BEHIND_SHARE: Final = 0.05


def _outcome_counts(counts: dict[str, int]) -> dict[str, int]:
    return {o: counts.get(o, 0) for o in OUTCOMES}


class _Second:
    """One second of the run's time series."""

    __slots__ = ("busy", "hist", "offered", "outcomes")

    def __init__(self) -> None:
        self.offered = 0  # calls whose intended send time falls in this second
        self.outcomes: dict[str, int] = {}  # completions in this second, by outcome
        self.busy = 0.0  # call-seconds spent in flight within this second (time-weighted in-flight)
        self.hist = Histogram(COARSE_GEOMETRY)  # latencies of the calls that completed in this second

    def add(self, other: _Second) -> None:
        self.offered += other.offered
        for o, n in other.outcomes.items():
            self.outcomes[o] = self.outcomes.get(o, 0) + n
        self.busy += other.busy
        self.hist.add(other.hist)

    def to_state(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "outcomes": dict(self.outcomes),
            "busy": self.busy,
            "hist": self.hist.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Second:
        sec = cls()
        sec.offered = int(state["offered"])
        sec.outcomes = {str(o): int(n) for o, n in state["outcomes"].items()}
        sec.busy = float(state["busy"])
        sec.hist = Histogram.from_state(state["hist"])
        return sec


class TimeSeries:
    """The run's 1-second series: offered, achieved, errors by outcome, in flight, p50 and p99.

    Second `s` covers [t0 + s, t0 + s + 1). `in_flight` is time-weighted: the
    call-seconds the recorded calls spent between their actual send and their
    answer within that second, i.e. the average number of calls in flight over
    the second, exactly rather than sampled (Little's law holds per second).
    Calls still unanswered when the series is read have not been recorded yet
    and are not in it. p50 and p99 come from a histogram per second with 2
    significant digits (within 1%), packed once the second is over: a long
    run at thousands of calls/s then costs kilobytes per second, not
    hundreds of them.
    """

    __slots__ = ("_cur", "_cur_s", "_live", "_newest", "_seconds", "t0")

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self._seconds: dict[int, _Second] = {}
        # A one-entry cache: consecutive completions almost always fall in the same second.
        self._cur_s = -(1 << 62)
        self._cur = _Second()
        self._newest = -(1 << 62)  # the latest second an answer arrived in
        self._live: set[int] = set()  # seconds whose histogram is not packed yet

    def _second(self, s: int) -> _Second:
        sec = self._seconds.get(s)
        if sec is None:
            sec = self._seconds[s] = _Second()
        return sec

    def add(self, r: CallResult, us: int) -> None:
        """Count one answered call whose latency, clamped to the histogram range, is `us` microseconds."""
        t0 = self.t0
        end = r.end
        s = int(end - t0) if end >= t0 else math.floor(end - t0)
        sec = self._cur if s == self._cur_s else self._switch(s)
        outcomes = sec.outcomes
        outcome = r.outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        bucket = (us | _C_MASK).bit_length() - _C_SHIFT
        sec.hist.record_at(((bucket + 1) << _C_HALF_MAG) + (us >> bucket) - _C_HALF_COUNT, us)
        intended = r.intended
        si = int(intended - t0) if intended >= t0 else math.floor(intended - t0)
        (sec if si == s else self._second(si)).offered += 1
        start = r.start
        ss = int(start - t0) if start >= t0 else math.floor(start - t0)
        if ss == s:
            sec.busy += end - start
        else:
            self._spread_busy(start, end, ss, s)

    def _switch(self, s: int) -> _Second:
        """Make second `s` the cached one; when time moved on, pack the seconds now well in the past."""
        sec = self._cur = self._second(s)
        self._cur_s = s
        self._live.add(s)
        if s > self._newest:
            self._newest = s
            done = [old for old in self._live if old < s - _PACK_AFTER]
            for old in done:
                self._seconds[old].hist.pack()
                self._live.discard(old)
        return sec

    def _spread_busy(self, start: float, end: float, first: int, last: int) -> None:
        t0 = self.t0
        for s in range(first, last + 1):
            lo = max(start, t0 + s)
            hi = min(end, t0 + s + 1)
            if hi > lo:
                self._second(s).busy += hi - lo

    def merge(self, other: TimeSeries, shift: int) -> None:
        """Add `other` in; its second `s` is this series' second `s + shift`."""
        for s, sec in other._seconds.items():
            self._second(s + shift).add(sec)
            self._live.add(s + shift)
        self._cur_s = -(1 << 62)

    def rows(self) -> list[dict[str, Any]]:
        """One row per second from the first to the last second with data (gaps filled with zeros).

        Each: t (seconds since t0), offered, achieved (ok answers), errors
        {each non-ok outcome: answers}, in_flight (time-weighted average),
        p50_ms and p99_ms (None when nothing was answered in that second).
        """
        if not self._seconds:
            return []
        empty = _Second()
        return [self._row(s, self._seconds.get(s, empty)) for s in range(min(self._seconds), max(self._seconds) + 1)]

    def row(self, s: int) -> dict[str, Any] | None:
        """Second `s` as `rows()` gives it, or None when nothing was recorded in it (the live view's read)."""
        sec = self._seconds.get(s)
        return None if sec is None else self._row(s, sec)

    @staticmethod
    def _row(s: int, sec: _Second) -> dict[str, Any]:
        hist = sec.hist
        if hist.count:
            p = hist.percentiles((50.0, 99.0))
            p50: float | None = round(p[50.0] / 1000, 3)
            p99: float | None = round(p[99.0] / 1000, 3)
        else:
            p50 = p99 = None  # nothing completed: there is no latency to report, and 0 would be a lie
        return {
            "t": s,
            "offered": sec.offered,
            "achieved": sec.outcomes.get("ok", 0),
            "errors": {o: sec.outcomes.get(o, 0) for o in _NON_OK},
            "in_flight": round(sec.busy, 3),
            "p50_ms": p50,
            "p99_ms": p99,
        }

    def to_state(self) -> dict[str, Any]:
        return {str(s): sec.to_state() for s, sec in sorted(self._seconds.items())}

    def load_state(self, state: dict[str, Any]) -> None:
        self._seconds = {int(s): _Second.from_state(v) for s, v in state.items()}
        self._live = set(self._seconds)
        self._cur_s = -(1 << 62)


class StepRecorder:
    """One load step: histograms per (operation kind, outcome), counts by detail, and the step's time span.

    Create it with `Recorder.step`. `record()` is the hot path. The step's
    duration runs from its creation (or `started`) to `finish()`; a step never
    finished ends at its last recorded answer.
    """

    __slots__ = (
        "_hists",
        "_last_end",
        "_series",
        "client_bound",
        "client_cpu_percent",
        "concurrency",
        "details",
        "ended",
        "index",
        "level",
        "model",
        "offered_rate",
        "phase",
        "sent_late",
        "started",
        "violations",
    )

    def __init__(
        self,
        series: TimeSeries,
        phase: str,
        index: int,
        level: float,
        model: StepModel,
        offered_rate: float | None,
        started: float,
        concurrency: int | None = None,
    ) -> None:
        self._series = series
        self.phase = phase
        self.index = index  # the step's position in its recorder (the merge key, with the phase)
        self.level = level  # concurrency (closed) or offered calls/s (open)
        self.model: StepModel = model
        self.offered_rate = offered_rate
        self.concurrency = concurrency  # closed model: the number of callers
        self.started = started  # time.monotonic() seconds
        self.ended: float | None = None
        self._last_end = started
        self._hists: dict[tuple[str, str], Histogram] = {}
        self.details: dict[tuple[str, str], int] = {}  # (outcome, detail) -> calls
        self.client_cpu_percent: float | None = None  # set by whoever measured the client's CPU (the sampler)
        self.client_bound = False
        self.sent_late: int | None = 0 if model == "open" else None  # open model: calls the sender sent late
        # What the server sent during the step that no call could carry, by kind (client.Tally): not calls.
        self.violations: dict[str, int] = {}

    def add_violations(self, counts: dict[str, int]) -> None:
        for kind, n in counts.items():
            self.violations[kind] = self.violations.get(kind, 0) + n

    # ---- the hot path ----

    def record(self, r: CallResult) -> None:
        """Record one finished call (any outcome) into this step and the run's time series."""
        us = int((r.end - r.intended) * _US + 0.5)  # nearest µs: float differences land just below
        if us < 0:
            us = 0
        elif us > HIGHEST_US:
            us = HIGHEST_US
        bucket = (us | _MASK).bit_length() - _SHIFT
        index = ((bucket + 1) << _HALF_MAG) + (us >> bucket) - _HALF_COUNT
        key = (r.kind, r.outcome)
        hist = self._hists.get(key)
        if hist is None:
            hist = self._hists[key] = Histogram()
        hist.record_at(index, us)
        if r.detail is not None:
            dkey = (r.outcome, r.detail)
            self.details[dkey] = self.details.get(dkey, 0) + 1
        if r.end > self._last_end:
            self._last_end = r.end
        self._series.add(r, us)

    # ---- reading ----

    def finish(self, now: float | None = None) -> None:
        """End the step now (or at `now`); its histograms are packed (late answers may still be recorded)."""
        self.ended = time.monotonic() if now is None else now
        for hist in self._hists.values():
            hist.pack()

    @property
    def duration(self) -> float:
        end = self.ended if self.ended is not None else self._last_end
        return max(end - self.started, 0.0)

    @property
    def sender_behind(self) -> bool:
        """Open model: the sender put out more than SENDER_BEHIND_SHARE of the calls late."""
        calls = self.calls
        return bool(self.sent_late) and calls > 0 and (self.sent_late or 0) > SENDER_BEHIND_SHARE * calls

    def set_client_cpu(self, percent: float, bound: bool) -> None:
        self.client_cpu_percent = percent
        self.client_bound = bound

    def histogram(self, kind: str | None = None, outcomes: Iterable[str] | None = None) -> Histogram:
        """Latencies (µs) of this step's calls, optionally only of one kind and/or some outcomes."""
        wanted = None if outcomes is None else frozenset(outcomes)
        return Histogram.combined(
            h for (k, o), h in self._hists.items() if (kind is None or k == kind) and (wanted is None or o in wanted)
        )

    def outcome_counts(self, kind: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (k, o), h in self._hists.items():
            if kind is None or k == kind:
                counts[o] = counts.get(o, 0) + h.count
        return _outcome_counts(counts)

    @property
    def calls(self) -> int:
        return sum(h.count for h in self._hists.values())

    @property
    def kinds(self) -> list[str]:
        return sorted({k for k, _ in self._hists})

    def outcome(self) -> StepOutcome:
        """What the escalation policy needs to judge this step."""
        counts = self.outcome_counts()
        calls = sum(counts.values())
        duration = self.duration
        return StepOutcome(
            level=self.level,
            calls=calls,
            error_rate=sum(counts[o] for o in ERROR_OUTCOMES) / calls if calls else 0.0,
            overload_rate=counts["overload"] / calls if calls else 0.0,
            p99_ms=self.histogram().percentile(99.0) / 1000 if calls else 0.0,
            throughput=counts["ok"] / duration if duration > 0 else 0.0,
            client_bound=self.client_bound,
        )

    def to_dict(self) -> dict[str, Any]:
        """The step as report.json's `phases.<name>.steps[]` holds it (docs/report-schema.md).

        level, model ("closed" | "open"), concurrency (closed: the callers;
        open: None), offered_rate (open: calls/s meant; closed: None),
        duration_s, calls, outcomes {all six: n}, throughput (ok answers/s),
        achieved_rate (answers of any outcome/s, Little's law's rate),
        latency_ms {p50, p90, p99, p999, max, mean} of every answered call from
        its intended send time, latency_hdr (the same histogram, µs, in
        HdrHistogram's compressed V2 encoding; None without calls),
        client_cpu_percent, client_bound, sent_late and sender_behind (open
        model; closed: None and False), kinds {kind: {calls, outcomes,
        latency_ms}}, details {"outcome:detail": n} and, when the server sent
        answers no call could carry, violations {kind: n}.
        """
        counts = self.outcome_counts()
        calls = sum(counts.values())
        duration = self.duration
        kinds: dict[str, Any] = {}
        for kind in self.kinds:
            kcounts = self.outcome_counts(kind)
            kinds[kind] = {
                "calls": sum(kcounts.values()),
                "outcomes": kcounts,
                "latency_ms": self.histogram(kind).summary(),
            }
        # Rates come from the duration as reported, so a reader dividing counts by it gets the same rates
        # (a sub-millisecond step keeps microseconds rather than rounding to zero).
        shown = round(duration, 3) or round(duration, 6)
        hist = self.histogram()
        return {
            "level": self.level,
            "model": self.model,
            "concurrency": self.concurrency,
            "offered_rate": self.offered_rate,
            "duration_s": shown,
            "calls": calls,
            "outcomes": counts,
            "throughput": round(counts["ok"] / shown, 3) if shown > 0 else 0.0,
            "achieved_rate": round(calls / shown, 3) if shown > 0 else 0.0,
            "latency_ms": hist.summary(),
            "latency_hdr": hist.encode() if hist.count else None,
            "client_cpu_percent": self.client_cpu_percent,
            "client_bound": self.client_bound,
            "sent_late": self.sent_late,
            "sender_behind": self.sender_behind,
            "kinds": kinds,
            "details": {f"{o}:{d}": n for (o, d), n in sorted(self.details.items())},
            **({"violations": dict(sorted(self.violations.items()))} if self.violations else {}),
        }

    # ---- merging ----

    def add(self, other: StepRecorder, shift: float) -> None:
        """Add a worker's share of the same step; `shift` converts its times into this recorder's clock."""
        if (other.phase, other.index) != (self.phase, self.index):
            raise ValueError(f"cannot merge step {other.phase}#{other.index} into {self.phase}#{self.index}")
        self.level += other.level
        if other.concurrency is not None:
            self.concurrency = (self.concurrency or 0) + other.concurrency
        if other.offered_rate is not None:
            self.offered_rate = (self.offered_rate or 0.0) + other.offered_rate
        self.started = min(self.started, other.started + shift)
        if other.ended is not None:
            end = other.ended + shift
            self.ended = end if self.ended is None else max(self.ended, end)
        self._last_end = max(self._last_end, other._last_end + shift)
        for key, h in other._hists.items():
            mine = self._hists.get(key)
            if mine is None:
                mine = self._hists[key] = Histogram()
            mine.add(h)
        for dkey, n in other.details.items():
            self.details[dkey] = self.details.get(dkey, 0) + n
        if other.client_cpu_percent is not None:
            self.client_cpu_percent = max(self.client_cpu_percent or 0.0, other.client_cpu_percent)
        self.client_bound = self.client_bound or other.client_bound
        if other.sent_late is not None:
            self.sent_late = (self.sent_late or 0) + other.sent_late
        self.add_violations(other.violations)

    def to_state(self, t0: float) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "index": self.index,
            "level": self.level,
            "model": self.model,
            "offered_rate": self.offered_rate,
            "concurrency": self.concurrency,
            "started": self.started - t0,
            "ended": None if self.ended is None else self.ended - t0,
            "last_end": self._last_end - t0,
            "hists": [[k, o, h.to_state()] for (k, o), h in sorted(self._hists.items())],
            "details": [[o, d, n] for (o, d), n in sorted(self.details.items())],
            "client_cpu_percent": self.client_cpu_percent,
            "client_bound": self.client_bound,
            "sent_late": self.sent_late,
            "violations": dict(self.violations),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], series: TimeSeries) -> StepRecorder:
        t0 = series.t0
        model = state["model"]
        if model not in ("closed", "open"):
            raise ValueError(f"bad step model {model!r}")
        step = cls(
            series,
            str(state["phase"]),
            int(state["index"]),
            float(state["level"]),
            model,
            None if state["offered_rate"] is None else float(state["offered_rate"]),
            t0 + float(state["started"]),
        )
        step.concurrency = None if state["concurrency"] is None else int(state["concurrency"])
        step.ended = None if state["ended"] is None else t0 + float(state["ended"])
        step._last_end = t0 + float(state["last_end"])
        step._hists = {(str(k), str(o)): Histogram.from_state(h) for k, o, h in state["hists"]}
        step.details = {(str(o), str(d)): int(n) for o, d, n in state["details"]}
        cpu = state["client_cpu_percent"]
        step.client_cpu_percent = None if cpu is None else float(cpu)
        step.client_bound = bool(state["client_bound"])
        late = state.get("sent_late")
        step.sent_late = None if late is None else int(late)
        step.violations = {str(k): int(n) for k, n in (state.get("violations") or {}).items()}
        return step


class Recorder:
    """A run's measurements: its steps and its 1-second time series.

    `t0` (a `time.monotonic()` value, default now) is the origin of the time
    series and of the step times in `to_dict()`. Worker processes should be
    given the parent's `t0_wall` (a `time.time()` value) so their series line up
    exactly; `t0` is then derived from it.
    """

    __slots__ = ("series", "steps", "t0", "t0_wall")

    def __init__(self, *, t0: float | None = None, t0_wall: float | None = None) -> None:
        mono, wall = time.monotonic(), time.time()
        if t0 is None:
            t0 = mono if t0_wall is None else mono - (wall - t0_wall)
        self.t0 = t0
        self.t0_wall = wall - (mono - t0) if t0_wall is None else t0_wall
        self.series = TimeSeries(t0)
        self.steps: list[StepRecorder] = []

    def step(
        self,
        phase: str,
        level: float,
        *,
        model: StepModel = "closed",
        offered_rate: float | None = None,
        concurrency: int | None = None,
        now: float | None = None,
    ) -> StepRecorder:
        """Open a new step (it starts now, or at `now`); record its calls with the returned `StepRecorder`.

        `level` is what the phase escalates: callers, calls/s or MB. An open
        step's `offered_rate` defaults to its level; a closed step's
        `concurrency` (its callers) defaults to its level rounded.
        """
        if model == "open":
            offered_rate = level if offered_rate is None else offered_rate
        elif concurrency is None:
            concurrency = max(round(level), 1)
        started = time.monotonic() if now is None else now
        step = StepRecorder(self.series, phase, len(self.steps), level, model, offered_rate, started, concurrency)
        self.steps.append(step)
        return step

    def record(self, r: CallResult) -> None:
        """Record a call that belongs to no step (discovery, a probe): it shows in the time series only."""
        us = int((r.end - r.intended) * _US + 0.5)  # nearest µs: float differences land just below
        us = 0 if us < 0 else min(us, HIGHEST_US)
        self.series.add(r, us)

    def phase_steps(self, phase: str) -> list[StepRecorder]:
        return [s for s in self.steps if s.phase == phase]

    def totals(self) -> dict[str, Any]:
        """All steps together: calls, outcomes, latency (also HDR-encoded) and the same per operation kind."""
        counts: dict[str, int] = {}
        per_kind: dict[str, dict[str, int]] = {}
        for step in self.steps:
            for (k, o), h in step._hists.items():
                counts[o] = counts.get(o, 0) + h.count
                kc = per_kind.setdefault(k, {})
                kc[o] = kc.get(o, 0) + h.count
        kinds: dict[str, Any] = {}
        for kind in sorted(per_kind):
            kcounts = _outcome_counts(per_kind[kind])
            kinds[kind] = {
                "calls": sum(kcounts.values()),
                "outcomes": kcounts,
                "latency_ms": Histogram.combined(s.histogram(kind) for s in self.steps).summary(),
            }
        outcomes = _outcome_counts(counts)
        whole = Histogram.combined(s.histogram() for s in self.steps)
        return {
            "calls": sum(outcomes.values()),
            "outcomes": outcomes,
            "latency_ms": whole.summary(),
            "latency_hdr": whole.encode() if whole.count else None,
            "kinds": kinds,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-able, in report.json's terms.

        {"t0_wall": Unix time of t = 0,
         "phases": {name: {"offset_s": its first step's start since t0,
                           "duration_s": to its last step's end,
                           "steps": [StepRecorder.to_dict(), ...]}},   (in the order the phases ran)
         "timeseries": TimeSeries.rows(),
         "totals": totals()}
        """
        phases: dict[str, Any] = {}
        for name in dict.fromkeys(s.phase for s in self.steps):
            steps = self.phase_steps(name)
            start = min(s.started for s in steps)
            end = max(s.started + s.duration for s in steps)
            phases[name] = {
                "offset_s": round(start - self.t0, 3),
                "duration_s": round(end - start, 3),
                "steps": [s.to_dict() for s in steps],
            }
        return {"t0_wall": self.t0_wall, "phases": phases, "timeseries": self.series.rows(), "totals": self.totals()}

    # ---- worker processes ----

    def to_state(self) -> dict[str, Any]:
        """Everything needed to rebuild and merge this recorder in another process: JSON-able and picklable."""
        return {
            "version": STATE_VERSION,
            "t0_wall": self.t0_wall,
            "steps": [s.to_state(self.t0) for s in self.steps],
            "series": self.series.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Recorder:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported recorder state version {state.get('version')!r}")
        rec = cls(t0_wall=float(state["t0_wall"]))
        rec.series.load_state(state["series"])
        rec.steps = [StepRecorder.from_state(s, rec.series) for s in state["steps"]]
        return rec

    def merge(self, other: Recorder) -> None:
        """Add another worker's recorder of the same run into this one.

        Steps are matched by position and must have the same phase; a step
        only `other` has is appended. Within a matched step histograms, counts
        and details add; `level` and `offered_rate` add too (each worker ran its
        share of the load); the span is the union of both spans;
        `client_cpu_percent` is the larger (per process: the busiest process is
        the one that limits) and `client_bound` is true if either was. The time
        series add second by second, aligned by the recorders' wall-clock
        origins (rounded to a whole second: give workers the parent's
        `t0_wall` and the shift is zero).
        """
        shift = other.t0_wall - self.t0_wall
        for theirs in other.steps[: len(self.steps)]:
            mine = self.steps[theirs.index]
            if mine.phase != theirs.phase:
                # Checked before anything is added, so a refused merge leaves this recorder as it was.
                raise ValueError(f"step {theirs.index} is {theirs.phase!r} there and {mine.phase!r} here")
        for theirs in other.steps:
            if theirs.index < len(self.steps):
                self.steps[theirs.index].add(theirs, shift)
            else:
                copy = StepRecorder.from_state(theirs.to_state(other.t0), self.series)
                copy.started += shift
                copy._last_end += shift
                if copy.ended is not None:
                    copy.ended += shift
                copy.index = len(self.steps)
                self.steps.append(copy)
        self.series.merge(other.series, round(shift))

    @classmethod
    def merged(cls, states: Iterable[dict[str, Any]]) -> Recorder:
        """One recorder from the `to_state()` of several workers (the first one's origin is kept)."""
        result: Recorder | None = None
        for state in states:
            rec = cls.from_state(state)
            if result is None:
                result = rec
            else:
                result.merge(rec)
        if result is None:
            raise ValueError("nothing to merge")
        return result
