"""Reports: schema validation, each consistency check against a doctored report, the verdict rules, the three files,
and report.html rendered in headless Chromium."""

from __future__ import annotations

import copy
import json
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bemcp.stress.histogram import Histogram
from bemcp.stress.model import OUTCOMES
from bemcp.stress.progress import Progress
from bemcp.stress.report import (
    ReportFileError,
    build_summary,
    build_verdict,
    finalize,
    fmt,
    operating_steps,
    read_json,
    render_field_table,
    render_html,
    render_markdown,
    run_checks,
    validate,
    write_all,
)
from bemcp.stress.report.checks import check_throughput_order
from bemcp.stress.report.models import Report as ReportModel
from bemcp.stress.report.models_phases import Outcomes
from bemcp.stress.report.narrative import headline, key_numbers, load_rows, measured, recommendations, step_flags
from bemcp.stress.report.schema import ERROR_KINDS, json_schema, render_json_schema
from bemcp.stress.report.svg import linear_ticks, log_ticks

from .report_fixture import fresh, make_report

Report = dict[str, Any]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "report-schema.md"
JSON_SCHEMA = DOCS.with_name("report.schema.json")
# report.json files written by the previous release (`bemcp stress --profile quick --phases tsunami,rate` against
# tests/apps/demo.py served over stdio and over HTTP): what it wrote must still validate and render.
V1_REPORTS = sorted((Path(__file__).parent / "fixtures" / "reports").glob("v1-*.json"))


@pytest.fixture(scope="module")
def base() -> Report:
    return finalize(make_report())


def redo(report: Report, mutate: Callable[[Report], None], *, resummarize: bool = False) -> Report:
    """A doctored copy with fresh consistency and verdict (and summary, when the doctoring should reach it)."""
    r = fresh(report)
    if resummarize:
        r.pop("summary")
    mutate(r)
    return finalize(r)


def check(report: Report, name: str) -> dict[str, Any]:
    return next(c for c in report["consistency"]["checks"] if c["name"].startswith(name))


def criterion(report: Report, name: str) -> dict[str, Any]:
    return next(c for c in report["verdict"]["criteria"] if c["name"] == name)


def move_ok(r: Report, phase: str, step: int, outcome: str, n: int) -> None:
    """Turn n ok calls of a step into `outcome`, keeping the kinds and the time series consistent."""
    st = r["phases"][phase]["steps"][step]
    st["outcomes"]["ok"] -= n
    st["outcomes"][outcome] += n
    st["throughput"] = st["outcomes"]["ok"] / st["duration_s"]
    kind = next(iter(st["kinds"].values()))
    kind["outcomes"]["ok"] -= n
    kind["outcomes"][outcome] += n
    bucket = next(b for b in r["timeseries"] if b["phase"] == phase and b["achieved"] >= n)
    bucket["achieved"] -= n
    bucket["errors"][outcome] += n


# ---------------------------------------------------------------------------------------------------------------
# the fixture and the schema


def test_the_synthetic_report_is_valid_consistent_and_passes(base: Report) -> None:
    assert validate(base) == []
    assert base["consistency"]["passed"], base["consistency"]
    assert len(base["consistency"]["checks"]) == 13
    assert base["verdict"]["status"] == "PASS", [c for c in base["verdict"]["criteria"] if c["passed"] is False]
    assert set(base["phases"]) == {"tsunami", "avalanche", "chaos", "rate", "soak"}


def test_summary_follows_its_definitions(base: Report) -> None:
    s = base["summary"]
    steps = [st for p in base["phases"].values() for st in p["steps"]]
    assert s["total_calls"] == sum(st["calls"] for st in steps)
    assert s["peak_throughput"] == max(b["achieved"] for b in base["timeseries"])
    assert s["sustained_throughput"] == max(st["throughput"] for st in steps)
    assert s["average_throughput"] == pytest.approx(s["ok"] / sum(st["duration_s"] for st in steps))
    assert s["peak_throughput"] >= s["sustained_throughput"] * 0.9 >= s["average_throughput"] * 0.9
    assert s["peak_target_rss_bytes"] == max(x["rss_bytes"] for x in base["target_samples"])
    assert (
        build_summary(base, {"p50": 1.0, "p90": 2.0, "p99": 3.0, "p999": 4.0, "max": 5.0, "mean": 1.5})["latency_ms"][
            "p99"
        ]
        == 3.0
    )


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["run"].pop("seed"), "run.seed: missing"),
        (lambda r: r["run"].update(seed="7"), "run.seed: expected integer, got string"),
        (lambda r: r["run"].update(sede=7), "run.sede: unknown field"),
        (lambda r: r["target"].update(kind="websocket"), "target.kind: 'websocket' is not one of"),
        (lambda r: r["phases"]["soak"]["steps"][0]["outcomes"].update(ok=-1), "outcomes.ok: -1 is below the minimum"),
        (lambda r: r["phases"]["soak"]["steps"][0].update(concurrency=None), "a closed-model step needs"),
        (lambda r: r["phases"]["rate"]["steps"][0].update(offered_rate=None), "an open-model step needs"),
        (lambda r: r["phases"].update(warmup={}), "phases.warmup: unknown field"),
        (lambda r: r["timeseries"][0]["errors"].update(oops=1), "unknown key 'oops'"),
        (lambda r: r["summary"].update(error_rate=float("nan")), "summary.error_rate: nan is not a finite number"),
        (lambda r: r["consistency"].update(passed=False), "verdict.status: PASS although the consistency checks"),
        (lambda r: r.update(schema_version=2), "schema_version: 2 is not supported"),
        (lambda r: r["summary"].update(total_calls=True), "summary.total_calls: expected integer, got boolean"),
        (lambda r: r["summary"].update(total_calls=3.0), "summary.total_calls: expected integer, got number"),
        (lambda r: r["summary"].update(error_rate=1.5), "summary.error_rate: 1.5 is above the maximum 1"),
        (lambda r: r["summary"].update(peak_throughput=float("inf")), "peak_throughput: inf is not a finite"),
        (lambda r: r["phases"]["rate"]["steps"][0].update(sender_behind=None), "expected boolean, got null"),
        (
            lambda r: r["verdict"]["criteria"][0].update(measured=[1]),
            "verdict.criteria[0].measured: expected number or string or boolean, got array",
        ),
        (
            lambda r: r["target_samples"][0].update(memory_level=1.5),
            "target_samples[0].memory_level: expected integer or string, got number",
        ),
        (lambda r: r["run"]["phases"].append("warmup"), "run.phases[5]: 'warmup' is not one of"),
    ],
)
def test_validate_names_the_problem(base: Report, mutate: Callable[[Report], Any], expected: str) -> None:
    r = copy.deepcopy(base)
    mutate(r)
    problems = validate(r)
    assert any(expected in p for p in problems), problems


def test_validate_allows_open_objects_and_a_report_under_construction(base: Report) -> None:
    r = copy.deepcopy(base)
    r["target_samples"][0]["event_loop_lag_ms"] = 3.5  # extra scraped metrics are allowed
    r["findings"][0]["data"] = {"anything": [1, {"nested": None}]}
    assert validate(r) == []
    r.pop("verdict")
    assert any("verdict: missing" in p for p in validate(r))
    assert validate(r, require_results=False) == []
    assert validate([]) == ["the report must be an object, got array"]


def test_the_schema_doc_is_current() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    assert render_field_table() in doc, "regenerate the table: python -m bemcp.stress.report.schema"
    assert "report schema, version 1" in doc


def test_the_published_json_schema_is_current() -> None:
    published = JSON_SCHEMA.read_text(encoding="utf-8")
    assert published == render_json_schema(), "regenerate: python -m bemcp.stress.report.schema --json-schema"
    assert json.loads(published) == json_schema()


def test_the_models_name_every_outcome() -> None:
    assert tuple(Outcomes.model_fields) == OUTCOMES
    assert tuple(o for o in OUTCOMES if o != "ok") == ERROR_KINDS


def test_the_published_json_schema_is_a_json_schema_that_judges_reports_like_the_models(base: Report) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(JSON_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for report in [base, *(read_json(p) for p in V1_REPORTS)]:
        assert list(validator.iter_errors(report)) == []
    doctored = [
        lambda r: r["target"].update(kind="websocket"),
        lambda r: r["run"].update(seed=True),
        lambda r: r["phases"]["soak"]["steps"][0].update(concurrency=None),
        lambda r: r["consistency"].update(passed=False),
        lambda r: r["timeseries"][0]["errors"].update(oops=1),
        lambda r: r.update(schema_version=2),
    ]
    for i, mutate in enumerate(doctored):
        r = copy.deepcopy(base)
        mutate(r)
        assert validate(r) != [], i
        assert list(validator.iter_errors(r)) != [], i


@pytest.mark.parametrize("path", V1_REPORTS, ids=lambda p: p.stem)
def test_reports_of_the_previous_release_still_validate_and_render(path: Path) -> None:
    report = read_json(path)
    assert validate(report) == []
    typed = ReportModel.model_validate(report)
    assert typed.target.kind == report["target"]["kind"] and typed.run.phases == ["tsunami", "rate"]
    assert run_checks(report)["passed"], [c for c in run_checks(report)["checks"] if not c["passed"]]
    status = report["verdict"]["status"]
    assert f"**Verdict: {status}" in render_markdown(report)
    assert f'class="badge {status}"' in render_html(report)


def test_there_are_reports_of_the_previous_release() -> None:
    assert [p.name for p in V1_REPORTS] == ["v1-http-demo.json", "v1-stdio-demo.json"]


# ---------------------------------------------------------------------------------------------------------------
# consistency checks: each one catches a doctored report, and a failed check means FAIL


def _set(path: str, value: Any) -> Callable[[Report], None]:
    def mutate(r: Report) -> None:
        *head, last = path.split(".")
        node: Any = r
        for key in head:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value(node[last]) if callable(value) else value

    return mutate


def _seed_claims(r: Report) -> None:
    # The seed report's contradiction: "sustained 2,800-3,200 ops/s" against a peak of 883 ops/s.
    r["summary"]["peak_throughput"] = 883.4
    r["summary"]["sustained_throughput"] = 3000.0


def _swap_buckets(r: Report) -> None:
    ts = r["timeseries"]
    ts[3]["t"], ts[4]["t"] = ts[4]["t"], ts[3]["t"]


def _halve_series(r: Report) -> None:
    for b in r["timeseries"]:
        b["achieved"] //= 2


@pytest.mark.parametrize(
    ("mutate", "failing"),
    [
        (_seed_claims, "peak ≥ sustained ≥ average"),
        (_set("phases.tsunami.steps.0.outcomes.ok", lambda v: v + 1), "outcome counts add up"),
        (_set("summary.total_calls", lambda v: v + 10), "outcome counts add up"),
        (_set("phases.chaos.steps.0.kinds.echo.calls", lambda v: v - 5), "outcome counts add up"),
        (_set("summary.average_throughput", lambda v: v * 0.5), "summary backed by the data"),
        (_halve_series, "time series matches the steps"),
        (_set("phases.soak.steps.0.throughput", lambda v: v * 1.5), "step rates match counts"),
        (_set("phases.tsunami.steps.3.latency_ms.mean", lambda v: v * 3), "Little's law"),
        (_set("phases.tsunami.steps.0.latency_ms.p90", lambda v: v * 10), "percentiles monotone"),
        (_set("timeseries.5.p50_ms", 1e6), "percentiles monotone"),
        (_swap_buckets, "time series ordered"),
        (_set("phases.soak.duration_s", lambda v: v + 100), "durations add up"),
        (_set("run.duration_s", lambda v: v * 2), "durations add up"),
        (_set("phases.tsunami.results.max_sustainable_concurrency", 64), "limits backed by steps"),
        (_set("phases.rate.results.saturation_rate", 4000.0), "limits backed by steps"),
        (_set("phases.avalanche.results.largest_accepted_mb", 1024), "limits backed by steps"),
        (_set("load.tools.0.calls", lambda v: v + 1), "load shares match the steps"),
        (_set("load.tools.1.share", lambda v: v * 2), "load shares match the steps"),
        (_set("load.mix.0.share", 0.5), "load shares match the steps"),
    ],
)
def test_each_check_catches_a_doctored_report(base: Report, mutate: Callable[[Report], None], failing: str) -> None:
    r = redo(base, mutate)
    assert not check(r, failing)["passed"], check(r, failing)
    assert not r["consistency"]["passed"]
    assert r["verdict"]["status"] == "FAIL"
    assert criterion(r, "report consistency")["passed"] is False


@pytest.mark.parametrize(("extra", "passed"), [(0, True), (40, True), (10_000, False)])
def test_the_series_may_hold_a_few_calls_outside_the_steps(base: Report, extra: int, passed: bool) -> None:
    def probes(r: Report) -> None:  # discovery and health probes are recorded in the series only
        r["timeseries"][0]["offered"] += extra
        r["timeseries"][0]["achieved"] += extra

    assert check(redo(base, probes), "time series matches")["passed"] is passed


def test_a_report_off_schema_gets_only_the_schema_check(base: Report) -> None:
    r = fresh(base)
    del r["phases"]["soak"]["steps"][0]["latency_ms"]
    consistency = run_checks(r)
    assert [c["name"] for c in consistency["checks"]] == ["matches schema v1"]
    assert not consistency["passed"]
    assert "latency_ms: missing" in consistency["checks"][0]["detail"]


def test_littles_law_tolerance(base: Report) -> None:
    # Within ±(25% + N/calls) passes; a client-bound step may show fewer calls in flight than callers (the
    # tester's own gaps), never more.
    assert check(redo(base, _set("phases.soak.steps.0.latency_ms.mean", lambda v: v * 1.2)), "Little")["passed"]
    assert not check(redo(base, _set("phases.soak.steps.0.latency_ms.mean", lambda v: v * 0.5)), "Little")["passed"]
    bound = "phases.tsunami.steps.4"  # the client-bound step at 64 callers
    assert base["phases"]["tsunami"]["steps"][4]["client_bound"]
    assert check(redo(base, _set(f"{bound}.latency_ms.mean", lambda v: v * 0.5)), "Little")["passed"]
    assert not check(redo(base, _set(f"{bound}.latency_ms.mean", lambda v: v * 1.6)), "Little")["passed"]
    # One call per caller: the step's edges are the whole step, so it is not judged.
    assert "too short to check" in check(base, "Little")["detail"]


def test_littles_law_allows_the_callers_gap_up_to_the_testers_busy_share(base: Report) -> None:
    """Against a server that answers in a fraction of a millisecond, a caller's gap between an answer and its next
    send (waiting for the tester's busy event loop) is a real share of each cycle: λ·W may fall short of N by as
    much as the tester's CPU was busy, never more."""
    soak = "phases.soak.steps.0"
    step = base["phases"]["soak"]["steps"][0]
    assert not step["client_bound"] and step["concurrency"] / step["calls"] < 0.01

    def gap(cpu: float) -> Callable[[Report], None]:
        def mutate(r: Report) -> None:
            _set(f"{soak}.latency_ms.mean", lambda v: v * 0.5)(r)  # λ·W at half of N
            _set(f"{soak}.client_cpu_percent", cpu)(r)

        return mutate

    assert check(redo(base, gap(60.0)), "Little")["passed"]
    assert not check(redo(base, gap(40.0)), "Little")["passed"]


@pytest.mark.parametrize(("peak", "passed"), [(500, True), (460, True), (440, False)])
def test_peak_allows_for_bucket_alignment_of_short_steps(peak: int, passed: bool) -> None:
    # A 1-s step at 1,000 ok/s from t=0.5 to t=1.5 puts 500 calls in each of two buckets: the best bucket shows
    # half the step's rate, so the floor is 0.9 x min(1, 1 s / 2 s) x sustained = 450/s.
    report = {
        "run": {"timeseries_interval_s": 1.0},
        "phases": {"rate": {"steps": [{"throughput": 1000.0, "duration_s": 1.0}]}},
        "timeseries": [{"achieved": peak}, {"achieved": peak}],
        "summary": {"peak_throughput": float(peak), "sustained_throughput": 1000.0, "average_throughput": 1000.0},
    }
    assert check_throughput_order(report)["passed"] is passed


# ---------------------------------------------------------------------------------------------------------------
# verdict


def test_verdict_lists_every_criterion_with_its_measured_value(base: Report) -> None:
    names = [c["name"] for c in base["verdict"]["criteria"]]
    assert names == [
        "load applied",
        "p99 latency at sustainable load",
        "error rate at sustainable load",
        "no crash",
        "memory within budget",
        "clean memory rejections",
        "memory released after avalanche",
        "chaos survived, all answered",
        "no memory leak in soak",
        "no critical findings",
        "report consistency",
    ]
    p99 = criterion(base, "p99 latency at sustainable load")
    # The worst operating step: tsunami at 48 callers (96 ms); the overload steps past the limits do not count.
    assert p99["measured"] == 96.0 and p99["unit"] == "ms" and p99["passed"] is True
    assert criterion(base, "memory within budget")["measured"] == base["summary"]["peak_target_rss_bytes"]


def test_operating_steps_stop_at_the_discovered_limits(base: Report) -> None:
    pairs, where = operating_steps(base)
    levels = sorted((st["model"], st["level"]) for _, st in pairs)
    assert ("closed", 56) not in levels and ("closed", 64) not in levels
    assert ("open", 2000.0) not in levels and ("open", 1000.0) in levels
    assert where == ["tsunami ≤ 48 callers", "rate < 2,000 calls/s", "soak"]
    no_limit = redo(base, _set("phases.tsunami.results.max_sustainable_concurrency", None))
    tsunami = [st["level"] for phase, st in operating_steps(no_limit)[0] if phase == "tsunami"]
    assert tsunami == [4]  # none sustainable: judged at the start level


def _slow_soak(r: Report) -> None:
    r["phases"]["soak"]["steps"][0]["latency_ms"].update(p99=150.0, p999=200.0, max=300.0)


def _kill(r: Report) -> None:
    r["target"]["alive_at_end"] = False
    r["target"]["deaths"] = [{"t": 60.0, "phase": "rate", "detail": "exit code -9"}]


@pytest.mark.parametrize(
    ("mutate", "name", "passed", "status"),
    [
        (_slow_soak, "p99 latency at sustainable load", False, "FAIL"),
        (_kill, "no crash", False, "FAIL"),
        (_set("target.memory_budget_bytes", 500 * 1024 * 1024), "memory within budget", False, "FAIL"),
        (_set("target.memory_budget_bytes", None), "memory within budget", None, "PASS"),
        (_set("phases.avalanche.results.rss_after_bytes", 400 * 1024 * 1024), "memory released after", False, "FAIL"),
        (_set("phases.avalanche.results.rss_before_bytes", None), "memory released after", None, "PASS"),
        (_set("phases.chaos.results.answered_all", False), "chaos survived, all answered", False, "FAIL"),
        (_set("phases.soak.results.leak_verdict", "leak"), "no memory leak in soak", False, "FAIL"),
        (_set("phases.soak.results.leak_verdict", "possible_leak"), "no memory leak in soak", True, "PASS"),
        (_set("phases.soak.results.leak_verdict", "inconclusive"), "no memory leak in soak", None, "PASS"),
        (
            lambda r: r["findings"].append({"severity": "critical", "phase": "run", "message": "x", "data": {}}),
            "no critical findings",
            False,
            "FAIL",
        ),
    ],
)
def test_verdict_rules(
    base: Report, mutate: Callable[[Report], Any], name: str, passed: bool | None, status: str
) -> None:
    r = redo(base, mutate, resummarize=True)
    assert r["consistency"]["passed"], r["consistency"]
    c = next(c for c in r["verdict"]["criteria"] if c["name"].startswith(name))
    assert c["passed"] is passed, c
    assert r["verdict"]["status"] == status


def test_errors_at_the_operating_load_fail_but_errors_past_the_limit_do_not(base: Report) -> None:
    # 1.5% timeouts in the soak (an operating step) break the 1% budget: the worst operating step counts.
    r = redo(base, lambda r: move_ok(r, "soak", 0, "timeout", 600), resummarize=True)
    assert r["consistency"]["passed"], r["consistency"]
    assert criterion(r, "error rate at sustainable load")["passed"] is False
    assert r["verdict"]["status"] == "FAIL"
    # The same timeouts in the tsunami step past the limit (64 callers) are how the limit was found.
    r = redo(base, lambda r: move_ok(r, "tsunami", 4, "timeout", 600), resummarize=True)
    assert r["consistency"]["passed"], r["consistency"]
    assert criterion(r, "error rate at sustainable load")["passed"] is True
    # Avalanche errors are judged on their own: refusals must be clean.
    r = redo(base, lambda r: move_ok(r, "avalanche", 4 - 1, "transport_error", 1), resummarize=True)
    assert criterion(r, "clean memory rejections")["passed"] is False


def test_no_load_is_never_a_pass() -> None:
    r = make_report()
    r["phases"] = {}
    r["run"]["phases"] = []
    r["timeseries"] = []
    r["limits"] = []
    r["load"].update(tool_calls=0, tools=[])  # no step, no tool call
    finalize(r)
    assert validate(r) == []
    assert r["consistency"]["passed"]
    assert criterion(r, "load applied")["passed"] is False
    assert criterion(r, "p99 latency at sustainable load")["passed"] is None
    assert r["verdict"]["status"] == "FAIL"


def test_build_verdict_runs_the_checks_when_missing(base: Report) -> None:
    r = fresh(base)
    r["summary"]["sustained_throughput"] = 1e9
    verdict = build_verdict(r)
    assert verdict["status"] == "FAIL"


# ---------------------------------------------------------------------------------------------------------------
# the three files


def test_markdown_follows_the_seed_layout_with_this_reports_numbers(base: Report) -> None:
    md = render_markdown(base)
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Summary",
        "## Method",
        "## Results by phase",
        "## Discovered limits",
        "## Protection events",
        "## Risks and recommendations",
        "## Consistency checks",
        "## Artifacts",
    ]
    s = base["summary"]
    assert "**Verdict: PASS ✅**" in md
    assert f"| Total calls | {s['total_calls']:,} |" in md
    assert f"| Peak throughput | {s['peak_throughput']:,.0f}/s |" in md
    assert "**Maximum sustainable concurrency: 48** (first bad level: 56)" in md
    assert "**Highest rate kept up with: 1,000/s**; saturation (the first offered rate that failed): **2,000/s**" in md
    assert "### Environment" in md and "| CPUs | 8 |" in md
    for phase in ("Tsunami", "Avalanche", "Chaos", "Rate", "Soak"):
        assert f": {phase}: " in md
    assert "| max sustainable concurrency | 48 callers | high | tsunami |" in md
    assert "| concurrency_limit | 12,345 |" in md
    assert "Keep concurrency at or below 48" in md
    assert "client-bound" in md
    assert "production" not in md.lower()  # no self-approval, only measurements


def test_markdown_and_html_say_when_consistency_failed(base: Report) -> None:
    r = redo(base, _seed_claims)
    md = render_markdown(r)
    assert "**Verdict: FAIL ❌**" in md and "This report failed its consistency checks" in md
    assert "| peak ≥ sustained ≥ average throughput | ❌ FAIL |" in md
    html = render_html(r)
    assert "This report failed its consistency checks" in html and 'class="badge FAIL"' in html


def test_html_is_self_contained_with_charts_and_key_numbers(base: Report) -> None:
    html = render_html(base)
    assert html.startswith("<!DOCTYPE html>")
    lowered = html.lower()
    for forbidden in ("<script", "<link", "@import", "url(", "src=", "href=", "https://"):
        assert forbidden not in lowered, forbidden
    assert lowered.count("http://") == lowered.count('xmlns="http://www.w3.org/2000/svg"')  # namespaces only
    assert html.count("<svg") == 8  # 3 over time, 4 against load, 1 error breakdown
    for label in (
        'aria-label="throughput over time"',
        'aria-label="latency over time"',
        'aria-label="target memory over time"',
        'aria-label="throughput against concurrency"',
        'aria-label="p99 against concurrency"',
        'aria-label="non-ok answers by phase"',
    ):
        assert label in html
    assert "budget 800.0 MiB" in html and "SLO p99 100 ms" in html and "max sustainable 48" in html
    assert 'class="badge PASS"' in html
    assert f"{base['summary']['total_calls']:,}" in html
    assert "<h2>Discovered limits</h2>" in html and "<h2>Phases</h2>" in html and "<h2>Verdict</h2>" in html


def test_html_and_markdown_escape_what_the_target_sent(base: Report) -> None:
    hostile = "<script>alert(1)</script> | x"

    def inject(r: Report) -> None:
        r["target"]["server_info"] = {"name": hostile, "version": "1"}
        r["limits"][0]["how"] = hostile
        r["findings"].append({"severity": "info", "phase": "chaos", "message": hostile, "data": {}})
        r["target"]["skipped_tools"][hostile] = "destructiveHint"

    r = redo(base, inject)
    html = render_html(r)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = render_markdown(r)
    assert "<script" not in md.lower()  # markdown renderers pass raw HTML through
    assert "\\| x" in md  # a pipe inside a table cell cannot break the table


def test_write_all_round_trips(tmp_path: Path) -> None:
    report = make_report()
    paths = write_all(report, tmp_path / "out")
    assert set(paths) == {"json", "md", "html"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json", "report.md"]
    back = read_json(paths["json"])
    assert back == report
    assert validate(back) == [] and back["verdict"]["status"] == "PASS"
    assert paths["md"].read_text(encoding="utf-8") == render_markdown(back)


def test_an_off_schema_report_is_still_written_and_says_why(tmp_path: Path) -> None:
    report = make_report()
    report["phases"]["soak"]["steps"][0]["duration_s"] = "twenty"
    del report["environment"]
    paths = write_all(report, tmp_path)
    assert report["verdict"]["status"] == "FAIL"
    assert report["verdict"]["criteria"][0]["name"] == "report consistency"
    md = paths["md"].read_text(encoding="utf-8")
    assert "report.json does not match its schema" in md and "environment: missing" in md
    html = paths["html"].read_text(encoding="utf-8")
    assert 'class="badge FAIL"' in html and "duration_s: expected number, got string" in html
    assert read_json(paths["json"])["verdict"]["status"] == "FAIL"


def test_read_json_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    with pytest.raises(ReportFileError, match="no such file"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ReportFileError, match="not JSON"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(ReportFileError, match="not a bemcp stress report"):
        read_json(tmp_path / "other.json")
    (tmp_path / "v9.json").write_text('{"schema_version": 9}')
    with pytest.raises(ReportFileError, match="schema version 9"):
        read_json(tmp_path / "v9.json")


def test_axis_ticks_are_round_numbers() -> None:
    assert linear_ticks(0, 2412) == (0, 2500, [0, 500, 1000, 1500, 2000, 2500])
    lo, hi, ticks = log_ticks(6.8, 533)
    assert lo <= 6.8 and hi >= 533 and ticks[0] >= lo and 10 in ticks and 100 in ticks
    assert log_ticks(0.5, 5e5)[2] == [1, 10, 100, 1000, 10000, 100000]


# ---------------------------------------------------------------------------------------------------------------
# rendering in a real browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
@pytest.mark.timeout(90)
def test_html_renders_in_headless_chromium(base: Report, tmp_path: Path) -> None:
    paths = write_all(copy.deepcopy(base), tmp_path / "out")
    png = tmp_path / "report.png"
    browser = _chromium()
    assert browser is not None
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400", f"--screenshot={png}",
         paths["html"].resolve().as_uri()],
        check=False, capture_output=True, timeout=60,
    )  # fmt: skip
    assert png.exists(), "chromium wrote no screenshot"
    data = png.read_bytes()
    width, height, raw = _png_pixels(data)
    assert (width, height) == (1280, 2400)
    assert len(data) > 50_000  # a blank or error page compresses to a few KB
    # Charts, text and colour: a rendered page has many distinct byte values in every band of the image.
    band = len(raw) // 4
    for i in range(4):
        assert len(set(raw[i * band : (i + 1) * band : 7])) > 40, f"band {i} looks empty"


# ---------------------------------------------------------------------------------------------------------------
# honest headlines: the threshold's unit, the rate kept up with, a sender that fell behind


def test_verdict_values_are_shown_in_the_thresholds_unit(base: Report, capsys: pytest.CaptureFixture[str]) -> None:
    r = redo(base, _set("target.memory_budget_bytes", 20 * 1024**3))
    memory = criterion(r, "memory within budget")
    peak = r["summary"]["peak_target_rss_bytes"]
    assert memory["threshold"] == "≤ 20.0 GiB" and memory["threshold_value"] == 20 * 1024**3
    assert measured(memory) == f"{fmt.number(peak / 1024**3)} GiB"  # not raw bytes, nor MiB against GiB
    assert f"| memory within budget | ≤ 20.0 GiB | {measured(memory)} | ✅ pass |" in render_markdown(r)
    assert f"<td>{measured(memory)}</td>" in render_html(r)
    Progress(live=False).verdict(r, {})
    assert f"memory within budget: {measured(memory)} (threshold ≤ 20.0 GiB)" in capsys.readouterr().out
    # An SLO of 20 s puts the measured p99 in seconds too; a fraction stays a percentage.
    slow = redo(base, _set("thresholds.slo_p99_ms", 20_000.0))
    p99 = criterion(slow, "p99 latency at sustainable load")
    assert p99["threshold"] == "≤ 20 s" and measured(p99) == f"{fmt.number(p99['measured'] / 1000)} s"
    errors = criterion(base, "error rate at sustainable load")
    assert measured(errors) == fmt.pct(errors["measured"]) and errors["threshold"] == "≤ 1%"


def test_key_numbers_lead_with_the_highest_rate_kept_up_with(base: Report) -> None:
    rate, th = base["phases"]["rate"], base["thresholds"]
    good, sat = rate["results"]["max_good_rate"], rate["results"]["saturation_rate"]
    assert good is not None and sat is not None and good < sat
    kept = next(s for s in rate["steps"] if s["level"] == good)
    failed = next(s for s in rate["steps"] if s["level"] == sat)
    rows = key_numbers(base)
    assert rows[0] == [
        "Highest rate kept up with",
        f"{fmt.rate(good)} offered ({fmt.rate(kept['throughput'])} achieved)",
    ]
    label, text = rows[1]
    assert label == "Saturation: first offered rate that failed"
    assert text.startswith(f"{fmt.rate(sat)} offered ({fmt.rate(failed['throughput'])} achieved")
    if failed["latency_ms"]["p99"] > th["slo_p99_ms"]:  # what made it fail is said
        assert f"p99 {fmt.ms(failed['latency_ms']['p99'])} > {fmt.ms(th['slo_p99_ms'])}" in text
    assert "Saturation rate" not in [k for k, _ in rows]  # the old bare headline is gone
    # Without a rate phase: the highest closed-model load within the thresholds leads.
    no_rate = copy.deepcopy(base)
    del no_rate["phases"]["rate"]
    best = no_rate["phases"]["tsunami"]["results"]["max_sustainable_concurrency"]
    top = max((s for s in no_rate["phases"]["tsunami"]["steps"] if s["level"] == best), key=lambda s: s["throughput"])
    assert headline(no_rate) == [["Highest load kept up with", f"{best} callers ({fmt.rate(top['throughput'])} ok)"]]
    # A rate phase whose lowest rate already failed says so.
    failing = copy.deepcopy(base)
    failing["phases"]["rate"]["results"].update(max_good_rate=None, saturation_rate=250.0)
    assert headline(failing)[0] == ["Highest rate kept up with", "none: 250/s offered already failed"]


def test_an_open_step_whose_sender_fell_behind_is_flagged_like_a_client_bound_one(base: Report) -> None:
    def behind(r: Report) -> None:
        st = r["phases"]["rate"]["steps"][0]
        st.update(sent_late=st["calls"] // 5, sender_behind=True)

    r = redo(base, behind)
    st = r["phases"]["rate"]["steps"][0]
    assert step_flags(st, r["thresholds"], "rate") == ["sender behind"]
    assert any("The sender fell behind its schedule in 1 open-model step" in x for x in recommendations(r))
    row = next(line for line in render_markdown(r).splitlines() if line.startswith(f"| {fmt.number(st['level'])} |"))
    assert row.endswith("| sender behind |")
    html = render_html(r)
    assert '<span class="flag">sender behind</span>' in html
    # About the tester, not the target: like client-bound, it does not mark the step's row as bad.
    assert html.count('<tr class="bad">') == render_html(base).count('<tr class="bad">')
    assert r["consistency"]["passed"]


def test_reports_name_the_tools_that_carried_the_load_and_their_shares(base: Report) -> None:
    load = base["load"]
    echo = next(t for t in load["tools"] if t["name"] == "echo")
    assert load_rows(base)[0] == ["echo", "tool", "1", "100%", fmt.integer(echo["calls"]), fmt.pct(echo["share"])]
    md = render_markdown(base)
    assert "### Load" in md
    assert f"| echo | tool | 1 | 100% | {fmt.integer(echo['calls'])} | {fmt.pct(echo['share'])} |" in md
    others = [t for t in load["tools"] if t["name"] != "echo"]
    assert others  # the chaos and avalanche tools are listed with their shares too, outside the mix
    for t in others:
        assert f"| {t['name']} | tool | — | — | {fmt.integer(t['calls'])} | {fmt.pct(t['share'])} |" in md
    html = render_html(base)
    assert "<h2>Load</h2>" in html and f"<td>{fmt.integer(echo['calls'])}</td>" not in html  # numeric cells
    assert f'<td class="n">{fmt.integer(echo["calls"])}</td>' in html


def test_a_protocol_method_run_says_no_tool_was_measured_and_which_flag(base: Report) -> None:
    r = fresh(base)
    r["load"] = {
        "source": "protocol",
        "note": "the protocol methods tools/list and server/discover: no tool may be called "
        "(save_note: not marked readOnlyHint)",
        "hint": "--allow-writes would call save_note",
        "mix": [
            {"name": m, "kind": "method", "weight": 1.0, "share": 0.5, "arguments": "none"}
            for m in ("tools/list", "server/discover")
        ],
        "tool_calls": 0,
        "tools": [],
        "method_calls": 0,
        "methods": [],
    }
    finalize(r)
    md = render_markdown(r)
    assert "> ⚠️ **No tool was measured: the load ran on the protocol methods tools/list and server/discover" in md
    assert "--allow-writes would call save_note" in md
    html = render_html(r)
    assert '<div class="banner warn"><b>No tool was measured' in html and "--allow-writes" in html
    assert any("No tool of the target was under load" in x for x in recommendations(r))


def test_the_hdr_check_decodes_every_encoded_histogram(base: Report) -> None:
    """A rate step whose latencies are a real histogram: its encoding passes; a wrong one is caught."""
    step_calls = base["phases"]["rate"]["steps"][0]["calls"]

    def histogram(n: int, scale: int) -> Histogram:
        h = Histogram()
        for i in range(n):
            h.record(scale * (8000 + (i * 37) % 4000))  # 8..12 ms: within the SLO, like the step it replaces
        return h

    def with_hdr(h: Histogram, summary: Histogram | None = None) -> Callable[[Report], None]:
        def mutate(r: Report) -> None:
            st = r["phases"]["rate"]["steps"][0]
            st["latency_ms"] = (summary or h).summary()
            st["latency_hdr"] = h.encode()

        return mutate

    right = histogram(step_calls, 1)
    assert check(redo(base, with_hdr(right)), "HDR histograms")["passed"]
    assert redo(base, with_hdr(right))["consistency"]["passed"]
    slower = check(redo(base, with_hdr(histogram(step_calls, 2), summary=right)), "HDR histograms")
    assert not slower["passed"] and "p50" in slower["detail"]
    short = check(redo(base, with_hdr(histogram(step_calls - 1, 1), summary=right)), "HDR histograms")
    assert not short["passed"] and f"for {step_calls} calls" in short["detail"]
    broken = redo(base, _set("phases.rate.steps.0.latency_hdr", "HISTFAAAAnot-base64!"))
    assert "does not decode" in check(broken, "HDR histograms")["detail"]
