"""report.md: laid out like the seed report (summary, method, environment, phases, limits, protection, risks),
but every number is read from the report dict, so it cannot disagree with report.json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from . import fmt
from .models import ReportData
from .narrative import (
    PHASE_TITLES,
    TASK_TABLE_HEADER,
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
from .summary import phase_items, step_errors


def _text(text: Any) -> str:
    """Text that came from the target (names, messages): markdown renderers pass raw HTML through."""
    return escape(str(text), quote=False)


def _esc(text: Any) -> str:
    """A table cell: no raw HTML, and no pipe or newline to break the table."""
    return _text(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _result(passed: bool | None) -> str:
    return "✅ pass" if passed else "not measured" if passed is None else "❌ FAIL"


def _header(report: ReportData) -> str:
    run, target, tool = report["run"], report["target"], report["tool"]
    info = target.get("server_info") or {}
    server = " ".join(str(info.get(k)) for k in ("name", "version") if isinstance(info, dict) and info.get(k))
    revision = f", MCP {target['revision']}" if target.get("revision") else ""
    return (
        f"# Stress test report: {_text(server or target['spec'])}\n\n"
        f"**Test date:** {run['started_at']}  \n"
        f"**Duration:** {fmt.seconds(run['duration_s'])}  \n"
        f"**Target:** `{target['spec']}` ({target['kind']}{revision})  \n"
        f"**Tester:** {tool['name']} {tool['version']}, profile `{run['profile']}`, seed {run['seed']}, "
        f"{run['workers']} worker{'s' if run['workers'] != 1 else ''}  \n\n---\n"
    )


def _summary(report: ReportData) -> str:
    s, verdict, consistency = report["summary"], report["verdict"], report["consistency"]
    failed = [c["name"] for c in verdict["criteria"] if c["passed"] is False]
    out = ["## Summary\n"]
    if verdict["status"] == "PASS":
        out.append("**Verdict: PASS ✅**: every measured criterion below holds.\n")
    else:
        out.append(f"**Verdict: FAIL ❌**: {', '.join(failed) or 'nothing could be measured'}.\n")
    if report["target"].get("error"):
        out.append(f"> ❌ **The run could not use the target**: {_text(report['target']['error'])}. No phase ran.\n")
    if not consistency["passed"]:
        out.append(
            "> ⚠️ **This report failed its consistency checks**: some of its numbers disagree with each "
            "other (see *Consistency checks*). Do not rely on it until that is explained.\n"
        )
    phases = [n for n, _ in phase_items(report)]
    out.append(
        f"{fmt.integer(s['total_calls'])} calls in {len(phases)} phase{'s' if len(phases) != 1 else ''} "
        f"({', '.join(phases) or 'none'}), {fmt.seconds(s['time_under_load_s'])} under load: "
        f"{fmt.pct(s['ok'] / s['total_calls'] if s['total_calls'] else 0)} ok, "
        f"{fmt.integer(s['outcomes']['overload'])} clean overload refusals, "
        f"{fmt.integer(s['errors'])} errors ({fmt.pct(s['error_rate'])}).\n"
    )
    sentence = load_sentence(report)
    if sentence is not None:
        protocol = (report.get("load") or {}).get("source") == "protocol"
        out.append(f"> ⚠️ **{_text(sentence)}**\n" if protocol else f"{_text(sentence)}\n")
    out.append("### Key numbers\n")
    out.append(_table(["Metric", "Value"], key_numbers(report)))
    out.append(
        "\nThroughput counts ok answers only. *Peak* is the best "
        f"{fmt.number(report['run']['timeseries_interval_s'])}-second bucket, *sustained* the best whole "
        "step, *average* all ok answers over the time under load.\n"
    )
    rows = load_rows(report)
    if rows:
        out.append("### Load\n")
        out.append(_table(["Tool or method", "Kind", "Weight", "Planned share", "Calls", "Share of calls"], rows))
        out.append(
            "\nThe mix is what the tsunami, rate and soak steps call; calls and shares count every step of every "
            "phase (tool calls among tool calls, protocol methods among methods).\n"
        )
    out.append("### Verdict criteria\n")
    rows = [[c["name"], c["threshold"], measured(c), _result(c["passed"]), c["detail"]] for c in verdict["criteria"]]
    out.append(_table(["Criterion", "Threshold", "Measured", "Result", "Where it comes from"], rows))
    return "\n".join(out) + "\n---\n"


def _method(report: ReportData) -> str:
    run, target, th = report["run"], report["target"], report["thresholds"]
    skipped = target.get("skipped_tools") or {}
    lines = [
        "## Method\n",
        f"- **Target**: `{target['spec']}`, reached as {target['kind']}"
        + (f" (pid {target['pid']})" if target.get("pid") else "")
        + ".",
        f"- **Tools**: {len(target['tools_discovered'])} discovered, used: "
        + (", ".join(_text(t) for t in target["tools_used"]) or "none")
        + ".",
    ]
    if skipped:
        lines.append("- **Never called**: " + "; ".join(f"{_text(k)} ({_text(v)})" for k, v in skipped.items()) + ".")
    lines += [
        f"- **Thresholds**: a step is good when its p99 is ≤ {fmt.ms(th['slo_p99_ms'])} and at most "
        f"{fmt.pct(th['error_budget'])} of its calls end as protocol errors, timeouts or transport errors "
        "(tool errors and overload refusals are answers, counted separately).",
        "- **Latency** is measured from each call's *intended* send time, so a stalled server cannot hide "
        "its queueing (coordinated omission); percentiles come from HdrHistograms (3 significant digits).",
        "- **Phases run**: " + ", ".join(run["phases"]) + ".",
    ]
    for name, phase in phase_items(report):
        steps = phase["steps"] if name != "tasks" else (phase["results"].get("steps") or [])
        lines.append(
            f"  - *{name}*: {PHASE_TITLES.get(name, name)}; {fmt.plural(len(steps), 'step')}, levels in "
            f"{phase['level_unit']}."
        )
    lines.append(f"- **Reproduce**: `{run['command']}` (seed {run['seed']}).\n")
    env = report["environment"]
    lines.append("### Environment\n")
    lines.append(
        _table(
            ["Item", "Value"],
            [
                ["Host", env["hostname"]],
                ["OS", env["os"]],
                ["Python", env["python"]],
                ["CPUs", fmt.integer(env["cpu_count"])],
                ["Physical memory", fmt.bytes_(env["memory_bytes"])],
                [
                    "Container memory limit",
                    fmt.bytes_(env["container_limit_bytes"]) if env["container_limit_bytes"] else "none",
                ],
                [
                    "Target memory budget",
                    fmt.bytes_(target["memory_budget_bytes"])
                    if target["memory_budget_bytes"] is not None
                    else "unknown",
                ],
                ["Protocol revision", target.get("revision") or "unknown"],
            ],
        )
    )
    return "\n".join(lines) + "\n---\n"


def _phase_results(name: str, results: Mapping[str, Any]) -> list[str]:
    r = results
    if name == "tsunami":
        return [
            f"**Maximum sustainable concurrency: {fmt.number(r['max_sustainable_concurrency'])}**"
            + (
                f" (first bad level: {fmt.number(r['first_bad_concurrency'])})"
                if r.get("first_bad_concurrency") is not None
                else ""
            )
            + (f"; stopped: {r['stop_reason']}" if r.get("stop_reason") else "")
        ]
    if name == "rate":
        sat, good = r["saturation_rate"], r.get("max_good_rate")
        kept = f"**Highest rate kept up with: {fmt.rate(good) if good is not None else 'none'}**"
        return [
            kept + f"; saturation (the first offered rate that failed): **{fmt.rate(sat)}**"
            if sat is not None
            else kept + "; **no saturation** up to the highest offered rate"
        ]
    if name == "avalanche":
        out = [
            f"**Largest accepted allocation: {fmt.value(r['largest_accepted_mb'], 'MB')}**; refused from "
            f"{fmt.value(r['rejected_above_mb'], 'MB')}"
        ]
        rss = [
            f"{label} {fmt.bytes_(r.get(key))}"
            for label, key in (("before", "rss_before_bytes"), ("peak", "rss_peak_bytes"), ("after", "rss_after_bytes"))
            if r.get(key) is not None
        ]
        if rss:
            out.append("Target RSS: " + ", ".join(rss))
        return out
    if name == "chaos":
        ops = r.get("operations") or {}
        out = [
            f"**Survived: {'yes' if r['survived'] else 'no'}; answered every call: "
            f"{'yes' if r['answered_all'] else 'no'}**"
            + (f" ({fmt.integer(r['unanswered'])} unanswered)" if r.get("unanswered") else "")
        ]
        if ops:
            out.append("Mix: " + ", ".join(f"{k} {fmt.integer(v)}" for k, v in ops.items()))
        return out
    if name == "tasks":
        return [f"**{line}**" if i == 0 else line for i, line in enumerate(task_lines(r))]
    if name == "soak":
        slope = r["rss_slope_bytes_per_s"]
        return [
            f"**Leak verdict: {r['leak_verdict']}**"
            + (
                f" (RSS slope {fmt.bytes_(slope)}/s over {fmt.integer(r.get('rss_samples'))} samples)"
                if slope is not None
                else ""
            )
        ]
    return []


def _phases(report: ReportData) -> str:
    out = ["## Results by phase\n"]
    th = report["thresholds"]
    for n, (name, phase) in enumerate(phase_items(report), 1):
        out.append(f"### Phase {n}: {name.capitalize()}: {PHASE_TITLES.get(name, name)}\n")
        out.append(f"{fmt.seconds(phase['duration_s'])}, {phase['status']}, started {phase['started_at']}.\n")
        out.extend(f"- {line}" for line in _phase_results(name, phase["results"]))
        out.append("")
        steps = phase["steps"]
        if steps:
            open_model = any(s["model"] == "open" for s in steps)
            header = [
                f"Level ({phase['level_unit']})",
                "Calls",
                "OK",
                "Tool err",
                "Overload",
                "Errors",
                "Offered/s" if open_model else "Callers",
                "OK/s",
                "p50",
                "p99",
                "p99.9",
                "Max",
                "Client CPU",
                "Notes",
            ]
            rows = []
            for s in steps:
                o = s["outcomes"]
                rows.append(
                    [
                        fmt.number(s["level"]),
                        fmt.integer(s["calls"]),
                        fmt.integer(o["ok"]),
                        fmt.integer(o["tool_error"]),
                        fmt.integer(o["overload"]),
                        fmt.integer(step_errors(s)),
                        fmt.number(s["offered_rate"]) if open_model else fmt.integer(s["concurrency"]),
                        fmt.number(s["throughput"]),
                        fmt.ms(s["latency_ms"]["p50"]),
                        fmt.ms(s["latency_ms"]["p99"]),
                        fmt.ms(s["latency_ms"]["p999"]),
                        fmt.ms(s["latency_ms"]["max"]),
                        f"{s['client_cpu_percent']:.0f}%" if s["client_cpu_percent"] is not None else fmt.NA,
                        ", ".join(step_flags(s, th, name)),
                    ]
                )
            out.append(_table(header, rows))
        if name == "tasks" and phase["results"].get("steps"):
            out.append(_table(TASK_TABLE_HEADER, task_rows(phase["results"])))
            out.append(
                "*Done* is from a creation's send to the poll that saw the task completed (within a poll interval); "
                "percentiles are exact. A refusal is the server's clean overload answer, not a loss.\n"
            )
        for note in phase.get("notes") or []:
            out.append(f"> {note}\n")
    return "\n".join(out) + "\n---\n"


def _limits(report: ReportData) -> str:
    rows = [
        [lim["name"], fmt.value(lim["value"], lim["unit"]), lim["confidence"], lim["phase"], lim["how"]]
        for lim in report["limits"]
    ]
    body = (
        _table(["Limit", "Value", "Confidence", "Phase", "How it was found"], rows)
        if rows
        else "No limit was found within the tested range.\n"
    )
    return "## Discovered limits\n\n" + body + "\n---\n"


def _protection(report: ReportData) -> str:
    p = report["protection_events"]
    out = ["## Protection events\n"]
    source = {
        "metrics": "the target's own counters (/metrics)",
        "client": "the overload answers the tester saw",
        "none": "nothing: the target exposes no protection data",
    }[p["source"]]
    out.append(f"Source: {source}.\n")
    if p["rejected"]:
        out.append(_table(["Refusal reason", "Calls"], [[k, fmt.integer(v)] for k, v in p["rejected"].items()]))
    else:
        out.append("No call was refused.\n")
    if p["watchdog"]:
        out.append(_table(["Watchdog event", "Count"], [[k, fmt.integer(v)] for k, v in p["watchdog"].items()]))
    else:
        out.append("No watchdog event.\n")
    levels = p["memory_levels_seen"]
    out.append(f"Memory levels seen: {', '.join(levels) if levels else 'none reported'}.\n")
    return "\n".join(out) + "\n---\n"


def _risks(report: ReportData) -> str:
    out = ["## Risks and recommendations\n", "### Findings\n"]
    findings = report["findings"]
    if findings:
        icon = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
        out += [
            f"- {icon.get(f['severity'], '')} **{f['severity']}** ({_text(f['phase'])}): {_text(f['message'])}"
            for f in findings
        ]
    else:
        out.append("No finding.")
    out.append("\n### Recommendations\n")
    out += [f"{i}. {r}" for i, r in enumerate(recommendations(report), 1)]
    return "\n".join(out) + "\n\n---\n"


def _consistency(report: ReportData) -> str:
    c = report["consistency"]
    head = "All consistency checks passed." if c["passed"] else "**Some consistency checks failed: see below.**"
    rows = [[ch["name"], "✅ pass" if ch["passed"] else "❌ FAIL", ch["detail"]] for ch in c["checks"]]
    return "## Consistency checks\n\n" + head + "\n\n" + _table(["Check", "Result", "Detail"], rows) + "\n---\n"


def _artifacts(report: ReportData) -> str:
    return (
        "## Artifacts\n\n"
        f"- `report.json`: everything above, machine-readable (schema version {report['schema_version']}, "
        "documented in `docs/report-schema.md`)\n"
        "- `report.html`: the same report with charts, one offline file\n"
        "- `stress.log`: the run's log, JSON lines\n\n"
        f"*Generated by {report['tool']['name']} {report['tool']['version']} at {report['run']['finished_at']}. "
        "Every number in this file is read from report.json.*\n"
    )


def render_invalid(problems: Sequence[str]) -> str:
    """What report.md says when report.json does not match its schema: the report cannot be laid out, and
    the reader must learn why rather than get a traceback or half a report."""
    listed = "\n".join(f"- {_text(p)}" for p in problems[:50])
    more = f"\n- … and {len(problems) - 50} more" if len(problems) > 50 else ""
    return (
        "# Stress test report: invalid\n\n**Verdict: FAIL ❌**: report.json does not match its schema "
        "(docs/report-schema.md), so none of its numbers can be trusted.\n\n"
        f"## Schema problems\n\n{listed}{more}\n"
    )


def render_markdown(report: ReportData) -> str:
    """The whole report.md; `report` must be finalized (summary, consistency, verdict). An off-schema report
    gets a short page listing its schema problems instead."""
    problems = validate(report)
    if problems:
        return render_invalid(problems)
    return "\n".join(
        [
            _header(report),
            _summary(report),
            _method(report),
            _phases(report),
            _limits(report),
            _protection(report),
            _risks(report),
            _consistency(report),
            _artifacts(report),
        ]
    )
