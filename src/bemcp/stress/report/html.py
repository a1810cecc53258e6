"""report.html: one self-contained offline page (inline CSS, inline SVG charts, no script, no fonts, no links out).

Sections: the verdict, key numbers, charts over time (throughput, latency, memory with the budget line), charts
against load (throughput and p99 against concurrency; against the offered rate when the rate phase ran), the error
breakdown, then the tables: verdict criteria, limits, phases and their steps, protection events, findings and
recommendations, consistency checks, environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from bemcp.stress.model import OUTCOMES

from . import fmt
from .models import ReportData
from .narrative import (
    PHASE_TITLES,
    TASK_TABLE_HEADER,
    TESTER_FLAGS,
    key_numbers,
    load_rows,
    load_sentence,
    measured,
    recommendations,
    step_flags,
    task_lines,
    task_rows,
)
from .schema import validate
from .summary import bucket_rate, phase_items, step_errors
from .svg import Axis, Band, Rule, Series, Stack, line_chart, stacked_bars

BLUE, SKY, GREEN, ORANGE, RED, PURPLE, GREY = (
    "#2563eb",
    "#60a5fa",
    "#16a34a",
    "#ea580c",
    "#dc2626",
    "#7c3aed",
    "#64748b",
)
OUTCOME_COLORS = {
    "ok": GREEN,
    "tool_error": "#eab308",
    "overload": ORANGE,
    "protocol_error": PURPLE,
    "timeout": RED,
    "transport_error": "#7f1d1d",
}

CSS = """
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff;--pass:#15803d;--fail:#b91c1c}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:28px 28px 60px}
header{display:flex;justify-content:space-between;align-items:flex-start;gap:24px;margin-bottom:18px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:34px 0 12px}h3{font-size:15px;margin:0 0 6px}
.sub{color:var(--muted)}.sub code{color:var(--fg)}
.badge{font-weight:700;font-size:22px;letter-spacing:.06em;padding:10px 22px;border-radius:10px;color:#fff;
white-space:nowrap}
.badge.PASS{background:var(--pass)}.badge.FAIL{background:var(--fail)}
.banner{border-radius:10px;padding:12px 16px;margin:0 0 18px;border:1px solid}
.banner.fail{background:#fef2f2;border-color:#fecaca;color:#7f1d1d}
.banner.warn{background:#fffbeb;border-color:#fde68a;color:#78350f}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .k,.card .s{color:var(--muted);font-size:12px}
.card .v{font-size:20px;font-weight:650;font-variant-numeric:tabular-nums}
.panel{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin-bottom:14px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:14px}.grid2 .panel{margin-bottom:0}
.legend{display:flex;flex-wrap:wrap;gap:14px;color:var(--muted);font-size:12px;margin:0 0 4px}
.legend i{display:inline-block;width:14px;height:3px;border-radius:2px;margin-right:6px;vertical-align:middle}
.legend i.box{height:10px;width:10px}
.cap{color:var(--muted);font-size:12px;margin:4px 0 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;background:#f8fafc}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.bad td{background:#fff7ed}
.pill{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;font-weight:650;white-space:nowrap}
.pill.pass{background:#dcfce7;color:var(--pass)}.pill.fail{background:#fee2e2;color:var(--fail)}
.pill.na{background:#f1f5f9;color:var(--muted)}
.flag{display:inline-block;background:#ffedd5;color:#9a3412;border-radius:4px;padding:0 6px;margin:0 4px 2px 0;
font-size:11px;white-space:nowrap}
.sev{font-weight:700;text-transform:uppercase;font-size:11px}
.sev.critical{color:var(--fail)}.sev.warning{color:#c2410c}.sev.info{color:#2563eb}
ul,ol{margin:6px 0;padding-left:22px}li{margin:3px 0}
details>summary{cursor:pointer;color:var(--muted);margin:8px 0}
footer{color:var(--muted);font-size:12px;margin-top:40px}
@media print{.panel,.card{break-inside:avoid}}
"""


def _e(x: Any) -> str:
    return escape(str(x))


def _pill(passed: bool | None) -> str:
    if passed is None:
        return '<span class="pill na">not measured</span>'
    return '<span class="pill pass">pass</span>' if passed else '<span class="pill fail">FAIL</span>'


def _code(text: str) -> str:
    """Escape prose shared with the markdown report, keeping its `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _table(
    header: Sequence[str] | None,
    rows: Sequence[Sequence[str]],
    numeric: Sequence[int] = (),
    bad_rows: Sequence[int] = (),
) -> str:
    """`rows` hold HTML already escaped by the caller (cells may carry pills and flags)."""
    head = "".join(
        f'<th class="n">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(header or ())
    )
    body = []
    for r, row in enumerate(rows):
        cells = "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f'<tr class="bad">{cells}</tr>' if r in bad_rows else f"<tr>{cells}</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if header else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def _legend(items: Sequence[tuple[str, str]], box: bool = False) -> str:
    cls = ' class="box"' if box else ""
    return (
        '<div class="legend">'
        + "".join(f'<span><i{cls} style="background:{c}"></i>{_e(n)}</span>' for n, c in items)
        + "</div>"
    )


def _panel(title: str, body: str, caption: str = "") -> str:
    cap = f'<p class="cap">{caption}</p>' if caption else ""
    return f'<div class="panel"><h3>{_e(title)}</h3>{body}{cap}</div>'


def _bands(report: ReportData) -> list[Band]:
    return [
        Band(float(p["offset_s"]), float(p["offset_s"]) + float(p["duration_s"]), name)
        for name, p in phase_items(report)
    ]


def _time_axis(report: ReportData) -> Axis:
    return Axis(
        "seconds since the start", lambda v: f"{v:g} s", lo=0.0, hi=max(float(report["run"]["duration_s"]), 1.0)
    )


def _throughput_over_time(report: ReportData) -> str:
    ts = report["timeseries"]
    if not ts:
        return _panel("Throughput over time", "<p>No time series was recorded.</p>")

    def rate(n: float) -> float:
        return bucket_rate(report, n)

    offered = Series("offered calls/s", [(b["t"], rate(b["offered"])) for b in ts], SKY, dash="4 3", width=1.5)
    ok = Series("ok answers/s", [(b["t"], rate(b["achieved"])) for b in ts], BLUE, area=True)
    errors = Series(
        "errors/s (protocol, timeout, transport)",
        [(b["t"], rate(sum(v for k, v in b["errors"].items() if k not in ("tool_error", "overload")))) for b in ts],
        RED,
        width=1.5,
    )
    overload = Series(
        "overload refusals/s", [(b["t"], rate(b["errors"].get("overload", 0))) for b in ts], ORANGE, width=1.5
    )
    series = [offered, ok, overload, errors]
    chart = line_chart(
        series=series,
        x=_time_axis(report),
        y=Axis("calls per second", fmt.number),
        bands=_bands(report),
        label="throughput over time",
    )
    peak = report["summary"]["peak_throughput"]
    return _panel(
        "Throughput over time",
        _legend([(s.name, s.color) for s in series]) + chart,
        f"Peak {fmt.rate(peak)} in one {fmt.number(report['run']['timeseries_interval_s'])}-s bucket; "
        "shaded bands are the phases.",
    )


def _latency_over_time(report: ReportData) -> str:
    ts = report["timeseries"]
    slo = float(report["thresholds"]["slo_p99_ms"])
    if not ts:
        return _panel("Latency over time", "<p>No time series was recorded.</p>")

    def ms(v: Any) -> float | None:
        return max(float(v), 0.01) if v is not None else None  # a log axis has no zero

    p50 = Series("p50", [(b["t"], ms(b["p50_ms"])) for b in ts], GREEN)
    p99 = Series("p99", [(b["t"], ms(b["p99_ms"])) for b in ts], PURPLE)
    chart = line_chart(
        series=[p50, p99],
        x=_time_axis(report),
        y=Axis("latency (log scale)", fmt.ms, log=True),
        bands=_bands(report),
        rules=[Rule(slo, f"SLO p99 {fmt.ms(slo)}", RED)],
        label="latency over time",
    )
    return _panel(
        "Latency over time",
        _legend([("p50", GREEN), ("p99", PURPLE), ("SLO", RED)]) + chart,
        "Latency is measured from each call's intended send time (coordinated-omission safe), "
        "for the calls answered in each bucket.",
    )


def _memory_over_time(report: ReportData) -> str:
    samples = [s for s in report["target_samples"] if s.get("rss_bytes") is not None]
    budget = report["target"].get("memory_budget_bytes")
    if not samples:
        return _panel("Target memory over time", "<p>No target memory was sampled (no /metrics and no pid).</p>")
    mib = 1024 * 1024
    rss = Series("target RSS", [(s["t"], s["rss_bytes"] / mib) for s in samples], BLUE, area=True)
    rules = [Rule(budget / mib, f"budget {fmt.bytes_(budget)}", RED)] if budget else []
    chart = line_chart(
        series=[rss],
        x=_time_axis(report),
        y=Axis("RSS (MiB)", fmt.number),
        bands=_bands(report),
        rules=rules,
        label="target memory over time",
    )
    legend = [("target RSS", BLUE)] + ([("memory budget", RED)] if budget else [])
    peak = report["summary"]["peak_target_rss_bytes"]
    caption = f"Peak {fmt.bytes_(peak)}" + (
        f" of a {fmt.bytes_(budget)} budget." if budget else "; the target reported no memory budget."
    )
    return _panel("Target memory over time", _legend(legend) + chart, caption)


def _level_ticks(levels: Sequence[float]) -> list[float]:
    return sorted(set(levels))


def _against_load(report: ReportData) -> str:
    phases = dict(phase_items(report))
    slo = float(report["thresholds"]["slo_p99_ms"])
    panels: list[str] = []
    tsunami = sorted(phases.get("tsunami", {}).get("steps", []), key=lambda s: s["level"])
    if tsunami:
        levels = [float(s["level"]) for s in tsunami]
        best = phases["tsunami"]["results"].get("max_sustainable_concurrency")
        rules = [Rule(float(best), f"max sustainable {fmt.number(best)}", GREEN, vertical=True)] if best else []
        x = Axis("concurrency (log scale)", fmt.number, log=True, ticks=_level_ticks(levels))
        tips = [
            f"{fmt.number(s['level'])} callers: {fmt.rate(s['throughput'])} ok, p99 {fmt.ms(s['latency_ms']['p99'])}"
            for s in tsunami
        ]
        tp = Series("ok/s", [(s["level"], s["throughput"]) for s in tsunami], BLUE, markers=True, tips=tips)
        p99 = Series(
            "p99", [(s["level"], max(s["latency_ms"]["p99"], 0.01)) for s in tsunami], PURPLE, markers=True, tips=tips
        )
        p50 = Series(
            "p50",
            [(s["level"], max(s["latency_ms"]["p50"], 0.01)) for s in tsunami],
            GREEN,
            markers=True,
            tips=tips,
            width=1.5,
        )
        panels.append(
            _panel(
                "Throughput against concurrency (tsunami)",
                _legend([("ok answers/s", BLUE), ("max sustainable", GREEN)])
                + line_chart(
                    series=[tp],
                    x=x,
                    y=Axis("ok calls per second", fmt.number),
                    rules=rules,
                    width=540,
                    height=250,
                    label="throughput against concurrency",
                ),
            )
        )
        panels.append(
            _panel(
                "p99 latency against concurrency (tsunami)",
                _legend([("p50", GREEN), ("p99", PURPLE), ("SLO", RED)])
                + line_chart(
                    series=[p50, p99],
                    x=x,
                    y=Axis("latency (log scale)", fmt.ms, log=True),
                    rules=[Rule(slo, f"SLO {fmt.ms(slo)}", RED), *rules],
                    width=540,
                    height=250,
                    label="p99 against concurrency",
                ),
            )
        )
    rate = sorted(phases.get("rate", {}).get("steps", []), key=lambda s: s["level"])
    if rate:
        sat = phases["rate"]["results"].get("saturation_rate")
        rules = [Rule(float(sat), f"saturation {fmt.rate(sat)}", ORANGE, vertical=True)] if sat else []
        x = Axis(
            "offered calls/s (log scale)", fmt.number, log=True, ticks=_level_ticks([float(s["level"]) for s in rate])
        )
        offered = Series("offered", [(s["level"], s["level"]) for s in rate], SKY, dash="4 3", width=1.5)
        achieved = Series("ok/s", [(s["level"], s["throughput"]) for s in rate], BLUE, markers=True)
        p99 = Series("p99", [(s["level"], max(s["latency_ms"]["p99"], 0.01)) for s in rate], PURPLE, markers=True)
        panels.append(
            _panel(
                "Achieved against offered rate (rate)",
                _legend([("offered", SKY), ("ok answers/s", BLUE), ("saturation", ORANGE)])
                + line_chart(
                    series=[offered, achieved],
                    x=x,
                    y=Axis("calls per second", fmt.number),
                    rules=rules,
                    width=540,
                    height=250,
                    label="achieved against offered",
                ),
            )
        )
        panels.append(
            _panel(
                "p99 latency against offered rate (rate)",
                _legend([("p99", PURPLE), ("SLO", RED)])
                + line_chart(
                    series=[p99],
                    x=x,
                    y=Axis("latency (log scale)", fmt.ms, log=True),
                    rules=[Rule(slo, f"SLO {fmt.ms(slo)}", RED), *rules],
                    width=540,
                    height=250,
                    label="p99 against offered rate",
                ),
            )
        )
    if not panels:
        return ""
    return "<h2>Against load</h2>" + f'<div class="grid2">{"".join(panels)}</div>'


def _error_breakdown(report: ReportData) -> str:
    phases = list(phase_items(report))
    kinds = [o for o in OUTCOMES if o != "ok"]
    totals = {name: sum(s["calls"] for s in p["steps"]) for name, p in phases}
    counts = {name: {k: sum(s["outcomes"][k] for s in p["steps"]) for k in kinds} for name, p in phases}
    non_ok = {name: sum(c.values()) for name, c in counts.items()}
    if not phases or not any(non_ok.values()):
        return _panel("Non-ok answers by phase", "<p>Every call in every phase was answered ok.</p>")
    stacks = [
        Stack(k, OUTCOME_COLORS[k], [100 * counts[n][k] / totals[n] if totals[n] else 0 for n, _ in phases])
        for k in kinds
    ]
    notes = [f"{fmt.integer(non_ok[n])} of {fmt.integer(totals[n])} calls" for n, _ in phases]
    chart = stacked_bars(
        categories=[n for n, _ in phases],
        stacks=stacks,
        notes=notes,
        x_fmt=lambda v: f"{v:g}%",
        label="non-ok answers by phase",
    )
    legend = _legend([(k.replace("_", " "), OUTCOME_COLORS[k]) for k in kinds], box=True)
    return _panel(
        "Non-ok answers by phase (share of the phase's calls)",
        legend + chart,
        "Tool errors and overload refusals are answers by design (the tool said no; the server shed load "
        "cleanly); protocol errors, timeouts and transport errors count against the error budget.",
    )


def _verdict_table(report: ReportData) -> str:
    criteria = report["verdict"]["criteria"]
    rows = [
        [
            _e(c["name"]),
            _code(c["threshold"]),
            _e(measured(c)),
            _pill(c["passed"]),
            _e(c["detail"]),
        ]
        for c in criteria
    ]
    bad = [i for i, c in enumerate(criteria) if c["passed"] is False]
    return _table(["Criterion", "Threshold", "Measured", "Result", "Where it comes from"], rows, bad_rows=bad)


def _load(report: ReportData) -> str:
    rows = load_rows(report)
    if not rows:
        return ""
    table = _table(
        ["tool or method", "kind", "weight", "planned share", "calls", "share of calls"],
        [[_e(c) for c in row] for row in rows],
        numeric=(2, 3, 4, 5),
    )
    return (
        f'<h2>Load</h2><div class="panel"><p class="sub">{_e(load_sentence(report))}</p>{table}'
        '<p class="cap">The mix is what the tsunami, rate and soak steps call; calls and shares count every step '
        "of every phase (tool calls among tool calls, protocol methods among methods).</p></div>"
    )


def _limits_table(report: ReportData) -> str:
    if not report["limits"]:
        return "<p>No limit was found within the tested range.</p>"
    rows = [
        [
            _e(lim["name"]),
            f"<b>{_e(fmt.value(lim['value'], lim['unit']))}</b>",
            _e(lim["confidence"]),
            _e(lim["phase"]),
            _e(lim["how"]),
        ]
        for lim in report["limits"]
    ]
    return _table(["Limit", "Value", "Confidence", "Phase", "How it was found"], rows, numeric=(1,))


def _phase_result_line(name: str, r: Mapping[str, Any]) -> str:
    if name == "tsunami":
        return f"Maximum sustainable concurrency <b>{_e(fmt.number(r['max_sustainable_concurrency']))}</b>" + (
            f", first bad level {_e(fmt.number(r['first_bad_concurrency']))}"
            if r.get("first_bad_concurrency") is not None
            else ""
        )
    if name == "rate":
        sat, good = r["saturation_rate"], r.get("max_good_rate")
        kept = f"Highest rate kept up with <b>{_e(fmt.rate(good) if good is not None else 'none')}</b>"
        return kept + (
            f", first offered rate that failed <b>{_e(fmt.rate(sat))}</b>" if sat is not None else ", no saturation"
        )
    if name == "avalanche":
        return (
            f"Largest accepted <b>{_e(fmt.value(r['largest_accepted_mb'], 'MB'))}</b>, refused from "
            f"<b>{_e(fmt.value(r['rejected_above_mb'], 'MB'))}</b>; RSS after {_e(fmt.bytes_(r['rss_after_bytes']))}"
        )
    if name == "chaos":
        return (
            f"Survived <b>{'yes' if r['survived'] else 'no'}</b>, answered everything "
            f"<b>{'yes' if r['answered_all'] else 'no'}</b>"
        )
    if name == "tasks":
        if not r.get("steps"):
            return ""
        return (
            f"Max concurrent tasks <b>{_e(fmt.number(r['max_concurrent_tasks']))}</b>, lost "
            f"<b>{_e(fmt.integer(r['lost']))}</b>"
        )
    if name == "soak":
        slope = r["rss_slope_bytes_per_s"]
        return f"Leak verdict <b>{_e(r['leak_verdict'])}</b>" + (
            f", RSS slope {_e(fmt.bytes_(slope))}/s" if slope is not None else ""
        )
    return ""


def _phases(report: ReportData) -> str:
    th = report["thresholds"]
    out = []
    for name, phase in phase_items(report):
        steps = phase["steps"]
        open_model = any(s["model"] == "open" for s in steps)
        rows, bad = [], []
        for i, s in enumerate(steps):
            o, lat = s["outcomes"], s["latency_ms"]
            flags = step_flags(s, th, name)
            if any(f not in TESTER_FLAGS for f in flags):
                bad.append(i)
            rows.append(
                [
                    _e(fmt.number(s["level"])),
                    _e(fmt.integer(s["calls"])),
                    _e(fmt.integer(o["ok"])),
                    _e(fmt.integer(o["overload"])),
                    _e(fmt.integer(o["tool_error"])),
                    _e(fmt.integer(step_errors(s))),
                    _e(fmt.number(s["offered_rate"]) if open_model else fmt.integer(s["concurrency"])),
                    _e(fmt.number(s["throughput"])),
                    _e(fmt.ms(lat["p50"])),
                    _e(fmt.ms(lat["p99"])),
                    _e(fmt.ms(lat["p999"])),
                    _e(fmt.ms(lat["max"])),
                    _e(f"{s['client_cpu_percent']:.0f}%" if s["client_cpu_percent"] is not None else fmt.NA),
                    "".join(f'<span class="flag">{_e(f)}</span>' for f in flags),
                ]
            )
        header = [
            f"level ({phase['level_unit']})",
            "calls",
            "ok",
            "overload",
            "tool err",
            "errors",
            "offered/s" if open_model else "callers",
            "ok/s",
            "p50",
            "p99",
            "p99.9",
            "max",
            "client CPU",
            "",
        ]
        table = _table(header, rows, numeric=tuple(range(13)), bad_rows=bad) if rows else "<p>No steps.</p>"
        count = len(steps)
        if name == "tasks" and phase["results"].get("steps"):
            results = phase["results"]
            count = len(results["steps"])
            lost = [i for i, st in enumerate(results["steps"]) if st["lost"] or not st["good"]]
            table = (
                "".join(f'<p class="sub">{_code(line)}</p>' for line in task_lines(results))
                + _table(
                    list(TASK_TABLE_HEADER),
                    [[_e(c) for c in row] for row in task_rows(results)],
                    numeric=tuple(range(12)),
                    bad_rows=lost,
                )
                + '<p class="cap">Done: from a creation\'s send to the poll that saw the task completed (within a poll '
                "interval); percentiles are exact. A refusal is the server's clean overload answer, not a loss.</p>"
            )
        notes = "".join(f"<li>{_e(n)}</li>" for n in phase.get("notes") or [])
        out.append(
            f'<div class="panel"><h3>{_e(name.capitalize())}: {_e(PHASE_TITLES.get(name, name))}</h3>'
            f'<p class="sub">{_e(phase["status"])} · {_e(fmt.seconds(phase["duration_s"]))} · '
            f"{fmt.plural(count, 'step')} · "
            f"{_phase_result_line(name, phase['results'])}</p>"
            f"<details open><summary>steps</summary>{table}</details>"
            + (f"<ul>{notes}</ul>" if notes else "")
            + "</div>"
        )
    return "".join(out)


def _protection(report: ReportData) -> str:
    p = report["protection_events"]
    source = {
        "metrics": "the target's own counters (/metrics)",
        "client": "the overload answers the tester saw",
        "none": "none: the target exposes no protection data",
    }[p["source"]]
    rejected = (
        _table(
            ["refusal reason", "calls"], [[_e(k), _e(fmt.integer(v))] for k, v in p["rejected"].items()], numeric=(1,)
        )
        if p["rejected"]
        else "<p>No call was refused.</p>"
    )
    watchdog = (
        _table(
            ["watchdog event", "count"], [[_e(k), _e(fmt.integer(v))] for k, v in p["watchdog"].items()], numeric=(1,)
        )
        if p["watchdog"]
        else "<p>No watchdog event.</p>"
    )
    levels = ", ".join(p["memory_levels_seen"]) or "none reported"
    return (
        f'<div class="grid2"><div class="panel"><h3>Refusals</h3>{rejected}</div>'
        f'<div class="panel"><h3>Watchdog</h3>{watchdog}</div></div>'
        f'<p class="cap">Source: {_e(source)}. Memory levels seen: {_e(levels)}.</p>'
    )


def _findings(report: ReportData) -> str:
    items = "".join(
        f'<li><span class="sev {_e(f["severity"])}">{_e(f["severity"])}</span> '
        f"<b>{_e(f['phase'])}</b>: {_code(f['message'])}</li>"
        for f in report["findings"]
    )
    recs = "".join(f"<li>{_code(r)}</li>" for r in recommendations(report))
    return (
        f'<div class="grid2"><div class="panel"><h3>Findings</h3>'
        f"{f'<ul>{items}</ul>' if items else '<p>No finding.</p>'}</div>"
        f'<div class="panel"><h3>Recommendations</h3><ol>{recs}</ol></div></div>'
    )


def _consistency(report: ReportData) -> str:
    rows = [[_e(c["name"]), _pill(c["passed"]), _e(c["detail"])] for c in report["consistency"]["checks"]]
    bad = [i for i, c in enumerate(report["consistency"]["checks"]) if not c["passed"]]
    return _table(["check", "result", "detail"], rows, bad_rows=bad)


def _environment(report: ReportData) -> str:
    env, target, run, th = report["environment"], report["target"], report["run"], report["thresholds"]
    info = target.get("server_info")
    skipped = "; ".join(f"{k} ({v})" for k, v in (target.get("skipped_tools") or {}).items()) or "none"
    rows = [
        ["target", f"<code>{_e(target['spec'])}</code> ({_e(target['kind'])}, pid {_e(target['pid'] or fmt.NA)})"],
        ["server", _e(", ".join(f"{k} {v}" for k, v in info.items()) if isinstance(info, dict) else info or "unknown")],
        ["protocol revision", _e(target.get("revision") or "unknown")],
        ["tools used", _e(", ".join(target["tools_used"]) or "none")],
        ["tools never called", _e(skipped)],
        ["thresholds", _e(f"p99 ≤ {fmt.ms(th['slo_p99_ms'])}, errors ≤ {fmt.pct(th['error_budget'])}")],
        ["host", _e(f"{env['hostname']} · {env['os']} · Python {env['python']}")],
        [
            "CPUs / memory",
            _e(
                f"{fmt.integer(env['cpu_count'])} CPUs · {fmt.bytes_(env['memory_bytes'])}"
                + (
                    f" · container limit {fmt.bytes_(env['container_limit_bytes'])}"
                    if env["container_limit_bytes"]
                    else ""
                )
            ),
        ],
        ["command", f"<code>{_e(run['command'])}</code> (seed {_e(run['seed'])}, {_e(run['workers'])} workers)"],
    ]
    return _table(None, rows)


def _card(label: str, value: str) -> str:
    # "94,204 (94.77%)": the share goes on its own smaller line so the card's main number stays on one line.
    main, _, share = value.partition(" (")
    sub = f'<div class="s">{_e(share.rstrip(")"))}</div>' if share else ""
    return f'<div class="card"><div class="k">{_e(label)}</div><div class="v">{_e(main)}</div>{sub}</div>'


def render_invalid(problems: Sequence[str]) -> str:
    """The page for a report.json that does not match its schema: the problems, and FAIL."""
    items = "".join(f"<li><code>{_e(p)}</code></li>" for p in problems[:50])
    more = f"<li>… and {len(problems) - 50} more</li>" if len(problems) > 50 else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Stress test report: invalid</title>'
        f"<style>{CSS}</style></head><body><main><header><div><h1>Stress test report: invalid</h1>"
        '<div class="sub">report.json does not match its schema (docs/report-schema.md), so none of its numbers '
        'can be trusted.</div></div><div class="badge FAIL">FAIL</div></header>'
        f'<div class="panel"><h3>Schema problems</h3><ul>{items}{more}</ul></div></main></body></html>'
    )


def render_html(report: ReportData) -> str:
    """The whole report.html; `report` must be finalized (summary, consistency, verdict). An off-schema report
    gets a short page listing its schema problems instead."""
    problems = validate(report)
    if problems:
        return render_invalid(problems)
    run, target, verdict = report["run"], report["target"], report["verdict"]
    info = target.get("server_info") or {}
    server = " ".join(str(info.get(k)) for k in ("name", "version") if isinstance(info, dict) and info.get(k))
    status = verdict["status"]
    failed = [c["name"] for c in verdict["criteria"] if c["passed"] is False]
    banners = ""
    if target.get("error"):
        banners += (
            f'<div class="banner fail"><b>The run could not use the target:</b> {_e(target["error"])}. No phase '
            "ran.</div>"
        )
    if not report["consistency"]["passed"]:
        banners += (
            '<div class="banner fail"><b>This report failed its consistency checks.</b> Some of its numbers '
            "disagree with each other (see Consistency checks); do not rely on it until that is explained."
            "</div>"
        )
    if failed:
        banners += f'<div class="banner warn"><b>Failed:</b> {_e(", ".join(failed))}.</div>'
    sentence = load_sentence(report)
    if sentence is not None and (report.get("load") or {}).get("source") == "protocol":
        banners += f'<div class="banner warn"><b>{_e(sentence)}</b></div>'
    cards = "".join(_card(k, v) for k, v in key_numbers(report))
    title = f"Stress test report: {server or target['spec']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>",
        f'<header><div><h1>{_e(title)}</h1><div class="sub"><code>{_e(target["spec"])}</code> · '
        f"{_e(run['started_at'])} · {_e(fmt.seconds(run['duration_s']))} · profile {_e(run['profile'])} · "
        f"seed {_e(run['seed'])} · {_e(report['tool']['name'])} {_e(report['tool']['version'])}</div></div>"
        f'<div class="badge {status}">{status}</div></header>',
        banners,
        f'<div class="cards">{cards}</div>',
        "<h2>Verdict</h2>",
        f'<div class="panel">{_verdict_table(report)}</div>',
        _load(report),
        "<h2>Over time</h2>",
        _throughput_over_time(report),
        _latency_over_time(report),
        _memory_over_time(report),
        _against_load(report),
        "<h2>Errors</h2>",
        _error_breakdown(report),
        "<h2>Discovered limits</h2>",
        f'<div class="panel">{_limits_table(report)}</div>',
        "<h2>Phases</h2>",
        _phases(report),
        "<h2>Protection events</h2>",
        _protection(report),
        "<h2>Findings and recommendations</h2>",
        _findings(report),
        "<h2>Consistency checks</h2>",
        f'<div class="panel">{_consistency(report)}</div>',
        "<h2>Environment and method</h2>",
        f'<div class="panel">{_environment(report)}</div>',
        f"<footer>Generated by {_e(report['tool']['name'])} {_e(report['tool']['version'])} at "
        f"{_e(run['finished_at'])} · run {_e(run['id'])} · schema v{_e(report['schema_version'])}. Every number on "
        "this page is read from report.json.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p)
