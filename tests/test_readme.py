"""The README's examples, run exactly as printed by a stranger: the README's install commands in a copy of the
project make a fresh virtualenv, and every example runs from a folder of the user's own, with no PYTHONPATH.

Every command in a `sh` block is either run here or listed in NOT_RUN with the reason, so that a new example
cannot go untested by accident.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bemcp.stress.targets import MODERN
from tests import readme_runner as rr
from tests.stress.cli_run import check_outputs

# README commands this file does not run, and why (each is run elsewhere or is a long benchmark).
NOT_RUN = {
    "make run": "the main job, `bemcp stress --profile quick`: the stress block's `bemcp stress` is the same run, "
    "and test_stress_examples holds it to make run's standard; `.ci/run` runs make test",
    "make test": "the command that runs this test",
    "make bench": "a benchmark of minutes; not a test",
    ".venv/bin/python benchmarks/bench_http.py --servers bemcp,bemcp-bare,sdk --duration 5 --warmup 1 --rounds 3": (
        "a benchmark of minutes; not a test"
    ),
    "mkdir -p /tmp/base && git archive <commit-before> src | tar -x -C /tmp/base": "a benchmark's setup",
    "mkdir -p /tmp/snap && git archive HEAD src | tar -x -C /tmp/snap": "a benchmark's setup",
    ".venv/bin/python benchmarks/bench_http.py --servers bemcp,bemcp-base --bemcp-src /tmp/snap/src "
    "--base-src /tmp/base/src --duration 5 --warmup 1 --rounds 4": "a benchmark of minutes; not a test",
    '.venv/bin/pytest -m "not slow"': "runs the suite this test is part of",
}


@dataclass
class Stranger:
    project: Path  # the copy of the project the install ran in
    venv: Path
    home: Path  # the user's own folder, with weather.py
    install_output: str

    @property
    def env(self) -> dict[str, str]:
        return rr.user_env(self.venv)


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stranger]:
    base = tmp_path_factory.mktemp("stranger")
    project = rr.copy_project(base / "bemcp")
    lang, install = rr.blocks()["install"]
    assert lang == "sh"
    done = rr.run(install, project, rr.user_env(), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    home = base / "home"
    home.mkdir()
    lang, weather = rr.blocks()["weather.py"]
    assert lang == "python" and weather.startswith("# weather.py\n")
    (home / "weather.py").write_text(weather)
    yield Stranger(project, project / ".venv", home, done.stdout + done.stderr)


def test_every_readme_command_is_run_or_excused() -> None:
    run_here = set()
    for name in ("install", "serve", "inspector", "protection", "stress", "tasks"):
        run_here.update(rr.command_lines(rr.blocks()[name][1]))
    missing = [c for c in rr.all_shell_commands() if c not in run_here and c not in NOT_RUN]
    assert not missing, f"README commands no test runs: {missing}"
    stale = [c for c in NOT_RUN if c not in rr.all_shell_commands()]
    assert not stale, f"NOT_RUN names commands the README no longer has: {stale}"


def test_links_work_on_the_package_index() -> None:
    # PyPI shows the README without the repository around it: relative links and heading anchors go nowhere.
    links = re.findall(r"\]\(([^)\s]+)\)", rr.README.read_text())
    assert links
    bad = [link for link in links if not link.startswith(("https://", "http://"))]
    assert not bad, f"links that break on the package index: {bad}"


@pytest.mark.slow
def test_install_makes_a_working_bemcp(stranger: Stranger) -> None:
    from bemcp import __version__

    assert f"bemcp {__version__}" in stranger.install_output
    assert (stranger.venv / "bin" / "bemcp").exists()
    where = rr.run("python -c 'import bemcp; print(bemcp.__file__)'", stranger.home, stranger.env)
    assert where.stdout.strip().startswith(str(stranger.venv)), where.stdout  # installed, not this checkout


@pytest.mark.slow
def test_serve_examples(stranger: Stranger) -> None:
    for line in rr.command_lines(rr.blocks()["serve"][1]):
        argv = shlex.split(line)
        if "stdio" in argv or argv[0] == "python":
            result = rr.stdio_call(argv, stranger.home, stranger.env, "forecast", {"city": "Oslo"})
        else:
            port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 8000
            assert rr.port_free(port), f"port {port}, which the README's example uses, is taken"
            job = rr.start(line, stranger.home, stranger.env)
            try:
                url = job.wait_ready()
                assert url == f"http://127.0.0.1:{port}/mcp"
                result = rr.call_tool(url, "forecast", {"city": "Oslo"})
            finally:
                assert job.stop() == 0
        assert not result.get("isError"), (line, result)
        assert result["structuredContent"] == {"city": "Oslo", "celsius": 21.5}, line


@pytest.mark.slow
def test_tasks_example(stranger: Stranger) -> None:
    lang, code = rr.blocks()["reports.py"]
    assert lang == "python" and code.startswith("# reports.py\n")
    (stranger.home / "reports.py").write_text(code)
    (line,) = rr.command_lines(rr.blocks()["tasks"][1])
    argv = shlex.split(line)
    port = int(argv[argv.index("--port") + 1])
    assert rr.port_free(port), f"port {port}, which the README's example uses, is taken"
    job = rr.start(line, stranger.home, stranger.env)
    ext = {"extensions": {"io.modelcontextprotocol/tasks": {}}}
    try:
        url = job.wait_ready()
        created = rr.rpc(url, "tools/call", {"name": "build_report", "arguments": {"pages": 2}}, ext)
        assert created["resultType"] == "task", created
        messages, deadline = set(), time.monotonic() + 20
        while True:
            got = rr.rpc(url, "tasks/get", {"taskId": created["taskId"]}, ext)
            messages.add(got.get("statusMessage"))
            if got["status"] == "completed" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert got["result"]["content"][0]["text"] == "report of 2 pages", got
        assert "1/2: pages done" in messages, messages
        plain = rr.call_tool(url, "build_report", {"pages": 1})  # no tasks declared: a plain call
        assert plain["content"][0]["text"] == "report of 1 pages"
    finally:
        assert job.stop() == 0
    assert (stranger.home / "state" / "tasks.sqlite3").exists()


@pytest.mark.slow
def test_claude_desktop_config(stranger: Stranger) -> None:
    lang, text = rr.blocks()["claude-desktop"]
    assert lang == "json"
    server = json.loads(text)["mcpServers"]["weather"]
    command = server["command"].replace("/absolute/path/to/.venv", str(stranger.venv))
    args = [a.replace("/absolute/path/to/weather.py", str(stranger.home / "weather.py")) for a in server["args"]]
    # Claude Desktop does not start the server in the user's folder.
    result = rr.stdio_call([command, *args], Path("/"), stranger.env, "forecast", {"city": "Rome", "days": 2})
    assert result["structuredContent"] == {"city": "Rome", "celsius": 21.5}


def _node_version(env: dict[str, str]) -> tuple[int, int]:
    found = shutil.which("node", path=env["PATH"])
    if found is None:
        return (0, 0)
    out = rr.run("node --version", Path("/"), env).stdout.strip().lstrip("v")
    major, minor = out.split(".")[:2]
    return int(major), int(minor)


@pytest.mark.slow
def test_inspector_cli(stranger: Stranger) -> None:
    env = stranger.env
    if _node_version(env) < (22, 19):
        # The Inspector needs Node.js 22.19+, which the README says; `make test` puts the Node 22 it installed
        # first on PATH, as a user who installed it would. Run directly, this test looks for it there too.
        node22 = rr.ROOT / ".cache" / "node22" / "node_modules" / ".bin"
        env["PATH"] = f"{node22}:{env['PATH']}"
    assert _node_version(env) >= (22, 19), "the Inspector needs Node.js 22.19+ (make setup installs it)"
    assert rr.port_free(8000), "port 8000, which the README's example uses, is taken"
    outputs = rr.run_script(rr.blocks()["inspector"][1], stranger.home, env)
    listed, called_stdio, called_http = (ran.out for ran in outputs)
    assert '"name": "forecast"' in listed and '"name": "confirm_delete"' in listed
    assert '"city": "Paris"' in called_stdio and '"celsius": 21.5' in called_stdio
    assert '"city": "Oslo"' in called_http


@pytest.mark.slow
def test_embedding_example(stranger: Stranger) -> None:
    lang, code = rr.blocks()["embedding"]
    assert lang == "python"
    first = code.splitlines()[0]
    m = re.fullmatch(r"# (\w+\.py): (.+), then: (.+)", first)
    assert m, first
    (stranger.home / m.group(1)).write_text(code)
    done = rr.run(m.group(2), stranger.home, stranger.env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert rr.port_free(8000)
    job = rr.start(m.group(3), stranger.home, stranger.env)
    try:
        rr.wait_http("http://127.0.0.1:8000/tools/healthz", job)
        result = rr.call_tool("http://127.0.0.1:8000/tools/mcp", "stock", {"item": "apple"})
        assert result["structuredContent"] == {"result": 20}
    finally:
        job.stop()


@pytest.mark.slow
def test_protection_example(stranger: Stranger) -> None:
    (line,) = rr.command_lines(rr.blocks()["protection"][1])
    assert rr.port_free(8000)
    job = rr.start(line, stranger.home, stranger.env)
    try:
        url = job.wait_ready()
        result = rr.call_tool(url, "forecast", {"city": "Lima"})
        assert result["structuredContent"]["city"] == "Lima"
    finally:
        assert job.stop() == 0
    log = (stranger.home / "bemcp.jsonl").read_text()
    assert '"forecast"' in log  # the task log has the call


def check_make_run(ran: rr.Ran, home: Path) -> None:
    """`make run`'s job, the quick profile against the embedded server, which the block's first line runs: BE-MCP's
    own run must PASS (it used to be accepted with FAIL too): every criterion that could be measured held, the
    soak's leak verdict among them, and no finding is critical. (Checked here, on the stranger's run, rather than
    on a second run of its own: the quick profile is close to a minute.)"""
    # With no --out, the reports go to the default folder under the user's own, which the CLI names.
    found = re.search(r"^\s+json\s+(\S+)/report\.json$", ran.proc.stdout, re.MULTILINE)
    assert found, ran.proc.stdout
    out = Path(found.group(1))
    assert out.parent == Path("bemcp-reports"), out
    report = check_outputs(out, ran.proc, cwd=home)
    out = home / out
    failed = [(c["name"], c["measured"], c["detail"]) for c in report["verdict"]["criteria"] if c["passed"] is False]
    critical = [f["message"] for f in report["findings"] if f["severity"] == "critical"]
    assert report["verdict"]["status"] == "PASS" and ran.proc.returncode == 0, (failed, critical)
    assert report["phases"]["soak"]["results"]["leak_verdict"] != "leak"
    assert ran.elapsed < 120, f"the quick profile took {ran.elapsed:.0f} s"
    assert report["run"]["profile"] == "quick"
    assert report["target"]["kind"] == "embedded" and report["target"]["revision"] == MODERN
    assert report["target"]["alive_at_end"] is True and report["target"]["deaths"] == []
    # Every phase ran, the avalanche and the tasks too: the embedded server has the workload tools.
    assert {name: p["status"] for name, p in report["phases"].items()} == dict.fromkeys(
        ("tsunami", "tasks", "avalanche", "chaos", "rate", "soak"), "completed"
    )
    tasks = report["phases"]["tasks"]["results"]
    assert tasks["tool"] == "task_job" and tasks["lost"] == 0 and tasks["steps"], tasks
    assert "### Phase 2: Tasks" in (out / "report.md").read_text()
    assert report["phases"]["avalanche"]["results"]["rejected_above_mb"] is not None  # the budget held
    # The workload's echo carries the load, never the built-in server_health (it skips admission control).
    load = report["load"]
    assert load["source"] == "ranked" and [e["name"] for e in load["mix"]] == ["echo"]
    assert load["tools"][0]["name"] == "echo" and "server_health" not in {t["name"] for t in load["tools"]}
    assert (out / "embedded-server.log").exists()


@pytest.mark.slow
def test_stress_examples(stranger: Stranger) -> None:
    for port in (9000,):
        assert rr.port_free(port)
    # A stress run exits 1 on a FAIL verdict and compare on a regression: documented answers, not errors.
    outputs = rr.run_script(rr.blocks()["stress"][1], stranger.home, stranger.env, timeout=600, ok=lambda line: {0, 1})
    assert outputs, "the stress block ran nothing"
    # `make run`'s job is checked on this run of it only: the block must keep it.
    assert "bemcp stress" in [ran.line for ran in outputs], "the block no longer has `bemcp stress` (make run's job)"
    for ran in outputs:
        assert "Traceback" not in ran.out, (ran.line, ran.out)
        if ran.line == "bemcp stress":
            check_make_run(ran, stranger.home)
        elif ran.line.startswith("bemcp stress --target http"):
            out_dir = shlex.split(ran.line)[shlex.split(ran.line).index("--out") + 1]
            report = json.loads((stranger.home / out_dir / "report.json").read_text())
            assert report["verdict"]["status"] in ("PASS", "FAIL")
