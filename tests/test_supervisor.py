"""Supervisor with real child processes: restarts, backoff, the restart cap and signal forwarding."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bemcp.runtime.supervisor import Supervisor, build_child_argv, describe_exit, exit_status

pytestmark = pytest.mark.timeout(60)

# One script, many behaviours: each run appends its pid to `runs`, then acts on `mode` and its run number.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path

    state, mode = Path(sys.argv[1]), sys.argv[2]
    with open(state / "runs", "a") as f:
        f.write(f"{os.getpid()}\\n")
    run = len((state / "runs").read_text().split())

    def ready():
        (state / f"ready.{run}").write_text(str(os.getpid()))

    if mode == "crash-twice":
        sys.exit(3 if run <= 2 else 0)
    if mode == "fail-four":
        sys.exit(1 if run <= 4 else 0)
    if mode == "always-fail":
        sys.exit(1)
    if mode == "tempfail-once":
        sys.exit(75 if run == 1 else 0)
    if mode == "hang-first":
        if run == 1:
            ready()
            time.sleep(30)
            sys.exit(9)
        sys.exit(0)
    if mode == "graceful":
        def on_signal(signum, frame):
            (state / "got-signal").write_text(signal.Signals(signum).name)
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        ready()
        time.sleep(30)
        sys.exit(9)
    raise SystemExit(f"unknown mode {mode}")
    """
)

# The supervisor as its own process, so signals can be sent to it like a service manager would.
RUNNER = textwrap.dedent(
    """
    import logging, sys
    from bemcp.runtime.supervisor import Supervisor

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    child, state, mode, backoff = sys.argv[1:5]
    sup = Supervisor([sys.executable, child, state, mode], backoff_initial_s=float(backoff), max_restarts=3)
    sys.exit(sup.run())
    """
)


@pytest.fixture
def child(tmp_path: Path) -> Path:
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


def argv(child: Path, mode: str) -> list[str]:
    return [sys.executable, str(child), str(child.parent), mode]


def runs(child: Path) -> list[int]:
    path = child.parent / "runs"
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_for(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def supervisor_process(child: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Whatever the test did, leave no child sleeping behind.
    for pid in runs(child):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_crashes_are_restarted_until_a_clean_exit(child: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bemcp.supervisor")
    sup = Supervisor(argv(child, "crash-twice"), backoff_initial_s=0.02)
    assert sup.run() == 0
    assert sup.restarts == 2
    assert len(runs(child)) == 3
    restarts = [r for r in caplog.records if r.name == "bemcp.supervisor" and r.levelno == logging.WARNING]
    assert len(restarts) == 2
    assert "exit code 3" in restarts[0].getMessage() and "restart 1" in restarts[0].getMessage()
    assert restarts[1].fields["restarts"] == 2 and restarts[1].fields["returncode"] == 3  # type: ignore[attr-defined]


def test_exit_75_is_abnormal_and_restarted(child: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bemcp.supervisor")
    sup = Supervisor(argv(child, "tempfail-once"), backoff_initial_s=0.02)
    assert sup.run() == 0
    assert sup.restarts == 1
    assert any("exit code 75" in r.getMessage() for r in caplog.records)


def test_sigkilled_child_is_restarted_promptly(child: Path, supervisor_process: object) -> None:
    sup = Supervisor(argv(child, "hang-first"), backoff_initial_s=0.1)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(sup.run()))
    thread.start()
    try:
        assert wait_for(child.parent / "ready.1")
        first = runs(child)[0]
        killed_at = time.monotonic()
        os.kill(first, signal.SIGKILL)
        while len(runs(child)) < 2 and time.monotonic() - killed_at < 5:
            time.sleep(0.01)
        restarted_in = time.monotonic() - killed_at
        assert len(runs(child)) == 2 and runs(child)[1] != first
        assert restarted_in < 2.0
        thread.join(10)
        assert result == [0]
        assert sup.restarts == 1
    finally:
        sup.request_stop(signal.SIGKILL)
        thread.join(10)


def test_restart_cap_gives_up_non_zero(child: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bemcp.supervisor")
    slept: list[float] = []
    sup = Supervisor(
        argv(child, "always-fail"), max_restarts=3, window_s=60, backoff_initial_s=0.01, sleep=slept.append
    )
    assert sup.run() != 0
    assert sup.restarts == 3
    assert len(runs(child)) == 4
    assert slept == [0.01, 0.02, 0.04]  # exponential backoff
    (gave_up,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "giving up" in gave_up.getMessage() and "3 restarts within 60s" in gave_up.getMessage()


def test_backoff_is_capped() -> None:
    slept: list[float] = []
    sup = Supervisor(
        [sys.executable, "-c", "raise SystemExit(2)"],
        max_restarts=5,
        backoff_initial_s=1,
        backoff_max_s=3,
        sleep=slept.append,
    )
    assert sup.run() == 2
    assert slept == [1, 2, 3, 3, 3]


def test_window_slides_and_healthy_runs_reset_backoff(child: Path) -> None:
    # Every run appears to last 100 s: each is healthy (backoff back to initial) and older
    # restarts leave the window, so four failures never reach a cap of two.
    now = [0.0]

    def clock() -> float:
        now[0] += 50.0
        return now[0]

    slept: list[float] = []
    sup = Supervisor(
        argv(child, "fail-four"), max_restarts=2, window_s=60, backoff_initial_s=0.01, sleep=slept.append, clock=clock
    )
    assert sup.run() == 0
    assert sup.restarts == 4
    assert slept == [0.01] * 4


def test_unstartable_program_hits_the_cap() -> None:
    sup = Supervisor(["/nonexistent/bemcp-child"], max_restarts=2, sleep=lambda s: None)
    assert sup.run() == 127
    assert sup.restarts == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_is_forwarded_and_child_drains(
    child: Path, tmp_path: Path, supervisor_process: list[subprocess.Popen[bytes]], signum: signal.Signals
) -> None:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    proc = subprocess.Popen(
        [sys.executable, str(runner), str(child), str(tmp_path), "graceful", "0.05"], stderr=subprocess.PIPE
    )
    supervisor_process.append(proc)
    assert wait_for(tmp_path / "ready.1")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()
    assert (tmp_path / "got-signal").read_text() == signum.name
    assert len(runs(child)) == 1  # no restart
    assert f"after {signum.name} was forwarded" in err.decode()


def test_stop_during_backoff_exits_promptly(
    child: Path, tmp_path: Path, supervisor_process: list[subprocess.Popen[bytes]]
) -> None:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    proc = subprocess.Popen(
        [sys.executable, str(runner), str(child), str(tmp_path), "always-fail", "30"], stderr=subprocess.PIPE
    )
    supervisor_process.append(proc)
    assert wait_for(tmp_path / "runs")
    # Let the supervisor see the failure and enter its 30 s backoff.
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - t0 < 5.0  # far below the 30 s backoff it cut short
    assert proc.returncode == 1, err.decode()  # the last child's failure, not a clean exit
    assert len(runs(child)) == 1


def test_build_child_argv() -> None:
    got = build_child_argv(["serve", "--transport", "http", "--supervise", "--port", "9000"])
    assert got == [sys.executable, "-m", "bemcp", "serve", "--transport", "http", "--port", "9000"]
    assert build_child_argv(["--supervise=1", "--port", "1"]) == [sys.executable, "-m", "bemcp", "serve", "--port", "1"]


def test_exit_descriptions() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert "emergency" in describe_exit(75)
    assert exit_status(-15) == 143 and exit_status(4) == 4
