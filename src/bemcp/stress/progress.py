"""Terminal output: rich when stderr is a terminal, plain lines otherwise, nothing but the verdict with --quiet."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


class Progress:
    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.start = time.monotonic()
        self._console: Any = None
        if sys.stderr.isatty():
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)

    def say(self, line: str) -> None:
        if self.quiet:
            return
        stamp = f"[{time.monotonic() - self.start:6.1f}s]"
        if self._console is not None:
            style = "bold cyan" if line.startswith("phase ") else "dim" if line.startswith("  ") else ""
            self._console.print(f"[dim]{stamp}[/dim] [{style}]{line}[/{style}]" if style else f"{stamp} {line}")
        else:
            print(f"{stamp} {line}", file=sys.stderr, flush=True)

    def verdict(self, report: dict[str, Any], paths: dict[str, Path]) -> None:
        status = report["verdict"]["status"]
        lines = [f"verdict: {status}"]
        for c in report["verdict"]["criteria"]:
            mark = {True: "pass", False: "FAIL", None: "n/a"}[c.get("passed")]
            lines.append(f"  {mark:<4} {c['name']}: {c.get('measured')} (threshold {c.get('threshold')})")
        if not report["consistency"]["passed"]:
            lines.append("  the report FAILED its consistency checks (see report.md)")
        lines.append("reports:")
        lines += [f"  {kind:<4} {path}" for kind, path in paths.items()]
        for line in lines if not self.quiet else [lines[0], *lines[-len(paths) - 1 :]]:
            print(line, flush=True)
