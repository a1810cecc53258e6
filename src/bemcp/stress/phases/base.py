"""What every phase gets to work with, and what it gives back."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bemcp.stress.discovery import Discovery
from bemcp.stress.load import SENDER_LATE_S, SessionPool, closed_calls, open_calls
from bemcp.stress.mix import Mix
from bemcp.stress.model import Finding, Thresholds
from bemcp.stress.profiles import Profile
from bemcp.stress.recorder import Recorder, StepRecorder
from bemcp.stress.sampler import Sampler
from bemcp.stress.selection import LoadPlan
from bemcp.stress.targets import Target
from bemcp.stress.workerpool import WorkerPool


@dataclass(slots=True)
class PhaseOutcome:
    status: str  # completed | aborted | skipped
    level_unit: str
    results: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StepMark:
    """Where a step started: the load generator's CPU and the target's tally of answers no call could carry."""

    cpu: Any
    tally: dict[str, int]


@dataclass(slots=True)
class PhaseContext:
    target: Target
    discovery: Discovery
    recorder: Recorder
    sampler: Sampler
    pool: SessionPool
    thresholds: Thresholds
    profile: Profile
    rng: random.Random
    findings: list[Finding]
    say: Callable[[str], None]  # progress lines for the terminal
    deaths: list[dict[str, Any]]
    plan: LoadPlan  # what the load steps call (selection.plan_load)
    workers: WorkerPool = field(default_factory=lambda: WorkerPool(1))  # --workers: who applies the load
    memo: dict[str, Any] = field(default_factory=dict)  # what one phase learns for the next (e.g. throughput)
    # This process's share of the tally that steps have been given; the rest came outside any step.
    attributed: dict[str, int] = field(default_factory=dict)
    chaos_restart: bool = False  # --chaos-restart: the tasks phase kills the (supervised) embedded server once
    state_dir: Path | None = None  # the embedded server's --state-dir (its task store), when the tester chose it

    def load_call(self) -> Mix:
        return self.plan.mix

    async def closed(self, phase: str, level: int, duration: float, mix: Mix) -> StepRecorder:
        step = self.recorder.step(phase, level, model="closed", concurrency=level)
        mark = self.mark()
        calls = closed_calls(level, mix, self.rng, period=mix.period)
        await self.workers.closed(self.recorder, step, self.pool, calls, duration, self.profile.call_timeout_s)
        self.finish_step(step, mark)
        return step

    async def open(self, phase: str, rate: float, duration: float, mix: Mix) -> StepRecorder:
        step = self.recorder.step(phase, rate, model="open", offered_rate=rate)
        mark = self.mark()
        calls = open_calls(rate, duration, mix, self.rng, period=mix.period)
        await self.workers.open(self.recorder, step, self.pool, calls, rate, duration, self.profile.call_timeout_s)
        self.finish_step(step, mark)
        return step

    def mark(self) -> StepMark:
        """Take at a step's start; `finish_step` gives the step what happened since."""
        return StepMark(self.sampler.cpu_mark(), self.target.tally.snapshot())

    def finish_step(self, step: StepRecorder, mark: StepMark) -> None:
        """End the step (unless its load already did) and show it; its client CPU spans every load process, and
        what the server sent that no call could carry (this process's share; workers add theirs) is the step's."""
        if step.ended is None:
            step.finish()
        seen = self.target.tally.since(mark.tally)
        step.add_violations(seen)
        for kind, n in seen.items():
            self.attributed[kind] = self.attributed.get(kind, 0) + n
        cpu = self.sampler.cpu_since(mark.cpu)
        step.set_client_cpu(cpu.percent, cpu.bound)
        o = step.outcome()
        flag = "  CLIENT-BOUND" if cpu.bound else ""
        if step.sender_behind:
            flag += f"  SENDER-BEHIND ({step.sent_late:,} of {step.calls:,} sent > {SENDER_LATE_S * 1000:g} ms late)"
        self.say(
            f"  {step.phase:<9} level {o.level:>8g}: {o.calls:>7} calls  {o.throughput:>9,.0f} ok/s  "
            f"p99 {o.p99_ms:>8.1f} ms  errors {o.error_rate:6.2%}  overload {o.overload_rate:6.2%}{flag}"
        )

    async def alive(self, phase: str) -> bool:
        """Whether the target still answers; a death is recorded once, as a finding."""
        if await self.target.alive():
            return True
        if not any(d["phase"] == phase for d in self.deaths):
            t = round(time.monotonic() - self.recorder.t0, 3)
            self.deaths.append({"t": t, "phase": phase, "detail": "the target stopped answering"})
            self.findings.append(Finding("critical", phase, "The target died during the run.", {"t": t}))
        return False
