"""The tasks phase: many concurrent MCP tasks against real servers (both revisions, HTTP and stdio), the skip
against a server without task tools, the report section (schema, verdict, renderers, compare), and, marked slow,
`--chaos-restart`: the supervised embedded server SIGKILLed mid-phase loses no task, and a server whose task store
does not survive the kill (`--task-store memory`) is caught losing them."""

from __future__ import annotations

import copy
import dataclasses
import io
import random
import shlex
from pathlib import Path
from typing import Any

import pytest

from bemcp.stress.compare import compare, compare_main
from bemcp.stress.discovery import Discovery, Tool
from bemcp.stress.phases.task_engine import TaskRun, answer_for, unfinished_peak
from bemcp.stress.profiles import PROFILES
from bemcp.stress.report import finalize, render_html, render_markdown, validate, write_json
from bemcp.stress.runner import StressOptions, run
from bemcp.stress.tasks_client import offers_tasks, parse_task
from tests.procs import BEMCP, http_server
from tests.stress.cli_run import a_verdict, check_outputs, stress

from .report_fixture import fresh, make_report

Report = dict[str, Any]
TERMINAL_COUNTS = ("completed", "failed", "cancelled", "unresolved")


def check_tasks(report: Report, *, asks: bool = True) -> dict[str, Any]:
    """What every tasks phase against BE-MCP must show: completed, nothing lost, every count adding up."""
    phase = report["phases"]["tasks"]
    assert phase["status"] == "completed", phase.get("notes")
    assert phase["steps"] == [] and phase["level_unit"] == "tasks"
    r = phase["results"]
    assert r["tool"] == "task_job" and r["results_checked"] is True
    assert r["lost"] == 0, r
    assert r["steps"] and r["max_concurrent_tasks"] == r["steps"][-1]["level"]
    for s in r["steps"]:
        assert s["created"] + s["refused"] + s["create_errors"] + s["sync_results"] == s["level"]
        assert s["created"] == s["completed"] + s["failed"] + s["cancelled"], s  # none unresolved
        assert s["unresolved"] == 0 and s["lost"] == 0 and s["good"] is True
        assert s["refused"] == 0 and s["create_errors"] == 0 and s["failed"] == 0, s
        assert s["cancels_won"] <= s["cancels_sent"] and s["unrequested_cancels"] == 0
        assert s["create_ms"] is not None and s["create_ms"]["p50"] <= s["create_ms"]["p99"]
        assert s["complete_ms"] is not None and s["complete_ms"]["p50"] <= s["complete_ms"]["p99"]
        assert s["requests"]["tools/call"] == s["level"]
    asked = sum(s["asked"] for s in r["steps"])
    answers = sum(s["answers"] for s in r["steps"])
    cancels = sum(s["cancels_sent"] for s in r["steps"])
    assert cancels > 0 and sum(s["cancelled"] for s in r["steps"]) > 0
    if asks:
        assert asked > 0 and answers >= asked, (asked, answers)  # every question was answered
    else:
        assert asked == 0 and answers == 0
    verdict = {c["name"]: c for c in report["verdict"]["criteria"]}
    assert verdict["no lost tasks"]["passed"] is True and verdict["no lost tasks"]["measured"] == 0
    return r


# -- real runs -----------------------------------------------------------------------------------------------------


def test_the_quick_tasks_phase_against_the_embedded_server(tmp_path: Path) -> None:
    """`bemcp stress --phases tasks` (the real CLI, the real embedded server): doubling to the quick ceiling."""
    out = tmp_path / "tasks"
    proc = stress("--profile", "quick", "--phases", "tasks", "--out", str(out), timeout=120)
    a_verdict(proc)
    report = check_outputs(out, proc)
    assert report["verdict"]["status"] == "PASS", [c for c in report["verdict"]["criteria"] if c["passed"] is False]
    r = check_tasks(report)
    quick = PROFILES["quick"]
    assert [s["level"] for s in r["steps"]] == [8, 16, 32, 64, 128] == [quick.tasks_start * 2**i for i in range(5)]
    assert r["protocol"] == "2026-07-28" and r["stop_reason"] == "max level reached"
    assert all(s["requests"].get("tasks/update", 0) == s["answers"] for s in r["steps"])
    # The store is the embedded server's own, under --out, and it grew.
    assert (out / "state" / "tasks.sqlite3").exists()
    last = r["steps"][-1]
    assert last["store_bytes_after"] > last["store_bytes_before"] > 0
    assert report["target"]["tools_used"] == ["task_job"]
    assert "load applied" in {c["name"] for c in report["verdict"]["criteria"] if c["passed"]}
    assert report["summary"]["total_calls"] == 0 and report["summary"]["latency_ms"] is None  # tasks are not steps
    limit = next(lim for lim in report["limits"] if lim["phase"] == "tasks")
    assert limit["value"] == 128 and limit["confidence"] == "medium"  # the ramp's ceiling
    md = (out / "report.md").read_text()
    assert "### Phase 1: Tasks" in md and "| Tasks at once | Created | Completed |" in md
    assert "| 128 | 128 |" in md
    assert "Tasks at once" in (out / "report.html").read_text()
    assert "  tasks     level      128:" in proc.stdout + proc.stderr  # the progress lines


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> str:
    """A profile whose tasks phase stops at 32 tasks at once (the in-process runs below)."""
    monkeypatch.setitem(PROFILES, "tiny", dataclasses.replace(PROFILES["quick"], name="tiny", tasks_max=32))
    return "tiny"


async def _run(out: Path, target: str, profile: str, **options: Any) -> Report:
    opts = StressOptions(target=target, profile=profile, phases=("tasks",), out=out, quiet=True, **options)
    report, _ = await run(opts, lambda line: None)
    assert validate(report) == [] and report["consistency"]["passed"], report["consistency"]
    return report


async def test_2025_11_25_answers_questions_on_the_tasks_result_stream(tmp_path: Path, tiny: str) -> None:
    report = await _run(tmp_path / "v1", "embedded", tiny, revision="2025-11-25")
    r = check_tasks(report)
    assert r["protocol"] == "2025-11-25" and report["target"]["revision"] == "2025-11-25"
    steps = r["steps"]
    # Results come from tasks/result; questions were answered on its stream (no tasks/update on this revision).
    assert sum(s["requests"].get("tasks/result", 0) for s in steps) >= sum(s["completed"] for s in steps)
    assert not any("tasks/update" in s["requests"] for s in steps)
    assert report["verdict"]["status"] == "PASS"


async def test_task_limit_refusals_are_counted_and_stop_the_ramp_without_a_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One creation at a time, each task working 1 s: the server's check sees every unfinished task, so past 10 it
    # refuses (task_limit) and a step whose creations are mostly refused ends the ramp.
    profile = dataclasses.replace(
        PROFILES["quick"], name="limited", tasks_max=32, tasks_seconds=1.0, tasks_create_concurrency=1
    )
    monkeypatch.setitem(PROFILES, "limited", profile)
    serve = ("--memory-limit-mb", "1024", "--max-tasks", "10")
    report = await _run(tmp_path / "limit", "embedded", "limited", serve_args=serve)
    r = report["phases"]["tasks"]["results"]
    assert report["phases"]["tasks"]["status"] == "completed" and r["lost"] == 0, r
    refused = {s["level"]: s["refused"] for s in r["steps"]}
    assert refused[8] == 0 and 0 < refused[16] <= 8 and refused[32] * 2 > 32, refused
    assert set().union(*(s["refusal_reasons"] for s in r["steps"])) == {"task_limit"}
    assert r["server_max_tasks"] == 10 and all(s["unfinished_peak"] <= 10 for s in r["steps"]), r["steps"]
    assert r["first_bad_level"] == 32 and r["max_concurrent_tasks"] == 16
    assert "refused most creations at 32 (task_limit)" in r["stop_reason"]
    for s in r["steps"]:
        assert s["created"] + s["refused"] == s["level"] and s["created"] == s["completed"] + s["cancelled"]
    limit = next(lim for lim in report["limits"] if lim["phase"] == "tasks")
    assert limit["value"] == 16 and limit["confidence"] == "high"
    assert report["verdict"]["status"] == "PASS"  # a clean refusal is not a loss
    assert not [f for f in report["findings"] if f["phase"] == "tasks"], report["findings"]


def test_the_unfinished_peak_is_the_most_overlapping_spans_seen() -> None:
    def task(accepted: float, seen: float | None) -> TaskRun:
        t = TaskRun("x", {}, None, True, None, task_id="id", accepted=accepted)
        t.unfinished_seen = seen
        return t

    spans = [task(0.0, 1.0), task(0.1, 0.5), task(0.4, 2.0), task(1.0, 1.2), task(0.2, None), task(3.0, 3.5)]
    assert unfinished_peak(spans) == 3  # at 0.4..0.5: the first three; the one never seen unfinished counts nothing
    assert unfinished_peak([task(0.0, 1.0), task(1.0, 2.0)]) == 2  # touching spans overlap at their end
    assert unfinished_peak([]) == 0


@pytest.mark.parametrize("revision", ["2026-07-28", "2025-11-25"])
async def test_over_stdio(tmp_path: Path, tiny: str, revision: str) -> None:
    command = shlex.join([BEMCP, "serve", "--transport", "stdio", "--stress-tools", "--state-dir", str(tmp_path)])
    report = await _run(tmp_path / "out", f"stdio:{command}", tiny, revision=revision)
    modern = revision == "2026-07-28"
    check_tasks(report, asks=modern)  # 2025-11-25 over stdio cannot answer a task's questions: none asks
    notes = report["phases"]["tasks"].get("notes") or []
    assert modern or any("no task asks a question" in n for n in notes), notes


@pytest.mark.parametrize(
    ("revision", "reason"),
    [
        ("2026-07-28", "server/discover's capabilities name no io.modelcontextprotocol/tasks extension"),
        ("2025-11-25", "initialize's capabilities have no tasks.requests.tools.call"),
    ],
    ids=["2026-07-28", "2025-11-25"],
)
async def test_skipped_with_the_reason_against_a_server_without_task_tools(
    tmp_path: Path, revision: str, reason: str
) -> None:
    # BE-MCP serving an app none of whose tools runs as a task: it offers no tasks at all, in either revision.
    with http_server(app="tests/apps/demo.py", tmp=tmp_path) as server:
        report = await _run(tmp_path / "out", server.url, "quick", revision=revision)
    phase = report["phases"]["tasks"]
    assert phase["status"] == "skipped" and phase["steps"] == [] and phase["results"]["steps"] == []
    assert phase["notes"] == [f"the target does not offer tasks ({reason})"]
    no_lost = next(c for c in report["verdict"]["criteria"] if c["name"] == "no lost tasks")
    assert no_lost["passed"] is None and reason in no_lost["detail"]
    assert "tasks" not in {lim["phase"] for lim in report["limits"]}


def test_chaos_restart_is_a_usage_error_off_the_embedded_target_or_without_the_tasks_phase(tmp_path: Path) -> None:
    for args, message in (
        (["--target", "http://127.0.0.1:9/mcp"], "--chaos-restart needs the embedded target"),
        (["--phases", "tsunami"], "--chaos-restart runs in the tasks phase"),
    ):
        proc = stress("--chaos-restart", *args, "--out", str(tmp_path / "out"), timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert message in proc.stderr and not (tmp_path / "out" / "report.json").exists()
    helped = stress("--help", timeout=60)
    assert "--chaos-restart" in helped.stdout and "SIGKILL" in helped.stdout


# -- the pieces ----------------------------------------------------------------------------------------------------


def test_tasks_are_read_in_either_revision_s_words() -> None:
    modern = parse_task(
        {"taskId": "a", "status": "input_required", "ttlMs": 60_000, "pollIntervalMs": 500, "inputRequests": {"k": {}}}
    )
    assert modern is not None and modern.poll_s == 0.5 and modern.ttl_s == 60 and modern.input_requests == {"k": {}}
    legacy = parse_task({"taskId": "b", "status": "failed", "ttl": 1000, "pollInterval": 250, "statusMessage": "x"})
    assert legacy is not None and legacy.poll_s == 0.25 and legacy.failure_text() == "x" and legacy.terminal
    assert parse_task({"status": "working"}) is None and parse_task([]) is None
    assert offers_tasks({"extensions": {"io.modelcontextprotocol/tasks": {}}}, modern=True)
    assert not offers_tasks({"tasks": {"requests": {"tools": {"call": {}}}}}, modern=True)
    assert offers_tasks({"tasks": {"requests": {"tools": {"call": {}}}}}, modern=False)
    assert not offers_tasks({"tasks": {"list": {}}}, modern=False) and not offers_tasks(None, modern=False)


def test_input_requests_get_valid_answers() -> None:
    rng = random.Random(1)
    go = {"method": "elicitation/create", "params": {"requestedSchema": {"properties": {"go": {"type": "boolean"}}}}}
    assert answer_for(go, False, rng) == {"action": "accept", "content": {"go": False}}
    form = {
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 2}},
        "required": ["name"],
    }
    got = answer_for({"method": "elicitation/create", "params": {"requestedSchema": form}}, True, rng)
    assert got["action"] == "accept" and len(got["content"]["name"]) >= 2
    assert answer_for({"method": "roots/list"}, True, rng) == {"roots": []}
    assert answer_for({"method": "sampling/createMessage"}, True, rng)["role"] == "assistant"
    assert answer_for({"method": "elicitation/create", "params": {}}, True, rng) == {"action": "decline"}


def _tool(name: str, support: str | None, **annotations: Any) -> Tool:
    wire: dict[str, Any] = {"name": name, "inputSchema": {"type": "object"}, "annotations": annotations}
    if support is not None:
        wire["execution"] = {"taskSupport": support}
    return Tool.from_wire(wire)


def test_task_tools_follow_the_safety_policy_and_may_require_a_task() -> None:
    optional = _tool("optional_job", "optional", readOnlyHint=True)
    required = _tool("required_job", "required", readOnlyHint=True)
    boom = _tool("destroy", "optional", destructiveHint=True)
    writes = _tool("writer", "required")
    plain = _tool("plain", None, readOnlyHint=True)
    found = Discovery(
        [optional, required, boom, writes, plain],
        [optional, plain],
        {
            "required_job": "requires task-augmented execution",
            "destroy": "destructiveHint: never called",
            "writer": "not marked readOnlyHint: called only with --allow-writes",
        },
    )
    assert [t.name for t in found.task_tools()] == ["optional_job", "required_job"]


# -- the report ----------------------------------------------------------------------------------------------------


def _step(level: int, *, cancelled: int = 1, refused: int = 0, lost: int = 0) -> dict[str, Any]:
    created = level - refused
    return {
        "level": level,
        "duration_s": 1.0,
        "created": created,
        "refused": refused,
        "refusal_reasons": {"task_limit": refused} if refused else {},
        "create_errors": 0,
        "sync_results": 0,
        "completed": created - cancelled,
        "failed": 0,
        "cancelled": cancelled,
        "unresolved": 0,
        "lost": lost,
        "lost_reasons": {"wrong_result": lost} if lost else {},
        "failed_restarted": 0,
        "asked": 2,
        "answers": 2,
        "cancels_sent": cancelled,
        "cancels_won": cancelled,
        "unrequested_cancels": 0,
        "requests": {"tools/call": level, "tasks/get": 2 * created, "tasks/update": 2, "tasks/cancel": cancelled},
        "request_errors": 0,
        "error_details": {},
        "create_ms": {"p50": 3.0, "p99": 9.5},
        "complete_ms": {"p50": 510.0, "p99": 1020.0},
        "store_tasks_before": None,
        "store_tasks_after": None,
        "store_bytes_before": 4096 * level,
        "store_bytes_after": 8192 * level,
        "unfinished_peak": created,
        "good": not lost and refused * 2 <= level,
    }


def with_tasks(report: Report, steps: list[dict[str, Any]] | None = None) -> Report:
    """The synthetic report with a tasks phase in it (between tsunami and avalanche, as a run orders them)."""
    r = fresh(report)
    steps = steps if steps is not None else [_step(8), _step(16), _step(32)]
    good = [s["level"] for s in steps if s["good"]]
    bad = next((s["level"] for s in steps if not s["good"]), None)
    r["phases"]["tasks"] = {
        "status": "completed",
        "started_at": r["run"]["started_at"],
        "offset_s": 1.0,
        "duration_s": float(len(steps)),
        "level_unit": "tasks",
        "steps": [],
        "results": {
            "tool": "task_job",
            "protocol": "2026-07-28",
            "task_seconds": 0.2,
            "ask_fraction": 0.2,
            "cancel_fraction": 0.1,
            "results_checked": True,
            "max_concurrent_tasks": max(good) if good else None,
            "first_bad_level": bad,
            "stop_reason": "max level reached" if bad is None else f"bad at {bad}",
            "lost": sum(s["lost"] for s in steps),
            "calls": sum(sum(s["requests"].values()) for s in steps),
            "steps": steps,
        },
    }
    r["run"]["phases"] = ["tsunami", "tasks", "avalanche", "chaos", "rate", "soak"]
    return finalize(r)


@pytest.fixture(scope="module")
def base() -> Report:
    return finalize(make_report())


def test_a_report_with_a_tasks_phase_is_valid_consistent_and_passes(base: Report) -> None:
    r = with_tasks(base)
    assert validate(r) == [] and r["consistency"]["passed"], r["consistency"]
    assert r["verdict"]["status"] == "PASS"
    no_lost = next(c for c in r["verdict"]["criteria"] if c["name"] == "no lost tasks")
    assert no_lost == {**no_lost, "passed": True, "measured": 0, "unit": "tasks", "threshold": "0 lost"}
    md = render_markdown(r)
    assert "### Phase 2: Tasks: concurrent long-running tasks (MCP tasks)" in md
    assert "| 32 | 32 | 31 | 0 | 1 | 0 | 0 | 2 / 2 | 3 ms | 9.5 ms | 510 ms | 1,020 ms | 128.0 KiB → 256.0 KiB |" in md
    assert "Max concurrent tasks with none lost: 32" in md and "| Max concurrent tasks (none lost) | 32 |" in md
    html = render_html(r)
    assert "Tasks at once" in html and "Max concurrent tasks <b>32</b>" in html


def test_a_lost_task_fails_the_verdict(base: Report) -> None:
    r = with_tasks(base, [_step(8), _step(16, lost=1)])
    assert validate(r) == [] and r["consistency"]["passed"], r["consistency"]
    no_lost = next(c for c in r["verdict"]["criteria"] if c["name"] == "no lost tasks")
    assert no_lost["passed"] is False and no_lost["measured"] == 1 and "wrong_result 1" in no_lost["detail"]
    assert r["verdict"]["status"] == "FAIL"


def test_refusals_are_counted_not_lost(base: Report) -> None:
    r = with_tasks(base, [_step(8), _step(16, refused=3), _step(32, refused=20)])
    assert r["verdict"]["status"] == "PASS", [c for c in r["verdict"]["criteria"] if c["passed"] is False]
    assert r["phases"]["tasks"]["results"]["max_concurrent_tasks"] == 16
    assert "23 creations refused (a clean overload answer, not a loss): task_limit 23." in render_markdown(r)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda s: s.update(completed=s["completed"] - 1), "completed + failed + cancelled + unresolved"),
        (lambda s: s.update(refused=1), "created + refused + create_errors + sync_results must equal level"),
        (lambda s: s.update(lost=2), "lost must be the sum of lost_reasons"),
        (lambda s: s.update(created=True), "expected integer, got boolean"),
        (lambda s: s.update(surprise=1), "unknown field"),
    ],
)
def test_task_steps_that_do_not_add_up_are_off_schema(base: Report, mutate: Any, problem: str) -> None:
    r = with_tasks(base)
    doctored = copy.deepcopy(r)
    mutate(doctored["phases"]["tasks"]["results"]["steps"][1])
    problems = validate(doctored)
    assert any(p.startswith("phases.tasks.results.steps[1]") and problem in p for p in problems), problems


def test_the_limit_check_holds_the_tasks_results_to_their_steps(base: Report) -> None:
    r = with_tasks(base)
    doctored = fresh(r)
    doctored["phases"]["tasks"]["results"]["max_concurrent_tasks"] = 24  # no step ran 24 at once
    finalize(doctored)
    check = next(c for c in doctored["consistency"]["checks"] if c["name"] == "limits backed by steps")
    assert not check["passed"] and "tasks.max_concurrent_tasks = 24 is not the level of any step" in check["detail"]
    assert doctored["verdict"]["status"] == "FAIL"


def test_compare_gates_lost_tasks_and_ignores_reports_without_the_phase(base: Report, tmp_path: Path) -> None:
    good, lossy = with_tasks(base), with_tasks(base, [_step(8), _step(16, lost=1)])
    rows, regressed = compare(good, lossy, 0.1)
    by = {row.metric: row for row in rows}
    assert by["tasks: lost"].regressed and by["tasks: max concurrent tasks"].regressed and regressed
    assert not compare(good, good, 0.1)[1]
    rows, _ = compare(base, good, 0.1)  # the old report has no tasks phase: nothing to compare it with
    assert not [row for row in rows if row.metric.startswith("tasks")]
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    write_json(base, old)
    write_json(good, new)
    out = io.StringIO()
    assert compare_main([str(old), str(new)], out=out, err=io.StringIO()) == 0, out.getvalue()


# -- --chaos-restart -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_chaos_restart_loses_no_task(tmp_path: Path) -> None:
    """The supervised embedded server, SIGKILLed while the round's tasks run: its supervisor restarts it, the
    resumable task_job runs again, and every task answers with its own result."""
    restart_out = tmp_path / "restart"
    proc = stress("--profile", "quick", "--phases", "tasks", "--chaos-restart", "--out", str(restart_out), timeout=180)
    a_verdict(proc)
    report = check_outputs(restart_out, proc)
    r = check_tasks(report)
    c = r["chaos_restart"]
    assert c["performed"] is True, c
    assert c["pid_after"] is not None and c["pid_after"] != c["pid_before"] and c["back_after_s"] is not None
    assert c["running_at_kill"] > 0 and c["ended_before_kill"] > 0 and c["rechecked"] == c["ended_before_kill"]
    assert c["lost"] == 0 and c["lost_reasons"] == {} and c["unresolved"] == 0, c
    assert c["created"] == c["tasks"] == c["completed"] + c["failed"] + c["cancelled"]
    assert c["failed"] == c["failed_restarted"]  # a failure is the restart's, saying so
    assert c["completed"] >= c["running_at_kill"] // 2  # task_job is resumable: most of the interrupted ones finish
    assert c["request_errors"] > 0  # the server was really gone for a while
    assert report["verdict"]["status"] == "PASS" and proc.returncode == 0
    assert report["target"]["deaths"] == [] and report["target"]["alive_at_end"] is True
    assert "killed by SIGKILL" in (restart_out / "embedded-server.log").read_text()
    assert "Chaos restart: the server (pid" in (restart_out / "report.md").read_text()


@pytest.mark.slow
def test_chaos_restart_catches_a_store_that_forgets(tmp_path: Path) -> None:
    """The same restart with the memory task store: every task of the round is gone after the kill, and the run
    says so (lost tasks, a critical finding, FAIL)."""
    out = tmp_path / "forgets"
    proc = stress(
        "--profile",
        "quick",
        "--phases",
        "tasks",
        "--chaos-restart",
        "--serve-arg=--task-store=memory",
        "--out",
        str(out),
        timeout=180,
    )
    a_verdict(proc)
    report = check_outputs(out, proc)
    c = report["phases"]["tasks"]["results"]["chaos_restart"]
    assert c["performed"] is True and c["lost"] > 0, c
    assert set(c["lost_reasons"]) <= {"unknown_id", "lost_after_restart"}
    assert report["phases"]["tasks"]["results"]["lost"] == c["lost"]
    critical = [f["message"] for f in report["findings"] if f["severity"] == "critical"]
    assert any("tasks were lost" in m for m in critical), critical
    assert report["verdict"]["status"] == "FAIL" and proc.returncode == 1
