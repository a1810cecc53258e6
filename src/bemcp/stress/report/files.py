"""Finishing a report (summary, consistency, verdict) and writing its three files."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checks import run_checks
from .html import render_html
from .jsonio import write_json
from .markdown import render_markdown
from .summary import build_summary
from .verdict import build_verdict


def finalize(
    report: dict[str, Any], latency_ms: Mapping[str, float] | None = None, latency_hdr: str | None = None
) -> dict[str, Any]:
    """Fill in what is derived from the measurements, in order: the summary (unless the runner set one), the
    consistency checks, then the verdict (which depends on them). Returns the same dict. `latency_ms` and
    `latency_hdr` are the whole run's percentiles and HDR encoding, from the merged histograms.

    Never raises for a malformed report: a tester must still write a report (saying it is invalid) rather than
    crash at the end of a run."""
    if "summary" not in report:
        # An off-schema report may break the summary: the schema check below then says what is wrong (FAIL).
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            report["summary"] = build_summary(report, latency_ms, latency_hdr)
    report["consistency"] = run_checks(report)
    report["verdict"] = build_verdict(report)
    return report


def write_all(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into `out_dir` (created if missing); finalizes the report
    first when it has no verdict yet. Returns {"json": path, "md": path, "html": path}."""
    if "verdict" not in report or "consistency" not in report:
        finalize(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    write_json(report, paths["json"])
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    return paths
