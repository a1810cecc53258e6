"""What `bemcp stress` shows while it runs: a live line on a terminal (a real pseudo-terminal here), plain
lines through a pipe, and only the verdict and the report paths with --quiet."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.procs import ROOT
from tests.stress.cli_run import cli_env, no_traceback, stress

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
# The rate phase alone on its fixed ladder (no tsunami first): about ten seconds, with a live line.
ARGS = ("--phases", "rate")
# --quiet must silence every line a run prints; the tasks phase prints its steps' lines too, in about five.
QUIET_ARGS = ("--phases", "tasks")


def _on_a_terminal(out: Path) -> tuple[int, bytes, str]:
    """Run with stderr on a pseudo-terminal; returns the exit code, what the terminal got, and stdout."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bemcp", "stress", *ARGS, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env={**cli_env(), "COLUMNS": "200", "TERM": "xterm-256color"},
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the other side closed
                    break
                if not data:
                    break
                seen += data
            elif proc.poll() is not None:
                break
        assert proc.stdout is not None
        return proc.wait(timeout=30), seen, proc.stdout.read().decode()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_a_terminal_gets_a_live_line(tmp_path: Path) -> None:
    code, seen, stdout = _on_a_terminal(tmp_path / "out")
    assert code == 0, seen[-3000:]
    assert b"Traceback" not in seen
    text = ANSI.sub(b"", seen).decode()
    # The live line is redrawn in place (carriage return + erase line), several times per step...
    assert seen.count(b"\r\x1b[2K") >= 10, seen[:2000]
    assert re.search(r"rate step 1: 50 calls/s\s+·\s+\d+\.\d s\s+·\s+\d+ answered", text), text[:2000]
    assert re.search(r"last second: \d+ ok, 0 not ok, p99 [\d.]+ ms", text), text[:2000]
    # ...and every step still leaves its summary line.
    assert len(re.findall(r"rate\s+level\s+\d+: +\d+ calls", text)) >= 3
    assert stdout.startswith("verdict: PASS")


def test_a_pipe_gets_plain_lines_and_quiet_only_the_verdict(tmp_path: Path) -> None:
    plain = stress(*ARGS, "--out", str(tmp_path / "plain"), timeout=120)
    no_traceback(plain)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "\x1b[" not in plain.stderr and "answered" not in plain.stderr  # no escapes, no live line
    lines = plain.stderr.splitlines()
    assert all(re.match(r"\[ *\d+\.\ds\] ", line) for line in lines), lines  # each line stamped
    assert any("phase rate" in line for line in lines)

    quiet = stress(*QUIET_ARGS, "--quiet", "--out", str(tmp_path / "quiet"), timeout=120)
    no_traceback(quiet)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[-3000:]
    out = quiet.stdout.splitlines()
    assert out[0] == "verdict: PASS" and out[1] == "reports:"
    assert [line.split()[0] for line in out[2:]] == ["json", "md", "html", "log"]
