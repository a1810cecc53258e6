"""Interop: the official MCP tasks requester, `@modelcontextprotocol/ext-tasks` (npm), against `bemcp serve`.

ext-tasks drives the TypeScript SDK v2 client (`@modelcontextprotocol/client`) over Streamable HTTP, on each
revision's tasks: 2025-11-25 (core tasks: `params.task`, `tasks/get`, `tasks/result`, `tasks/cancel`) and
2026-07-28 (the `io.modelcontextprotocol/tasks` extension: server-directed tasks, `tasks/get` inlining the
result, error or input requests, `tasks/update`, `tasks/cancel`). tests/interop/ext_tasks/run.mjs runs the
checks and prints one JSON line each:

- work: a task-backed `work` call, polled by ext-tasks to completion, with the tool's text as its result;
- confirm: the task's elicitation answered through ext-tasks' input routing, ending in "answered True";
- cancel: a 60 s `work` cancelled through ext-tasks, settled as cancelled, and cancelled on the server too;
- recover: a task handed off by one ext-tasks session (serialized reference) and resumed by a new one.

The script's comments say where ext-tasks 0.2.2 needs help (2025-11-25 input: it never calls `tasks/result`
while a task waits for input, so the script opens that stream itself). `make setup` installs the packages in
.cache/ext-tasks; without them the test skips, unless REQUIRE_CONFORMANCE=1 (CI) makes that a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.procs import ROOT, http_server

EXT_TASKS_DIR = ROOT / ".cache" / "ext-tasks"
NODE22_BIN = ROOT / ".cache" / "node22" / "node_modules" / ".bin"
SCRIPT = Path(__file__).with_name("ext_tasks") / "run.mjs"
EXT_TASKS_VERSION = "0.2.2"  # the Makefile's EXT_TASKS_VERSION
APP = "tests/apps/tasks_app.py"
CHECKS = ["work", "confirm", "cancel", "recover"]
REVISIONS = ["2025-11-25", "2026-07-28"]

# Set by a run that must not pass without the packages (it installs them first): missing ones fail, not skip.
REQUIRED = os.environ.get("REQUIRE_CONFORMANCE") == "1"


def _installed(package: str) -> str | None:
    """The version of `package` installed under .cache/ext-tasks, or None."""
    try:
        meta = json.loads((EXT_TASKS_DIR / "node_modules" / package / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = meta.get("version")
    return version if isinstance(version, str) else None


def available() -> bool:
    return (
        (NODE22_BIN / "node").exists()
        and _installed("@modelcontextprotocol/ext-tasks") == EXT_TASKS_VERSION
        and _installed("@modelcontextprotocol/client") is not None
    )


pytestmark = pytest.mark.skipif(
    not REQUIRED and not available(),
    reason=f"@modelcontextprotocol/ext-tasks {EXT_TASKS_VERSION} is not installed in {EXT_TASKS_DIR}: run `make setup`",
)


def run_requester(url: str, revision: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run run.mjs with Node 22. ESM resolves bare imports from the importing file's folder up, never from
    NODE_PATH, so the script runs from a copy beside .cache/ext-tasks/node_modules (one per run: no races)."""
    env = dict(os.environ)
    env["PATH"] = f"{NODE22_BIN}{os.pathsep}{env.get('PATH', '')}"
    fd, name = tempfile.mkstemp(prefix="run-", suffix=".mjs", dir=EXT_TASKS_DIR)
    os.close(fd)
    copy = Path(name)
    try:
        shutil.copyfile(SCRIPT, copy)
        cmd = [str(NODE22_BIN / "node"), str(copy), url, revision]
        return subprocess.run(cmd, cwd=EXT_TASKS_DIR, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        copy.unlink(missing_ok=True)


def checks_of(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        with contextlib.suppress(ValueError):
            got = json.loads(line)
            if isinstance(got, dict) and "check" in got:
                out[got["check"]] = got
    return out


@pytest.mark.parametrize("revision", REVISIONS)
def test_ext_tasks_requester_drives_bemcp_tasks(tmp_path: Path, revision: str) -> None:
    assert available(), f"REQUIRE_CONFORMANCE=1 but ext-tasks {EXT_TASKS_VERSION} is not installed in {EXT_TASKS_DIR}"
    with http_server("--state-dir", str(tmp_path / "state"), app=APP, tmp=tmp_path) as server:
        proc = run_requester(server.url, revision)
        assert server.alive(), server.log.read_text()
        with urllib.request.urlopen(f"{server.base}/healthz", timeout=5) as r:
            assert r.status == 200
        log = server.log.read_text()
    output = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    checks = checks_of(proc)
    assert list(checks) == CHECKS, output
    failed = {name: c for name, c in checks.items() if c["ok"] is not True}
    assert not failed, "ext-tasks checks failed:\n" + "\n".join(json.dumps(c, indent=1) for c in failed.values())
    assert proc.returncode == 0, output
    assert "Traceback" not in log, log

    # What each check saw, beyond its own verdict.
    work, confirm, cancel, recover = (checks[name]["detail"] for name in CHECKS)
    assert work["text"] == f"work done over {revision}"
    assert work["statuses"][-1] == "completed"
    assert confirm["text"] == "answered True"
    assert "input_required" in confirm["statuses"]
    assert confirm["asked"]["scope"] == "task" and confirm["asked"]["taskId"] == confirm["taskId"]
    # 2026-07-28: inlined in tasks/get, answered by tasks/update; 2025-11-25: sent on the tasks/result stream.
    assert confirm["asked"]["delivery"] == ("task-update" if revision == "2026-07-28" else "peer-request")
    assert cancel["server"] == "cancelled"
    assert recover["text"] == f"recovered over {revision}"
    assert recover["reference"]["generation"] == ("v2" if revision == "2026-07-28" else "v1")
