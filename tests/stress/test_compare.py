"""`bemcp stress compare`: a slowed server is a regression (exit 1), an equal run is not (exit 0)."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest

from bemcp.stress.compare import Row, compare, compare_main, format_table, parse_threshold
from bemcp.stress.report import finalize, write_all, write_json

from .report_fixture import make_report

Report = dict[str, Any]


@pytest.fixture(scope="module")
def baseline() -> Report:
    return finalize(make_report())


@pytest.fixture(scope="module")
def slowed() -> Report:
    # The same run against a server 1.5 times slower: capacity / 1.5, latency x 1.5.
    return finalize(make_report(slow=1.5))


def row(rows: list[Row], metric: str) -> Row:
    return next(r for r in rows if r.metric == metric)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = compare_main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_an_equal_run_is_not_a_regression(baseline: Report) -> None:
    rows, regressed = compare(baseline, copy.deepcopy(baseline), 0.10)
    assert not regressed
    assert all(not r.worse and not r.improved for r in rows)
    assert all(r.change in (0.0, None) for r in rows)


def test_a_slowed_server_regresses(baseline: Report, slowed: Report) -> None:
    rows, regressed = compare(baseline, slowed, 0.10)
    assert regressed
    flagged = {r.metric for r in rows if r.regressed}
    assert {
        "sustained throughput",
        "tsunami: max sustainable concurrency",
        "rate: saturation rate",
        "soak @ 16 callers: throughput",
        "soak @ 16 callers: p99",
        "tsunami @ 16 callers: p50",
    } <= flagged
    # Steps past the old run's own limit moved too, but overload makes them noisy: shown, never gated.
    past = row(rows, "tsunami @ 64 callers: p99")
    assert past.worse and not past.gated and not past.regressed
    assert not row(rows, "average throughput").gated


def test_a_faster_server_is_better_not_a_regression(baseline: Report, slowed: Report) -> None:
    rows, regressed = compare(slowed, baseline, 0.10)
    assert not regressed
    assert row(rows, "sustained throughput").improved


def test_the_threshold_decides(baseline: Report) -> None:
    nudged = copy.deepcopy(baseline)
    nudged["summary"]["sustained_throughput"] *= 0.95  # 5% slower
    assert not compare(baseline, nudged, 0.10)[1]
    assert compare(baseline, nudged, 0.02)[1]


def test_error_rates_are_judged_on_the_scale_of_the_error_budget(baseline: Report) -> None:
    # From 0 errors, 0.05% is noise at a 10% threshold of a 1% budget; 0.5% is a regression.
    new = copy.deepcopy(baseline)
    old = copy.deepcopy(baseline)
    old["summary"]["error_rate"] = 0.0
    new["summary"]["error_rate"] = 0.0005
    assert not row(compare(old, new, 0.10)[0], "error rate (whole run)").regressed
    new["summary"]["error_rate"] = 0.005
    assert row(compare(old, new, 0.10)[0], "error rate (whole run)").regressed


def test_sub_millisecond_latency_changes_are_noise(baseline: Report) -> None:
    old, new = copy.deepcopy(baseline), copy.deepcopy(baseline)
    for r, p50 in ((old, 0.2), (new, 0.5)):
        r["phases"]["soak"]["steps"][0]["latency_ms"]["p50"] = p50
    r50 = row(compare(old, new, 0.10)[0], "soak @ 16 callers: p50")
    assert r50.change == pytest.approx(1.5) and not r50.regressed


def test_never_saturating_beats_any_saturation_rate(baseline: Report) -> None:
    never = copy.deepcopy(baseline)
    never["phases"]["rate"]["results"]["saturation_rate"] = None
    assert row(compare(never, baseline, 0.10)[0], "rate: saturation rate").regressed
    assert row(compare(baseline, never, 0.10)[0], "rate: saturation rate").improved


def test_the_table_lists_metric_old_new_change(baseline: Report, slowed: Report) -> None:
    text = format_table(compare(baseline, slowed, 0.10)[0])
    header, rule, first = text.splitlines()[:3]
    assert header.split() == ["metric", "old", "new", "change"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert first.startswith("peak throughput") and "REGRESSED" in first and "-33.3%" in first


def test_compare_main_exit_codes(baseline: Report, slowed: Report, tmp_path: Path) -> None:
    old = write_json(baseline, tmp_path / "old.json")
    new = write_json(slowed, tmp_path / "new.json")
    code, out, _ = run([str(old), str(old)])
    assert code == 0 and "no regression past 10%" in out
    code, out, _ = run([str(old), str(new), "--threshold", "10%"])
    assert code == 1 and "REGRESSED" in out and "regressions past 10%" in out
    code, out, _ = run([str(old), str(new), "--threshold", "500"])  # percent, with or without the sign
    assert code == 0


def test_compare_main_usage_and_file_errors_exit_2(baseline: Report, tmp_path: Path) -> None:
    old = write_json(baseline, tmp_path / "old.json")
    code, _, err = run([str(old), str(tmp_path / "missing.json")])
    assert code == 2 and "missing.json: no such file" in err and "Traceback" not in err
    (tmp_path / "v2.json").write_text('{"schema_version": 2}')
    code, _, err = run([str(old), str(tmp_path / "v2.json")])
    assert code == 2 and "schema version 2" in err
    code, _, err = run([str(old), str(old), "--threshold", "lots"])
    assert code == 2 and "bad --threshold" in err
    assert run([str(old)])[0] == 2  # argparse: a missing argument


def test_compare_main_fails_on_a_report_that_fails_its_consistency_checks(baseline: Report, tmp_path: Path) -> None:
    """It used to exit 0 with a warning: a comparison with a report that cannot vouch for its numbers does not count.
    A report that says it failed, and one edited after it was written (which still says it passed), exit 3."""
    old = write_json(baseline, tmp_path / "old.json")
    says = copy.deepcopy(baseline)
    says["consistency"]["passed"] = False
    says["consistency"]["checks"][2]["passed"] = False
    edited = copy.deepcopy(baseline)
    edited["summary"]["peak_throughput"] *= 3  # no bucket of the time series shows it: "summary backed by the data"
    assert edited["consistency"]["passed"] is True
    for name, report in (("says", says), ("edited", edited)):
        new = write_json(report, tmp_path / f"{name}.json")
        code, out, err = run([str(old), str(new)])
        assert code == 3, (name, out, err)
        assert "the new report failed its consistency checks" in out and "metric" in out  # the table is there
        assert "failed its consistency checks: the comparison does not count" in err
        code, _, err = run([str(new), str(old)])
        assert code == 3 and "the old report" in err
        code, _, err = run([str(new), str(new)])
        assert code == 3 and "the old and new reports" in err
    assert "summary backed by the data" in run([str(old), str(tmp_path / "edited.json")])[1]


def test_reports_written_by_write_all_compare_cleanly(tmp_path: Path) -> None:
    paths = write_all(make_report(), tmp_path / "a")
    assert run([str(paths["json"]), str(paths["json"])])[0] == 0


@pytest.mark.parametrize(("text", "value"), [("10%", 0.10), ("10", 0.10), (" 2.5% ", 0.025), ("0", 0.0)])
def test_parse_threshold(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "abc", "-5%", "5000%"])
def test_parse_threshold_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_threshold(text)
