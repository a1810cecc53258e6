"""`bemcp stress compare OLD.json NEW.json [--threshold 10%]`: a table of what changed, exit 1 on a regression.

Gated metrics (a regression past the threshold fails the comparison):
- throughput: peak and sustained, and each tsunami/rate/soak step matched by phase and level;
- latency p50 and p99 of those matched steps (and of the whole run when both reports have it);
- limits: max sustainable concurrency, saturation rate (none = never saturated, better than any rate);
- error rates, whole run and per load phase;
- tasks: max concurrent tasks, and lost tasks (any more than before is a regression, whatever the threshold).
Shown but not gated, because they move with the run's shape rather than the server: the average throughput
(it depends on the levels the adaptive ramp chose), steps past the old run's own limits (overload makes them
noisy), the chaos error rate (errors by design), the largest accepted allocation, and the tasks' completion times
at matched levels (polling quantizes them to the poll interval). A report without a tasks phase compares as
before: the tasks rows need the phase in both.

A report that fails its own consistency checks cannot vouch for its numbers, so neither can a comparison with it:
each report's checks are run again on the file (a report edited after it was written fails them even if it says
it passed) and read from it, and if either fails the table is still printed but the exit code is 3.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from bemcp.stress.model import ERROR_OUTCOMES
from bemcp.stress.report import fmt
from bemcp.stress.report.checks import run_checks
from bemcp.stress.report.jsonio import ReportFileError, read_json
from bemcp.stress.report.models import ReportData

Kind = Literal["rate", "latency", "level", "error_rate", "mb", "count"]

# A latency change smaller than this is timer noise on a fast server, whatever its relative size.
LATENCY_FLOOR_MS = 1.0
# Steps with fewer calls have percentiles too coarse to compare.
MIN_STEP_CALLS = 20
LOAD_PHASES = ("tsunami", "rate", "soak")


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    old: float | None
    new: float | None
    kind: Kind
    higher_is_better: bool
    gated: bool
    change: float | None  # relative change (new - old) / old; None when it has no meaning
    worse: bool  # moved the wrong way past the threshold
    improved: bool  # moved the right way past the threshold

    @property
    def regressed(self) -> bool:
        return self.gated and self.worse


def parse_threshold(text: str) -> float:
    """`10%` or `10` → 0.10. Raises ValueError for anything else."""
    value = float(text.strip().removesuffix("%"))
    if not 0 <= value < 1000:
        raise ValueError(f"threshold {text!r} must be a percentage between 0 and 1000")
    return value / 100


def _row(
    metric: str,
    old: float | None,
    new: float | None,
    kind: Kind,
    *,
    higher: bool,
    gated: bool,
    threshold: float,
    budget: float,
    none_is_best: bool = False,
) -> Row:
    change = (new - old) / old if old is not None and new is not None and old != 0 else None
    worse = better = False
    if old is None or new is None:
        if none_is_best and old != new:
            # A rate that never saturated (None) is better than any rate that did.
            worse, better = old is None, new is None
    elif kind == "count":
        # A count that must stay at zero (lost tasks): any increase is worse, any decrease better.
        worse, better = (new > old, new < old) if higher is False else (new < old, new > old)
    elif kind == "error_rate":
        # Error rates move on the scale of the error budget: 0 → 0.05% is noise, 0 → 0.5% is not.
        scale = max(old, budget)
        worse, better = new - old > threshold * scale, old - new > threshold * scale
    else:
        delta = (new - old) if higher else (old - new)  # positive = better
        base = abs(old) if old else 0.0
        floor = LATENCY_FLOOR_MS if kind == "latency" else 0.0
        worse = -delta > max(threshold * base, floor) and (base > 0 or kind == "latency")
        better = delta > max(threshold * base, floor) and (base > 0 or kind == "latency")
    return Row(metric, old, new, kind, higher, gated, change, worse, better)


def _phase(report: ReportData, name: str) -> Mapping[str, Any] | None:
    phase = (report.get("phases") or {}).get(name)
    return phase if isinstance(phase, dict) else None


def _result(report: ReportData, phase: str, key: str) -> Any:
    p = _phase(report, phase)
    return (p.get("results") or {}).get(key) if p else None


def _error_rate(steps: Sequence[Mapping[str, Any]]) -> float | None:
    calls = sum(int(s["calls"]) for s in steps)
    errors = sum(int(s["outcomes"].get(o, 0)) for s in steps for o in ERROR_OUTCOMES)
    return errors / calls if calls else None


def _good(step: Mapping[str, Any], thresholds: Mapping[str, Any]) -> bool:
    rate = _error_rate([step]) or 0.0
    return float(step["latency_ms"]["p99"]) <= float(thresholds["slo_p99_ms"]) and rate <= thresholds["error_budget"]


def compare(old: ReportData, new: ReportData, threshold: float) -> tuple[list[Row], bool]:
    """The comparison table and whether any gated metric regressed by more than `threshold` (a fraction)."""
    budget = float(old["thresholds"]["error_budget"])
    rows: list[Row] = []

    def add(
        metric: str, o: Any, n: Any, kind: Kind, *, higher: bool, gated: bool = True, none_is_best: bool = False
    ) -> None:
        if o is None and n is None and not none_is_best:
            return
        rows.append(
            _row(
                metric,
                o,
                n,
                kind,
                higher=higher,
                gated=gated,
                threshold=threshold,
                budget=budget,
                none_is_best=none_is_best,
            )
        )

    so, sn = old["summary"], new["summary"]
    add("peak throughput", so["peak_throughput"], sn["peak_throughput"], "rate", higher=True)
    add("sustained throughput", so["sustained_throughput"], sn["sustained_throughput"], "rate", higher=True)
    add("average throughput", so["average_throughput"], sn["average_throughput"], "rate", higher=True, gated=False)
    add("error rate (whole run)", so["error_rate"], sn["error_rate"], "error_rate", higher=False)
    lo, ln = so.get("latency_ms"), sn.get("latency_ms")
    if lo and ln:
        add("p50 (whole run)", lo["p50"], ln["p50"], "latency", higher=False)
        add("p99 (whole run)", lo["p99"], ln["p99"], "latency", higher=False)
    if _phase(old, "tsunami") or _phase(new, "tsunami"):
        add(
            "tsunami: max sustainable concurrency",
            _result(old, "tsunami", "max_sustainable_concurrency"),
            _result(new, "tsunami", "max_sustainable_concurrency"),
            "level",
            higher=True,
        )
    if _phase(old, "rate") and _phase(new, "rate"):
        add(
            "rate: saturation rate",
            _result(old, "rate", "saturation_rate"),
            _result(new, "rate", "saturation_rate"),
            "rate",
            higher=True,
            none_is_best=True,
        )
    if _phase(old, "avalanche") and _phase(new, "avalanche"):
        add(
            "avalanche: largest accepted allocation",
            _result(old, "avalanche", "largest_accepted_mb"),
            _result(new, "avalanche", "largest_accepted_mb"),
            "mb",
            higher=True,
            gated=False,
        )
    _tasks_rows(old, new, add)
    for name in (*LOAD_PHASES, "chaos"):
        po, pn = _phase(old, name), _phase(new, name)
        if po and pn:
            add(
                f"{name}: error rate",
                _error_rate(po["steps"]),
                _error_rate(pn["steps"]),
                "error_rate",
                higher=False,
                gated=name != "chaos",
            )
    for name in LOAD_PHASES:
        po, pn = _phase(old, name), _phase(new, name)
        if not (po and pn):
            continue
        new_steps = {(s["model"], float(s["level"])): s for s in pn["steps"]}
        for s_old in sorted(po["steps"], key=lambda s: float(s["level"])):
            s_new = new_steps.get((s_old["model"], float(s_old["level"])))
            if s_new is None or min(s_old["calls"], s_new["calls"]) < MIN_STEP_CALLS:
                continue
            gated = _good(s_old, old["thresholds"])
            unit = "calls/s" if s_old["model"] == "open" else "callers"
            label = f"{name} @ {fmt.number(s_old['level'])} {unit}"
            add(f"{label}: throughput", s_old["throughput"], s_new["throughput"], "rate", higher=True, gated=gated)
            add(
                f"{label}: p50",
                s_old["latency_ms"]["p50"],
                s_new["latency_ms"]["p50"],
                "latency",
                higher=False,
                gated=gated,
            )
            add(
                f"{label}: p99",
                s_old["latency_ms"]["p99"],
                s_new["latency_ms"]["p99"],
                "latency",
                higher=False,
                gated=gated,
            )
    return rows, any(r.regressed for r in rows)


def _tasks_rows(old: ReportData, new: ReportData, add: Any) -> None:
    """The tasks phase's rows, when both reports ran it (an older report without it is left out)."""
    po, pn = _phase(old, "tasks"), _phase(new, "tasks")
    if not (po and pn) or po.get("status") == "skipped" or pn.get("status") == "skipped":
        return
    ro, rn = po.get("results") or {}, pn.get("results") or {}
    add(
        "tasks: max concurrent tasks",
        ro.get("max_concurrent_tasks"),
        rn.get("max_concurrent_tasks"),
        "level",
        higher=True,
    )
    add("tasks: lost", ro.get("lost"), rn.get("lost"), "count", higher=False, none_is_best=False)
    new_steps = {int(s["level"]): s for s in rn.get("steps") or []}
    for s_old in ro.get("steps") or []:
        s_new = new_steps.get(int(s_old["level"]))
        done_old, done_new = s_old.get("complete_ms"), (s_new or {}).get("complete_ms")
        if s_new is None or not done_old or not done_new:
            continue
        label = f"tasks @ {fmt.integer(s_old['level'])} tasks: completion p50"
        add(label, done_old["p50"], done_new["p50"], "latency", higher=False, gated=False)


def _show(value: float | None, kind: Kind, none_label: str = "—") -> str:
    if value is None:
        return none_label
    if kind == "rate":
        return fmt.rate(value)
    if kind == "latency":
        return fmt.ms(value)
    if kind == "error_rate":
        return fmt.pct(value)
    if kind == "mb":
        return f"{fmt.number(value)} MB"
    if kind == "count":
        return fmt.integer(value)
    return fmt.number(value)


def format_table(rows: Sequence[Row]) -> str:
    """Plain aligned text: it goes to terminals, CI logs and files alike."""
    table = [("metric", "old", "new", "change", "")]
    for r in rows:
        none = "none" if r.metric.startswith("rate: saturation") else "—"
        change = f"{r.change:+.1%}" if r.change is not None else "n/a"
        if r.regressed:
            mark = "REGRESSED"
        elif r.worse:
            mark = "worse (not gated)"
        elif r.improved:
            mark = "better"
        else:
            mark = "" if r.gated else "(not gated)"
        table.append((r.metric, _show(r.old, r.kind, none), _show(r.new, r.kind, none), change, mark))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = []
    for i, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [row[c].rjust(widths[c]) for c in (1, 2, 3)] + [row[4]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _describe(report: ReportData) -> str:
    run, target = report["run"], report["target"]
    return f"run {run['id']} ({target['spec']}, profile {run['profile']}, {run['started_at']})"


def compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bemcp stress compare",
        description="Compare two report.json files; exit 1 if a gated metric regressed past the threshold, 3 if "
        "either report fails its consistency checks.",
    )
    parser.add_argument("old", type=Path, metavar="OLD.json", help="the baseline report.json")
    parser.add_argument("new", type=Path, metavar="NEW.json", help="the report.json to judge")
    parser.add_argument(
        "--threshold", default="10%", metavar="PCT", help="the allowed change, in percent (default 10%%)"
    )
    return parser


def compare_main(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The `bemcp stress compare` command: 0 no regression, 1 a regression, 2 a usage or file error, 3 a report
    that fails its consistency checks (the comparison cannot vouch for it)."""
    out, err = out or sys.stdout, err or sys.stderr
    parser = compare_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as e:  # argparse already printed the usage line
        return int(e.code or 0) if isinstance(e.code, int) else 2
    try:
        threshold = parse_threshold(args.threshold)
    except ValueError:
        print(f"bemcp stress compare: bad --threshold {args.threshold!r} (expected e.g. 10%)", file=err)
        return 2
    try:
        old, new = read_json(args.old), read_json(args.new)
    except ReportFileError as e:
        print(f"bemcp stress compare: {e}", file=err)
        return 2
    try:
        rows, regressed = compare(old, new, threshold)
    except (KeyError, TypeError, ValueError) as e:
        print(f"bemcp stress compare: a report lacks a field the comparison needs ({e})", file=err)
        return 2
    print(f"old: {_describe(old)}\nnew: {_describe(new)}", file=out)
    inconsistent = {label: _failed_checks(report) for label, report in (("old", old), ("new", new))}
    inconsistent = {label: failed for label, failed in inconsistent.items() if failed}
    for label, failed in inconsistent.items():
        print(
            f"error: the {label} report failed its consistency checks ({', '.join(failed)}); its numbers "
            "cannot be compared",
            file=out,
        )
    if old["target"]["spec"] != new["target"]["spec"] or old["run"]["profile"] != new["run"]["profile"]:
        print("warning: the reports come from different targets or profiles", file=out)
    print(file=out)
    print(format_table(rows), file=out, end="")
    n = sum(r.regressed for r in rows)
    print(
        f"\n{n} regression{'s' if n != 1 else ''} past {threshold:.0%}"
        if regressed
        else f"\nno regression past {threshold:.0%}",
        file=out,
    )
    if inconsistent:
        print(
            f"bemcp stress compare: the {' and '.join(inconsistent)} report{'s' if len(inconsistent) > 1 else ''} "
            "failed its consistency checks: the comparison does not count",
            file=err,
        )
        return 3
    return 1 if regressed else 0


def _failed_checks(report: ReportData) -> list[str]:
    """The consistency checks the report fails, as it says itself and as they come out run again on it."""
    stored = report.get("consistency") or {}
    failed = [str(c.get("name")) for c in stored.get("checks") or [] if not c.get("passed")]
    if not stored.get("passed", False) and not failed:
        failed = ["consistency"]  # it says it failed, or says nothing: it does not vouch for itself
    try:
        again = run_checks(dict(report))
    except (KeyError, TypeError, ValueError) as e:
        return [*failed, f"the checks cannot run on it ({e})"]
    return list(dict.fromkeys([*failed, *(c["name"] for c in again["checks"] if not c["passed"])]))
