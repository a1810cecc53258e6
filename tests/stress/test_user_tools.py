"""The stress tester loads the user's tools: the real CLI against a user's app served by a real `bemcp serve`.

What the tester says it called (report.json) is checked against what the server saw, from two sources the tester
does not keep: the app's own count of its tool's calls (`stats://calls`, see user_app.py) and the server's
`/metrics` count of every tools/call it timed (built-in `server_health` calls included), so a call to anything but
the user's tools would show as a difference.

Each run uses the quick profile and only the phases it needs: the rate phase alone (its fixed ladder, about 10 s),
or the soak before it for a closed-model load too (about 18 s).
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bemcp.stress.targets import HttpTarget
from tests.procs import HttpServer, http_server
from tests.stress.cli_run import a_verdict, check_outputs, no_traceback, stress

_TOOLS_CALL = re.compile(r'^bemcp_call_duration_seconds_count\{method="tools/call"\} (\S+)$', re.MULTILINE)


def server_tool_calls(server: HttpServer) -> int:
    """Every tools/call the server timed, whatever the tool (from its /metrics)."""
    with urllib.request.urlopen(f"{server.base}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = _TOOLS_CALL.search(text)
    assert found is not None, text[:2000]
    return int(float(found.group(1)))


def app_counts(server: HttpServer) -> dict[str, int]:
    """The app's own count of the calls each of its tools received (the `stats://calls` resource)."""

    async def read() -> dict[str, int]:
        async with HttpTarget(server.url) as target:
            session = target.session()
            try:
                msg = await session.request("resources/read", {"uri": "stats://calls"}, timeout=5)
            finally:
                await session.close()
        counts: dict[str, int] = orjson.loads(msg["result"]["contents"][0]["text"])
        return counts

    return asyncio.run(read())


def tool_calls(report: dict[str, Any]) -> dict[str, int]:
    return {t["name"]: t["calls"] for t in report["load"]["tools"]}


def unanswered(report: dict[str, Any]) -> int:
    """Calls the tester gave up on: the server may have run them without the tester counting an answer."""
    return sum(
        s["outcomes"]["timeout"] + s["outcomes"]["transport_error"]
        for p in report["phases"].values()
        for s in p["steps"]
    )


@pytest.mark.slow  # about 10 s: the quick profile's rate
def test_a_user_app_with_one_read_only_tool_gets_the_load(tmp_path: Path) -> None:
    out = tmp_path / "one"
    with http_server(app="tests.stress.user_app:one", tmp=tmp_path) as server:
        # The rate phase alone: thousands of calls on its fixed ladder, all the counts below need.
        proc = stress("--profile", "quick", "--phases", "rate", "--target", server.url, "--out", str(out))
        seen_by_app = app_counts(server)
        seen_by_server = server_tool_calls(server)
    a_verdict(proc)
    report = check_outputs(out, proc)
    load = report["load"]
    assert load["source"] == "ranked" and [e["name"] for e in load["mix"]] == ["lookup"]
    calls = tool_calls(report)
    assert calls["lookup"] >= 0.9 * load["tool_calls"] > 1000
    assert "server_health" not in calls and report["target"]["tools_used"] == ["lookup"]
    # The app saw the calls the report counts (plus any the tester gave up on), and the server saw no other.
    assert calls["lookup"] <= seen_by_app["lookup"] <= calls["lookup"] + unanswered(report)
    assert seen_by_server == seen_by_app["lookup"]
    assert "load: lookup, the target's only callable tool of its own" in proc.stderr
    md = (out / "report.md").read_text()
    assert f"| lookup | tool | 1 | 100% | {calls['lookup']:,} |" in md
    # Other HdrHistogram tools can read its histograms: the report's own check decoded every one with hdrh.
    hdr = next(c for c in report["consistency"]["checks"] if c["name"] == "HDR histograms match the percentiles")
    steps = sum(len(p["steps"]) for p in report["phases"].values())
    assert hdr["passed"] and hdr["detail"].startswith(f"{steps + 1} encoded histograms")


@pytest.mark.slow  # about 18 s: the quick profile's soak and rate
def test_tool_picks_exactly_the_tools_it_names_in_its_mix(tmp_path: Path) -> None:
    out = tmp_path / "two"
    mix = ("--tool", "forecast=3", "--tool", "geocode=1")
    with http_server(app="tests.stress.user_app:two", tmp=tmp_path) as server:
        # A closed-model phase (the soak, the shortest) and an open one: the calls are drawn differently in each.
        proc = stress("--profile", "quick", "--phases", "soak,rate", *mix, "--target", server.url, "--out", str(out))
        seen_by_app = app_counts(server)
        seen_by_server = server_tool_calls(server)
    a_verdict(proc)
    report = check_outputs(out, proc)
    load = report["load"]
    assert load["source"] == "--tool"
    assert [(e["name"], e["weight"], e["share"]) for e in load["mix"]] == [("forecast", 3, 0.75), ("geocode", 1, 0.25)]
    calls = tool_calls(report)
    assert set(calls) == {"forecast", "geocode"}  # no other tool was called
    assert calls["forecast"] / calls["geocode"] == pytest.approx(3, rel=0.03), calls
    for phase in report["phases"].values():  # every step holds the mix, not just the run as a whole
        for step in phase["steps"]:
            kinds = {k: v["calls"] for k, v in step["kinds"].items()}
            assert set(kinds) == {"forecast", "geocode"}
            assert kinds["forecast"] / kinds["geocode"] == pytest.approx(3, rel=0.05), (step["level"], kinds)
    assert set(seen_by_app) == {"forecast", "geocode"}
    assert seen_by_app["forecast"] / seen_by_app["geocode"] == pytest.approx(3, rel=0.03), seen_by_app
    assert seen_by_server == seen_by_app["forecast"] + seen_by_app["geocode"]


@pytest.mark.parametrize(
    ("revision", "methods"), [("auto", {"tools/list", "server/discover"}), ("2025-11-25", {"ping", "tools/list"})]
)
def test_a_target_with_only_writing_tools_runs_on_protocol_methods(
    tmp_path: Path, revision: str, methods: set[str]
) -> None:
    out = tmp_path / "writes"
    with http_server(app="tests.stress.user_app:writes", tmp=tmp_path) as server:
        args = ("--profile", "quick", "--phases", "rate", "--revision", revision)
        proc = stress(*args, "--target", server.url, "--out", str(out))
        seen_by_app = app_counts(server)
        seen_by_server = server_tool_calls(server)
    a_verdict(proc)
    report = check_outputs(out, proc)
    load = report["load"]
    assert load["source"] == "protocol" and {m["name"] for m in load["methods"]} == methods
    assert load["tool_calls"] == 0 and load["method_calls"] > 1000
    assert "save_note: not marked readOnlyHint" in load["note"] and "wipe: destructiveHint" in load["note"]
    assert "--allow-writes would call save_note" in (load["hint"] or "")
    # The load phases still ran, on the methods the revision has (no ping on 2026-07-28).
    steps = report["phases"]["rate"]["steps"]
    assert steps and all(set(s["kinds"]) == {f"rpc:{m}" for m in methods} for s in steps)
    assert seen_by_app == {} and seen_by_server == 0  # not one tool ran
    # The run says why and what would allow tools: on the console, in report.md and as a finding.
    assert "no tool may be called" in proc.stderr and "--allow-writes" in proc.stderr
    assert "--allow-writes" in proc.stdout  # the verdict's summary line
    md = (out / "report.md").read_text()
    assert "> ⚠️ **No tool was measured" in md and "--allow-writes would call save_note" in md
    assert any("No tool was measured" in f["message"] for f in report["findings"])


@pytest.fixture(scope="module")
def writes_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    with http_server(app="tests.stress.user_app:writes", tmp=tmp_path_factory.mktemp("writes")) as server:
        yield server


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--tool", "nope"],
            "--tool nope: the target has no tool named 'nope' (it lists: save_note, wipe, server_health)",
        ),
        (
            ["--tool", "wipe"],
            "--tool wipe: the target marks it destructiveHint, and destructive tools are never called",
        ),
        (["--tool", "save_note"], "--tool save_note: it is not marked readOnlyHint; add --allow-writes to call it"),
        (["--args", "nope={}"], "--args nope: the target has no tool named 'nope'"),
        (["--args", "save_note={bad"], "--args save_note: not valid JSON"),
        (["--tool", "save_note=0"], "--tool save_note=0: the weight must be a positive number"),
        (["--tool", "save_note=many"], "the weight 'many' is not a number"),
    ],
    ids=["unknown", "destructive", "needs-allow-writes", "args-unknown", "bad-json", "zero-weight", "nan-weight"],
)
def test_tool_and_args_mistakes_exit_2_with_one_line(
    writes_server: HttpServer, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    before = server_tool_calls(writes_server)
    proc = stress(*args, "--target", writes_server.url, "--out", str(out), timeout=60)
    no_traceback(proc)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bemcp stress:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert proc.stderr.rstrip().endswith(errors[0]) and proc.stdout == ""
    assert not (out / "report.json").exists()
    assert server_tool_calls(writes_server) == before  # refused before any load


def test_allow_writes_lets_a_writing_tool_be_named(writes_server: HttpServer, tmp_path: Path) -> None:
    """The flag the error names does what it says: the same --tool runs with --allow-writes."""
    out = tmp_path / "allowed"
    before = server_tool_calls(writes_server)
    args = ("--profile", "quick", "--phases", "rate", "--tool", "save_note", "--allow-writes")
    proc = stress(*args, "--target", writes_server.url, "--out", str(out))
    a_verdict(proc)
    report = check_outputs(out, proc)
    assert tool_calls(report) == {"save_note": report["load"]["tool_calls"]}
    made = report["load"]["tool_calls"]
    assert made <= server_tool_calls(writes_server) - before <= made + unanswered(report)
    assert app_counts(writes_server).get("wipe") is None  # destructive: never called, whatever the flags


def test_stress_help_shows_compare() -> None:
    proc = stress("--help", timeout=60)
    no_traceback(proc)
    assert proc.returncode == 0
    assert "bemcp stress compare OLD.json NEW.json [--threshold PCT]" in proc.stdout
    assert "usage: bemcp stress compare [-h] [--threshold PCT] OLD.json NEW.json" in proc.stdout
    assert "the allowed change, in percent (default 10%)" in proc.stdout
    assert "--tool NAME[=WEIGHT]" in proc.stdout and "--args NAME=JSON" in proc.stdout
