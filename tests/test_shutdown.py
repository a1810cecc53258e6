"""Shutdown that always ends, through real `bemcp serve` processes on both transports.

A drain that times out answers the calls still in flight and exits, leaving stuck threads behind and naming
them; a second signal exits at once; closing stdin drains the same way; the watchdog's emergency exit (75)
ends a server whose loop is stuck, and `--supervise` brings it back. The misbehaving tools come from
`tests.apps.stuck` (`block` holds a worker thread, `wait` is well-behaved async work).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson
import psutil
import pytest

from tests.procs import BEMCP, MODERN_META, ROOT, StdioServer, _env, free_port, http_server, stop
from tests.test_protection import CALL_TIMEOUT, OVERLOADED, Reply, call, get, health, metrics, result_of, wait_until

pytestmark = pytest.mark.timeout(120)

STUCK = "tests.apps.stuck:app"
STUCK_S = 60  # a sync tool far longer than any test: only abandoning its thread lets the server exit in time
EXIT_S = 30  # generous bound for a server to exit once it should (it should take the drain timeout plus ~1 s)


def error_of(reply: Reply) -> dict[str, Any]:
    msg = reply.json()
    assert "error" in msg, (reply.status, msg)
    err: dict[str, Any] = msg["error"]
    return err


async def in_flight(port: int, n: int) -> None:
    """Wait until `n` calls are running (read from /metrics, which is no call itself)."""
    await wait_until(lambda: metrics(port), lambda m: m["bemcp_in_flight"] == n, 20, f"{n} calls in flight")


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float = EXIT_S) -> int:
    try:
        return await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the server did not exit within {timeout}s") from None


# -- HTTP ----------------------------------------------------------------------------------


async def test_a_timed_out_drain_answers_the_calls_in_flight_and_exits(tmp_path: Path) -> None:
    with http_server("--app", STUCK, "--drain-timeout", "2", tmp=tmp_path) as srv:
        stuck = asyncio.create_task(call(srv.port, "block", {"seconds": STUCK_S}, timeout=EXIT_S))
        slow = asyncio.create_task(call(srv.port, "wait", {"seconds": STUCK_S}, timeout=EXIT_S))
        await in_flight(srv.port, 2)
        srv.proc.send_signal(signal.SIGTERM)

        # Each is answered -32051 `drain_timeout`; the sync one says its thread still runs.
        blocked, waited = error_of(await stuck), error_of(await slow)
        assert blocked["code"] == waited["code"] == CALL_TIMEOUT
        assert blocked["data"] == {"reason": "drain_timeout", "abandoned": True}
        assert waited["data"] == {"reason": "drain_timeout"}
        assert "drain timed out" in blocked["message"]

        assert await wait_exit(srv.proc) == 0
        log = srv.log.read_text()
        assert "drain timed out after 2s: 2 calls still in flight were cancelled and answered" in log
        assert "1 sync threads still running (block)" in log


async def test_sigterm_exits_while_a_timed_out_sync_tool_still_holds_its_thread(tmp_path: Path) -> None:
    args = ("--app", STUCK, "--call-timeout", "1", "--drain-timeout", "1")
    with http_server(*args, tmp=tmp_path) as srv:
        err = error_of(await call(srv.port, "block", {"seconds": STUCK_S}))
        assert err["code"] == CALL_TIMEOUT
        srv.proc.send_signal(signal.SIGTERM)
        assert await wait_exit(srv.proc) == 0
        assert err["data"] == {"reason": "deadline", "timeout_s": 1.0, "abandoned": True}
        log = srv.log.read_text()
        assert "1 abandoned calls still running after their answer (block)" in log
        assert "1 sync threads still running (block)" in log
        assert "exiting (code 0) with work left behind" in log


# -- stdio ---------------------------------------------------------------------------------


class Lines:
    """One of a process's output streams, read by a thread of its own, so a test can wait with a deadline."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._lines: queue.Queue[bytes] = queue.Queue()
        self.seen: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(ValueError, OSError):  # the test closed the stream
            for line in stream:
                self._lines.put(line)
        self._lines.put(b"")  # end of stream

    def until(self, pred: Callable[[bytes], bool], timeout: float, what: str) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{what}: not seen within {timeout}s") from None
            if not line:
                raise AssertionError(f"{what}: the stream ended first")
            self.seen.append(line)
            if pred(line):
                return line

    def text(self) -> str:
        return b"".join(self.seen).decode(errors="replace")


class Stdio:
    """`bemcp serve --transport stdio` with both output streams read in the background."""

    def __init__(self, *args: str) -> None:
        self.server = StdioServer(*args, app=STUCK)
        assert self.server.proc.stderr is not None
        self.out = Lines(self.server.stdout)
        self.err = Lines(self.server.proc.stderr)
        self.proc = self.server.proc
        self._ids = 0

    def send(self, msg: dict[str, Any]) -> None:
        self.server.send(msg)

    def call(self, tool: str, args: dict[str, Any]) -> int:
        """Send a 2026-07-28 `tools/call`; returns its id."""
        self._ids += 1
        params = {"name": tool, "arguments": args, "_meta": MODERN_META}
        self.send({"jsonrpc": "2.0", "id": self._ids, "method": "tools/call", "params": params})
        return self._ids

    def answer(self, req_id: int, timeout: float = EXIT_S) -> dict[str, Any]:
        def is_answer(line: bytes) -> bool:
            msg = orjson.loads(line)
            return isinstance(msg, dict) and msg.get("id") == req_id and "method" not in msg

        msg: dict[str, Any] = orjson.loads(self.out.until(is_answer, timeout, f"the answer to {req_id}"))
        return msg

    def health(self) -> dict[str, Any]:
        res: dict[str, Any] = self.answer(self.call("server_health", {}))["result"]["structuredContent"]
        return res

    def initialize(self) -> None:
        """The 2025-11-25 handshake, so that the client may send `notifications/cancelled`."""
        self.send(
            {
                "jsonrpc": "2.0",
                "id": "init",
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            }
        )
        self.out.until(lambda line: orjson.loads(line).get("id") == "init", 20, "the initialize answer")
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def until_health(self, pred: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not pred(h := self.health()):
            assert time.monotonic() < deadline, f"{what}: not reached within {timeout}s (last: {h})"
            time.sleep(0.05)
        return h

    def messages(self) -> list[dict[str, Any]]:
        """Every message read from stdout so far."""
        return [orjson.loads(line) for line in self.out.seen]

    def running(self, calls: int) -> None:
        """Wait until `calls` calls are in flight (server_health does not count itself)."""
        deadline = time.monotonic() + 20
        while self.health()["in_flight"] != calls:
            assert time.monotonic() < deadline, f"{calls} calls never ran"
            time.sleep(0.05)

    def draining(self) -> None:
        """Wait until the server refuses new calls as draining (its drain has begun)."""
        deadline = time.monotonic() + 20
        while True:
            msg = self.answer(self.call("echo", {"text": "too late?"}))
            if "error" in msg:
                assert msg["error"]["code"] == OVERLOADED
                assert msg["error"]["data"]["reason"] == "draining"
                return
            assert time.monotonic() < deadline, "the drain never began"
            time.sleep(0.05)

    def wait(self, timeout: float = EXIT_S) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not exit within {timeout}s") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.stdin.close()
        stop(self.proc)


def test_sigterm_over_stdio_drains_in_flight_calls_then_exits() -> None:
    srv = Stdio("--drain-timeout", "20")
    try:
        slow = srv.call("wait", {"seconds": 1.5})
        srv.running(1)
        srv.proc.send_signal(signal.SIGTERM)
        srv.draining()  # new calls are refused while stdin is still read
        assert srv.answer(slow)["result"]["structuredContent"] == {"result": "waited 1.5s"}
        assert srv.wait() == 0
    finally:
        srv.close()


def test_sigterm_over_stdio_with_a_stuck_sync_tool_answers_it_and_exits() -> None:
    srv = Stdio("--drain-timeout", "1")
    try:
        stuck = srv.call("block", {"seconds": STUCK_S})
        srv.running(1)
        srv.proc.send_signal(signal.SIGTERM)
        err = srv.answer(stuck)["error"]
        assert err["code"] == CALL_TIMEOUT
        assert err["data"] == {"reason": "drain_timeout", "abandoned": True}
        assert srv.wait() == 0
        srv.err.until(lambda line: b"exiting (code 0) with work left behind" in line, 10, "the exit line")
        assert "1 sync threads still running (block)" in srv.err.text()
    finally:
        srv.close()


def test_closing_stdin_drains_answers_what_is_left_and_exits() -> None:
    srv = Stdio("--drain-timeout", "2")
    try:
        stuck = srv.call("block", {"seconds": STUCK_S})
        slow = srv.call("wait", {"seconds": STUCK_S})
        quick = srv.call("wait", {"seconds": 0.5})
        srv.running(3)
        srv.server.stdin.close()
        # Read before stdin closed: served as usual; still running after the drain timeout: answered.
        assert srv.answer(quick)["result"]["structuredContent"] == {"result": "waited 0.5s"}
        assert srv.answer(stuck)["error"]["data"] == {"reason": "drain_timeout", "abandoned": True}
        assert srv.answer(slow)["error"]["data"] == {"reason": "drain_timeout"}
        assert srv.wait() == 0
        srv.err.until(lambda line: b"left behind" in line, 10, "the left-behind line")
        assert "1 sync threads still running (block)" in srv.err.text()
    finally:
        srv.close()


# -- the second signal -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "signum"),
    [("http", signal.SIGTERM), ("http", signal.SIGINT), ("stdio", signal.SIGTERM), ("stdio", signal.SIGINT)],
)
async def test_a_second_signal_exits_at_once(transport: str, signum: int, tmp_path: Path) -> None:
    # The drain would wait a minute for the stuck call; the second signal must not.
    if transport == "http":
        with http_server("--app", STUCK, "--drain-timeout", "60", tmp=tmp_path) as srv:
            stuck = asyncio.create_task(call(srv.port, "block", {"seconds": STUCK_S}, timeout=EXIT_S))
            await in_flight(srv.port, 1)
            srv.proc.send_signal(signum)
            await wait_until(lambda: get(srv.port, "/readyz"), lambda r: r.status == 503, 10, "draining")
            srv.proc.send_signal(signum)
            assert await wait_exit(srv.proc, 15) == 128 + signum
            with contextlib.suppress(Exception):
                await stuck  # the connection ends with the process
            log = srv.log.read_text()
    else:
        srv = Stdio("--drain-timeout", "60")
        try:
            srv.call("block", {"seconds": STUCK_S})
            srv.running(1)
            srv.proc.send_signal(signum)
            srv.draining()
            srv.proc.send_signal(signum)
            assert await asyncio.to_thread(srv.wait, 15) == 128 + signum
            srv.err.until(lambda line: b"exiting at once" in line, 10, "the exit line")
            log = srv.err.text()
        finally:
            srv.close()
    name = signal.Signals(signum).name
    assert f"{name} again: exiting at once; left behind: 1 unanswered calls still running (block)" in log


# -- the watchdog's emergency exit ------------------------------------------------------------

EMERGENCY = ("--stress-tools", "--stall-threshold", "0.5", "--emergency-threshold", "2", "--drain-timeout", "1")


async def block_the_loop(port: int) -> None:
    """A call that blocks the event loop for a minute; the process ends before it can be answered."""
    with contextlib.suppress(Exception):
        await call(port, "block_event_loop", {"milliseconds": 60_000}, timeout=EXIT_S)


async def test_a_loop_blocked_past_the_emergency_threshold_exits_75(tmp_path: Path) -> None:
    with http_server(*EMERGENCY, tmp=tmp_path) as srv:
        blocker = asyncio.create_task(block_the_loop(srv.port))
        assert await wait_exit(srv.proc) == 75
        await blocker
        log = srv.log.read_text()
        assert "emergency shutdown: event loop stuck for" in log
        assert "emergency exit (75); left behind: 1 unanswered calls still running (block_event_loop)" in log


def _supervised(port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [BEMCP, "serve", "--transport", "http", "--port", str(port), *EMERGENCY, "--supervise"]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)


async def test_supervise_brings_a_server_back_healthy_after_its_emergency_exit(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "supervised.log"
    sup = _supervised(port, log)
    try:

        async def pid() -> int | None:
            try:
                return int((await health(port))["pid"])
            except OSError:
                return None

        first = await wait_until(pid, lambda p: p is not None, 20, "the supervised server")
        assert first is not None and psutil.Process(first).ppid() == sup.pid
        blocker = asyncio.create_task(block_the_loop(port))
        second = await wait_until(pid, lambda p: p is not None and p != first, EXIT_S, "a restarted server")
        await blocker
        assert second is not None and psutil.Process(second).ppid() == sup.pid
        assert not psutil.pid_exists(first)
        h = await health(port)
        assert h["status"] == "ok" and h["ready"] is True
        assert result_of(await call(port, "echo", {"text": "back"}))["structuredContent"] == {"result": "back"}
        assert "child exit code 75 (emergency shutdown)" in log.read_text()

        sup.send_signal(signal.SIGTERM)
        assert await wait_exit(sup) == 0
        assert not psutil.pid_exists(second)
    finally:
        stop(sup)
        if sup.poll() is None:
            os.kill(sup.pid, signal.SIGKILL)
