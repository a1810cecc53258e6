"""Run the README's examples exactly as printed, as a stranger would: a fresh virtualenv made by the README's own
install commands in a copy of the project, and a folder of the user's own outside the repository.

The README marks each runnable block with `<!-- readme-test: NAME -->` just above it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_BLOCK = re.compile(r"<!-- readme-test: (\S+) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)
_COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".cache", "*.egg-info", "build", "dist", "__pycache__", ".*_cache", "bemcp-reports", "node_modules"
)
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def blocks() -> dict[str, tuple[str, str]]:
    """The marked blocks: name -> (language, text)."""
    return {name: (lang, body) for name, lang, body in _BLOCK.findall(README.read_text())}


def command_lines(text: str) -> list[str]:
    """A shell block's commands: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if line:
            out.append(line)
    return out


def all_shell_commands() -> list[str]:
    """Every command in every `sh` block of the README, marked or not."""
    found = []
    for body in re.findall(r"```sh\n(.*?)\n```", README.read_text(), re.DOTALL):
        found.extend(command_lines(body))
    return found


def user_path() -> str:
    """The PATH a user's shell has: without this checkout's own virtualenv."""
    venv = str(ROOT / ".venv")
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if not p.startswith(venv))


def user_env(venv: Path | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("BEMCP_")
    }
    env["PATH"] = user_path()
    if venv is not None:  # what `. .venv/bin/activate` does
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = str(venv / "bin") + os.pathsep + env["PATH"]
    env["PYTHONUNBUFFERED"] = "1"
    return env


def copy_project(dest: Path) -> Path:
    """The project as a clone has it (this working tree, without what it built or installed)."""
    shutil.copytree(ROOT, dest, ignore=_COPY_IGNORE)
    return dest


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Background:
    """A command started with `&`: its process and what it printed on stderr."""

    proc: subprocess.Popen[str]
    line: str
    stderr: list[str] = field(default_factory=list)

    def wait_ready(self, timeout: float = 30) -> str:
        """Wait for the start line; returns the URL it names (or "stdio")."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.proc.stderr.readline()
            if out:
                self.stderr.append(out)
            if "bemcp.start" in out:
                m = re.search(r" on (https?://\S+)", out)
                return m.group(1) if m else "stdio"
            if not out and self.proc.poll() is not None:
                break
        raise AssertionError(f"{self.line!r} printed no start line: {''.join(self.stderr)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.proc.returncode


def start(line: str, cwd: Path, env: dict[str, str]) -> Background:
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {line}"], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    return Background(proc, line)


def run(line: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class Ran:
    """A foreground command of a block: what it printed, its exit code, and how long it took."""

    line: str
    proc: subprocess.CompletedProcess[str]
    elapsed: float

    @property
    def out(self) -> str:
        return self.proc.stdout + self.proc.stderr


def run_script(
    text: str, cwd: Path, env: dict[str, str], timeout: float = 300, ok: Callable[[str], set[int]] | None = None
) -> list[Ran]:
    """Run a block as a user types it: a line ending in `&` starts in the background and is waited for until it
    says it is ready; `kill %N` stops the Nth of them. Each foreground command must exit with a code in
    `ok(line)` (default {0}); returns each foreground command as it ran."""
    jobs: list[Background] = []
    outputs = []
    try:
        for line in command_lines(text):
            if line.endswith("&"):
                job = start(line[:-1].strip(), cwd, env)
                jobs.append(job)
                job.wait_ready()
            elif m := re.fullmatch(r"kill %(\d+)", line):
                jobs[int(m.group(1)) - 1].stop()
            else:
                started = time.monotonic()
                done = run(line, cwd, env, timeout)
                elapsed = time.monotonic() - started
                allowed = ok(line) if ok is not None else {0}
                assert done.returncode in allowed, f"{line!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
                outputs.append(Ran(line, done, elapsed))
    finally:
        for job in jobs:
            job.stop()
    return outputs


def wait_http(url: str, job: Background, timeout: float = 30) -> None:
    """Wait until `url` answers 200 (for a server that prints no start line of ours)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job.proc.poll() is not None:
            raise AssertionError(f"{job.line!r} exited with {job.proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout}s")


def call_tool(url: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One stateless (2026-07-28) tools/call over HTTP; the result."""
    return rpc(url, "tools/call", {"name": name, "arguments": arguments})


def rpc(url: str, method: str, params: dict[str, Any], capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    """One stateless (2026-07-28) request over HTTP, declaring `capabilities`; the result."""
    meta = {**MODERN_META, "io.modelcontextprotocol/clientCapabilities": capabilities or {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": method,
    }
    name = params.get("name", params.get("taskId"))
    if isinstance(name, str):
        headers["mcp-name"] = name
    req = urllib.request.Request(url, data=orjson.dumps(body), headers=headers)
    with urllib.request.urlopen(req, timeout=20) as r:
        answer = orjson.loads(r.read())
    result: dict[str, Any] = answer["result"]
    return result


def stdio_call(cmd: list[str], cwd: Path, env: dict[str, str], name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Initialize over stdio, call one tool, close stdin; the result."""
    msgs = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": arguments}},
    ]
    done = subprocess.run(
        cmd,
        input=b"".join(orjson.dumps(m) + b"\n" for m in msgs),
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    for line in done.stdout.splitlines():
        msg = orjson.loads(line)
        if msg.get("id") == 2:
            result: dict[str, Any] = msg["result"]
            return result
    raise AssertionError(f"no answer to the call: {done.stdout!r} {done.stderr!r}")
