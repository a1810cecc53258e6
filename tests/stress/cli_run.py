"""Running the real CLI (`python -m bemcp stress ...` in a subprocess) and checking what every run must leave."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from bemcp.stress.report import read_json, run_checks, validate
from tests.procs import ROOT

REPORT_FILES = ("report.json", "report.md", "report.html", "stress.log")


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("FORCE_COLOR", None)
    return env


def stress(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    """`python -m bemcp stress ARGS` from the repository root (stdio targets like `-m tests...` resolve there)."""
    return subprocess.run(
        [sys.executable, "-m", "bemcp", "stress", *args],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert "Traceback" not in proc.stdout, proc.stdout[-4000:]


def a_verdict(proc: subprocess.CompletedProcess[str]) -> None:
    """Exit 0 (PASS) or 1 (FAIL), never 2 (a usage error) nor a crash, and no traceback."""
    no_traceback(proc)
    assert proc.returncode in (0, 1), f"exit {proc.returncode}\n{proc.stderr[-4000:]}"


def check_outputs(out: Path, proc: subprocess.CompletedProcess[str], cwd: Path | None = None) -> dict[str, Any]:
    """All four files, a report that matches its schema and passes its consistency checks; returns it.

    `out` is the folder as the CLI names it; a relative one (the default, bemcp-reports/...) is under `cwd`, the
    folder the run started in."""
    shown, out = out, (cwd / out if cwd is not None else out)
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, f"{name} missing in {out}"
    report = read_json(out / "report.json")
    assert validate(report) == []
    checks = run_checks(report)
    assert checks["passed"] is True, [c for c in checks["checks"] if not c["passed"]]
    assert report["consistency"]["passed"] is True
    # The exit code is the verdict, and PASS needs the consistency checks.
    status = report["verdict"]["status"]
    assert proc.returncode == (0 if status == "PASS" else 1)
    assert f"verdict: {status}" in proc.stdout
    for name in REPORT_FILES:
        assert str(shown / name) in proc.stdout  # the CLI says where the reports are
    # The Markdown and HTML render the same run; the HTML is self-contained (inline SVG plots, no fetches).
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert report["target"]["spec"] in md and f"**Verdict: {status}" in md
    assert html.lstrip().lower().startswith("<!doctype html") and report["run"]["id"] in html
    assert "<svg" in html or not report["timeseries"]  # a run that never reached its target has nothing to plot
    assert "<script src" not in html and "<link " not in html
    events = [orjson.loads(line) for line in (out / "stress.log").read_text().splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    assert events[-1]["verdict"] == status
    # A phase that broke inside the tester is reported as a finding; none may have.
    assert not [f for f in report["findings"] if "failed in the tester" in f["message"]], report["findings"]
    return report
