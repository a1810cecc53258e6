"""Terminal output: a live status line (rich) when stderr is a terminal, plain lines otherwise, and with
--quiet nothing but the verdict and where the reports are.

The live line shows the running step: phase, level, seconds in, calls
answered, and the last complete second's ok/s, errors and p99 (from the run's
time series). It is redrawn four times a second by a task the `Progress`
owns between `follow()` and `unfollow()`; lines said meanwhile scroll above
it. With --workers, the live counts are this process's share until the step
ends (the workers' shares are merged then); the step's line is the whole.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from bemcp.stress.recorder import Recorder

REFRESH_S = 0.25


class Progress:
    def __init__(self, *, quiet: bool = False, live: bool | None = None) -> None:
        self.quiet = quiet
        self.start = time.monotonic()
        self._console: Any = None
        tty = sys.stderr.isatty() if live is None else live
        if tty and not quiet:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        self._live: Any = None
        self._task: asyncio.Task[None] | None = None
        self._recorder: Recorder | None = None
        self._workers = 1

    def say(self, line: str) -> None:
        if self.quiet:
            return
        stamp = f"[{time.monotonic() - self.start:6.1f}s]"
        if self._console is not None:
            if self._live is not None:  # a step just ended: its live line goes before the line about it
                self._live.update(self.status())
            style = "bold cyan" if line.startswith("phase ") else "dim" if line.startswith("  ") else ""
            self._console.print(f"[dim]{stamp}[/dim] [{style}]{line}[/{style}]" if style else f"{stamp} {line}")
        else:
            print(f"{stamp} {line}", file=sys.stderr, flush=True)

    # ---- the live line ----

    async def follow(self, recorder: Recorder, *, workers: int = 1) -> None:
        """Start redrawing the live line from `recorder` (only on a terminal; a no-op when already following)."""
        if self._console is None or self._task is not None:
            return
        from rich.live import Live

        self._recorder, self._workers = recorder, workers
        self._live = Live(console=self._console, auto_refresh=False, transient=True)
        self._live.start()
        self._task = asyncio.get_running_loop().create_task(self._redraw(), name="bemcp-stress-progress")

    async def unfollow(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._live is not None:
            self._live.stop()
            self._live = None

    async def _redraw(self) -> None:
        while True:
            self._live.update(self.status(), refresh=True)
            await asyncio.sleep(REFRESH_S)

    def status(self) -> str:
        """The live line for the step running now ("" between steps)."""
        rec = self._recorder
        if rec is None or not rec.steps or rec.steps[-1].ended is not None:
            return ""
        step = rec.steps[-1]
        now = time.monotonic()
        unit = "callers" if step.model == "closed" else "calls/s"
        parts = [
            f"[bold]{step.phase}[/bold] step {step.index + 1}: {step.level:,.6g} {unit}",
            f"{now - step.started:4.1f} s",
            f"{step.calls:,} answered" + (" (this process)" if self._workers > 1 else ""),
        ]
        last = rec.series.row(int(now - rec.t0) - 1)  # the last complete second
        if last is not None:
            errors = sum(last["errors"].values())
            p99 = "-" if last["p99_ms"] is None else f"{last['p99_ms']:,.1f} ms"
            parts.append(f"last second: {last['achieved']:,} ok, {errors:,} not ok, p99 {p99}")
        return "[cyan]>[/cyan] " + "  ·  ".join(parts)

    # ---- the end ----

    def verdict(self, report: dict[str, Any], paths: dict[str, Path]) -> None:
        from bemcp.stress.report.narrative import load_sentence, measured

        status = report["verdict"]["status"]
        lines = [f"verdict: {status}"]
        sentence = load_sentence(report)
        if sentence is not None:
            lines.append(f"  {sentence}")
        for c in report["verdict"]["criteria"]:
            mark = {True: "pass", False: "FAIL", None: "n/a"}[c.get("passed")]
            lines.append(f"  {mark:<4} {c['name']}: {measured(c)} (threshold {c.get('threshold')})")
        if not report["consistency"]["passed"]:
            lines.append("  the report FAILED its consistency checks (see report.md)")
        lines.append("reports:")
        lines += [f"  {kind:<4} {path}" for kind, path in paths.items()]
        for line in lines if not self.quiet else [lines[0], *lines[-len(paths) - 1 :]]:
            print(line, flush=True)
