"""`Supervisor`: run the server as a child process and restart it when it dies abnormally."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

log = logging.getLogger("bemcp.supervisor")

EX_TEMPFAIL = 75  # the server's emergency shutdown: abnormal, so it is restarted
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def build_child_argv(argv: Sequence[str]) -> list[str]:
    """The child's command for `bemcp <argv> --supervise`: the same arguments under this
    interpreter without `--supervise`.

    `argv` is what follows the program name, as `bemcp.cli.main` receives it.
    """
    args = [a for a in argv if a != "--supervise" and not a.startswith("--supervise=")]
    if not args or args[0] != "serve":
        args.insert(0, "serve")
    return [sys.executable, "-m", "bemcp", *args]


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal_name(-returncode)}"
    if returncode == EX_TEMPFAIL:
        return f"exit code {EX_TEMPFAIL} (emergency shutdown)"
    return f"exit code {returncode}"


def exit_status(returncode: int) -> int:
    """A Popen returncode as a process exit status: death by signal N becomes 128+N, as in shells."""
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    """Runs `argv` as a child and restarts it after abnormal exits, with backoff and a restart cap.

    Abnormal means a non-zero exit code (75 included) or death by a signal we did not forward.
    Exit code 0 ends supervision. SIGTERM and SIGINT (when `run()` is on the main thread) are
    forwarded to the child; the supervisor then waits for it and exits with its status.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        max_restarts: int = 5,
        window_s: float = 60.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        healthy_after_s: float = 10.0,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not argv:
            raise ValueError("argv must name a program")
        self.argv = list(argv)
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.healthy_after_s = healthy_after_s
        self.env = None if env is None else dict(env)
        self._sleep = sleep if sleep is not None else self._sleep_unless_stopped
        self._clock = clock
        self._child: subprocess.Popen[bytes] | None = None
        self._signalled: subprocess.Popen[bytes] | None = None
        self._stop_signal: int | None = None
        self.restarts = 0

    @property
    def child_pid(self) -> int | None:
        child = self._child
        return None if child is None else child.pid

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """End supervision: send `signum` to the child (if one is running) and restart nothing.

        Safe from a signal handler or another thread: it takes no locks (a handler that needs a lock
        the interrupted main thread holds deadlocks). `run()` returns once the child has exited.
        """
        self._stop_signal = signum
        child = self._child
        if child is not None and child.returncode is None:
            self._signalled = child
            # os.kill, not send_signal(): send_signal() polls, and the main thread may be in wait().
            # The pid cannot have been reused: only our wait() reaps it, and that sets returncode.
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    def run(self) -> int:
        """Supervise until the child exits 0, a stop is requested, or the restart cap is hit."""
        previous = self._install_handlers()
        try:
            return self._supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _install_handlers(self) -> dict[int, Any]:
        # Python only lets the main thread install handlers; elsewhere request_stop() is the way in.
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in FORWARDED_SIGNALS:
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # No logging here: a log handler's lock may be held by the very code this interrupted.
        self.request_stop(signum)

    def _sleep_unless_stopped(self, seconds: float) -> None:
        # Slices, because time.sleep() resumes after a signal handler and an Event is not
        # signal-safe; a stop request ends the backoff within one slice.
        deadline = time.monotonic() + seconds
        while self._stop_signal is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def _supervise(self) -> int:
        restarted_at: deque[float] = deque()
        backoff = self.backoff_initial_s
        while True:
            started = self._clock()
            returncode = self._run_child()
            ended = self._clock()
            ran_for = ended - started
            if self._stop_signal is not None:
                log.info(
                    "child %s after %s was forwarded to it; supervisor exiting",
                    describe_exit(returncode),
                    signal_name(self._stop_signal),
                )
                return exit_status(returncode)
            if returncode == 0:
                log.info("child exited normally; supervisor exiting")
                return 0
            if ran_for >= self.healthy_after_s:
                backoff = self.backoff_initial_s
            while restarted_at and ended - restarted_at[0] > self.window_s:
                restarted_at.popleft()
            fields = {
                "event": "child_exit",
                "returncode": returncode,
                "ran_for_s": round(ran_for, 3),
                "restarts": self.restarts,
                "restarts_in_window": len(restarted_at),
            }
            if len(restarted_at) >= self.max_restarts:
                log.error(
                    "giving up: child %s after %d restarts within %gs (max_restarts=%d)",
                    describe_exit(returncode),
                    len(restarted_at),
                    self.window_s,
                    self.max_restarts,
                    extra={"fields": {**fields, "event": "supervisor_gave_up"}},
                )
                # Never 0: the child did not finish its work.
                return exit_status(returncode)
            restarted_at.append(ended)
            self.restarts += 1
            log.warning(
                "child %s after %.2fs; restart %d (%d of %d within %gs) in %.2fs",
                describe_exit(returncode),
                ran_for,
                self.restarts,
                len(restarted_at),
                self.max_restarts,
                self.window_s,
                backoff,
                extra={"fields": {**fields, "event": "child_restart", "restarts": self.restarts, "backoff_s": backoff}},
            )
            self._sleep(backoff)
            if self._stop_signal is not None:
                log.info("stop requested during restart backoff; supervisor exiting")
                return exit_status(returncode)
            backoff = min(backoff * 2, self.backoff_max_s)

    def _run_child(self) -> int:
        try:
            child = subprocess.Popen(self.argv, env=self.env)
        except OSError as e:
            # Counted like a crash: a transient fork failure deserves a retry, a bad argv hits the cap.
            log.error("cannot start %s: %s", self.argv[0], e)
            return 127
        self._child = child
        try:
            # A signal that landed while Popen was running found no child to forward to.
            if self._stop_signal is not None and self._signalled is not child:
                self.request_stop(self._stop_signal)
            return child.wait()
        finally:
            self._child = None
