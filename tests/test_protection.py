"""The protection systems, end to end, through real `bemcp serve` subprocesses.

Overload (admission and its 503), the watchdog, call deadlines, the memory
budget, the fan-out budget, client disconnects, the SIGTERM drain, the
supervisor, the I/O sandbox, admission on stdio, and the runtime's own
start/stop lifecycle. HTTP calls go through a small raw-socket HTTP/1.1 client
(and the overload storm through a blocking selector loop on its own thread),
so the numbers measure the server rather than an HTTP library.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psutil
import pytest

from bemcp.runtime.registry import CallRegistry
from bemcp.runtime.runtime import Runtime, RuntimeConfig
from bemcp.tools.workload import Fanout, FanoutLimitReached
from tests.procs import MODERN_META, ROOT, HttpServer, StdioServer, _env, free_port, http_server, stop

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
MiB = 1024 * 1024
OVERLOADED = -32050
CALL_TIMEOUT = -32051


# -- a lean HTTP/1.1 client ------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float  # seconds from sending the request to having its whole response

    def json(self) -> Any:
        return orjson.loads(self.body)


def call_request(port: int, req_id: int | str, tool: str, args: dict[str, Any] | None = None) -> bytes:
    """A 2026-07-28 `tools/call` POST: routing headers plus the `_meta` envelope, no session."""
    body = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": req_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": args or {}, "_meta": MODERN_META},
        }
    )
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n"
        f"Mcp-Method: tools/call\r\nMcp-Name: {tool}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return int(lines[0].split(" ", 2)[1]), headers


class Conn:
    """One keep-alive connection on the test's event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> Reply:
        start = time.perf_counter()
        self.writer.write(raw)
        status, headers = parse_head(await self.reader.readuntil(b"\r\n\r\n"))
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:  # the server answers JSON with a length; anything else runs to the end of the stream
            body = await self.reader.read()
        return Reply(status, headers, body, time.perf_counter() - start)

    def abort(self) -> None:
        """Close with a RST (SO_LINGER 0), the abrupt way a crashed client goes."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def call(port: int, tool: str, args: dict[str, Any] | None = None, *, timeout: float = 10.0) -> Reply:
    conn = await Conn.open(port)
    try:
        return await asyncio.wait_for(conn.request(call_request(port, 1, tool, args)), timeout)
    finally:
        await conn.close()


async def get(port: int, path: str, *, timeout: float = 5.0) -> Reply:
    conn = await Conn.open(port)
    try:
        return await asyncio.wait_for(
            conn.request(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()), timeout
        )
    finally:
        await conn.close()


def result_of(reply: Reply) -> dict[str, Any]:
    msg = reply.json()
    assert reply.status == 200 and "result" in msg, (reply.status, msg)
    result: dict[str, Any] = msg["result"]
    return result


def text_of(result: dict[str, Any]) -> str:
    return "".join(c["text"] for c in result["content"] if c["type"] == "text")


async def health(port: int) -> dict[str, Any]:
    structured: dict[str, Any] = result_of(await call(port, "server_health"))["structuredContent"]
    return structured


async def metrics(port: int) -> dict[str, float]:
    """/metrics as {'name{labels}': value}."""
    reply = await get(port, "/metrics")
    assert reply.status == 200
    out: dict[str, float] = {}
    for line in reply.body.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


async def wait_until(probe: Callable[[], Awaitable[T]], pred: Callable[[T], bool], timeout: float, what: str) -> T:
    """Poll `probe()` until `pred(value)`; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if pred(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s (last: {value!r})")
        await asyncio.sleep(0.05)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


# -- the storm client ------------------------------------------------------------------------


@dataclass
class Storm:
    replies: list[Reply]
    resets: int  # connections reset or closed before a whole response
    hung: int  # connections with no whole response by the deadline
    neighbours: float  # cores other processes kept busy in the first `window` seconds (not ours)


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (guest time is already inside user)."""
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def storm(
    port: int, requests: list[bytes], timeout: float, server_pid: int | None = None, window: float = 0.25
) -> Storm:
    """Connect once per request, then send them all at once and read every response.

    A blocking selector loop on the calling thread: about the cheapest client
    Python has, so the latencies are the server's. Each request is timed from
    its own send to the poll that saw the end of its response. With
    `server_pid`, it also measures how busy everything else on the machine was
    during the first `window` seconds, while the server works through the burst.
    """
    me = psutil.Process()
    server = psutil.Process(server_pid) if server_pid is not None else None
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in requests]
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[float, bytearray]] = {}
    replies: list[Reply] = []
    resets = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no collector pause of ours inside the measurements
    try:
        time.sleep(0.1)  # let the server accept them all before the clock starts

        def cpu() -> tuple[float, float]:
            ours = _cpu_seconds(me) + (_cpu_seconds(server) if server is not None else 0.0)
            return _busy_cpu_seconds(), ours

        cpu_before, start = cpu(), time.perf_counter()
        at_window: tuple[float, tuple[float, float]] | None = None  # (seconds in, cpu())
        for sock, raw in zip(socks, requests, strict=True):
            sock.setblocking(False)
            pending[sock] = (time.perf_counter(), bytearray())
            try:
                sock.sendall(raw)  # small enough for an empty socket buffer
            except (ConnectionResetError, BrokenPipeError):
                resets += 1
                del pending[sock]
                continue
            sel.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            ready = sel.select(0.5 if at_window is not None else 0.02)
            seen = time.perf_counter()  # when the client learned of these responses
            if at_window is None and seen - start >= window:
                at_window = (seen - start, cpu())
            for key, _ in ready:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                sent, buf = pending[sock]
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    resets += 1
                    sel.unregister(sock)
                    del pending[sock]
                    continue
                buf += data
                head, sep, body = bytes(buf).partition(b"\r\n\r\n")
                if not sep:
                    continue
                status, headers = parse_head(head)
                if len(body) >= int(headers["content-length"]):
                    replies.append(Reply(status, headers, body, seen - sent))
                    sel.unregister(sock)
                    del pending[sock]
        wall, cpu_after = at_window or (time.perf_counter() - start, cpu())
    finally:
        if gc_was_enabled:
            gc.enable()
        sel.close()
        for sock in socks:
            sock.close()
    others = (cpu_after[0] - cpu_before[0]) - (cpu_after[1] - cpu_before[1])
    return Storm(replies, resets, len(pending), max(0.0, others) / wall)


# -- servers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """Workload tools with a 512 MiB memory limit (so a 0.8 x 512 MiB budget); defaults otherwise."""
    with http_server("--stress-tools", "--memory-limit-mb", "512", tmp=tmp_path_factory.mktemp("stress")) as s:
        yield s


# -- 1. overload ---------------------------------------------------------------------------


STORM_CALLS, STORM_LIMIT, STORM_QUEUE = 500, 50, 50
# Far past any refusal on any machine: a refused call is answered at once, never after waiting the queue out.
STORM_QUEUE_TIMEOUT_S = 10.0
# Long enough that the server reads the whole storm before the first wave ends, on any machine: the refusals are
# then exactly the calls past limit + queue.
STORM_HOLD_S = 2.0


async def _overload_storm(port: int, server_pid: int) -> tuple[list[Reply], list[Reply]]:
    """One storm of 500 simultaneous `hold(2 s)` calls (tests/stress/reach_app.py), checked in full.

    Returns the admitted and the refused replies.
    """
    before = await metrics(port)
    requests = [call_request(port, i, "hold", {"tag": str(i), "seconds": STORM_HOLD_S}) for i in range(STORM_CALLS)]
    got = await asyncio.to_thread(storm, port, requests, 30, server_pid)  # 30 s: the overall no-hang bound
    after = await metrics(port)

    assert got.resets == 0
    assert got.hung == 0
    assert len(got.replies) == STORM_CALLS
    ok: list[Reply] = []
    rejected: list[Reply] = []
    for reply in got.replies:
        msg = reply.json()
        if reply.status == 200:
            assert text_of(msg["result"]) == f"held {msg['id']}"
            ok.append(reply)
            continue
        assert reply.status == 503, (reply.status, msg)
        assert int(reply.headers["retry-after"]) >= 1
        err = msg["error"]
        assert err["code"] == OVERLOADED
        data = err["data"]
        # Refused at admission (the queue was full), never after waiting in it: nothing here times out.
        assert data["reason"] == "concurrency_limit", data
        assert set(data) == {"reason", "retry_after_ms", "limit", "in_flight", "queued"}
        assert data["limit"] == STORM_LIMIT
        assert 50 <= data["retry_after_ms"] <= 5000
        assert 0 <= data["in_flight"] <= STORM_LIMIT
        assert 0 <= data["queued"] <= STORM_QUEUE
        rejected.append(reply)
    # The queued calls are admitted as the first wave ends, so limit + queue succeed; the rest, all read long
    # before that, find the queue full.
    assert len(ok) == STORM_LIMIT + STORM_QUEUE
    assert len(ok) + len(rejected) == STORM_CALLS
    assert sorted(r.json()["id"] for r in got.replies) == list(range(STORM_CALLS))  # each answered exactly once

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    refused = sum(delta(f'bemcp_rejected_total{{reason="{r}"}}') for r in ("concurrency_limit", "queue_timeout"))
    assert refused == len(rejected)
    assert delta('bemcp_calls_completed_total{outcome="ok"}') == len(ok)
    assert delta("bemcp_admitted_total") == len(ok)
    return ok, rejected


async def test_overload_storm_is_answered_and_refused_calls_never_reach_the_tool(tmp_path: Path) -> None:
    """10x the concurrency limit at once: every call is answered exactly once, and a refused call never ran.

    The tool itself (tests/stress/reach_app.py) records every call that reached it: exactly the admitted ones,
    none of the refused. Each refusal is answered before the queue timeout, so it was never parked in the
    queue. Nothing here depends on how busy the machine is; how fast a refusal is answered is a goal, measured
    by benchmarks/bench_rejection.py (p50 and p99, with its figure in the README).
    """
    flags = ("--max-concurrency", str(STORM_LIMIT), "--queue-size", str(STORM_QUEUE))
    timeout_ms = str(int(STORM_QUEUE_TIMEOUT_S * 1000))
    with http_server(*flags, "--queue-timeout-ms", timeout_ms, app="tests.stress.reach_app:app", tmp=tmp_path) as srv:
        port = srv.port
        baseline = await health(port)
        ok, rejected = await _overload_storm(port, srv.proc.pid)

        reached = text_of(result_of(await call(port, "reached"))).split(",")
        assert sorted(map(int, reached)) == sorted(r.json()["id"] for r in ok)  # each admitted call ran once
        assert not {str(r.json()["id"]) for r in rejected} & set(reached)  # no refused call ran at all
        assert max(r.elapsed for r in rejected) < STORM_QUEUE_TIMEOUT_S

        settled = await wait_until(
            lambda: health(port),
            lambda h: h["in_flight"] == 0 and h["queued"] == 0 and h["loop_tasks"] <= baseline["loop_tasks"] + 2,
            5,
            "in_flight, queued and loop_tasks back to their baseline",
        )
        assert settled["loop_tasks"] >= baseline["loop_tasks"] - 2
        assert settled["sync_threads"]["running"] == 0
        assert settled["sync_threads"]["abandoned"] == 0
        final = await metrics(port)
        assert final["bemcp_in_flight"] == 0
        assert final["bemcp_queued"] == 0
        assert final["bemcp_sync_threads_running"] == 0


# -- 2. the watchdog -----------------------------------------------------------------------


async def test_blocked_loop_is_recorded_with_the_blocking_stack(tmp_path: Path) -> None:
    log_file = tmp_path / "log.jsonl"
    with http_server("--stress-tools", "--stall-threshold", "1", "--log-file", str(log_file), tmp=tmp_path) as srv:
        port = srv.port
        started = time.perf_counter()
        blocker = asyncio.create_task(call(port, "block_event_loop", {"milliseconds": 3000}))
        await asyncio.sleep(0.3)
        other = await call(port, "echo", {"text": "still here"})
        other_done = time.perf_counter() - started
        blocked = await blocker

        assert text_of(result_of(blocked)) == "blocked the event loop for 3000 ms"
        assert text_of(result_of(other)) == "still here"
        assert other_done >= 2.5, "the other call was answered while the loop was blocked?"
        assert other_done < 6

        h = await health(port)
        assert h["watchdog"]["events"]["loop_stall"] >= 1
        assert h["watchdog"]["max_loop_lag_ms"] >= 2000
        assert h["status"] == "ok"
        m = await metrics(port)
        assert m['bemcp_watchdog_events_total{kind="loop_stall"}'] >= 1

        def stall_records() -> list[dict[str, Any]]:
            lines = log_file.read_text().splitlines() if log_file.exists() else []
            return [r for r in map(orjson.loads, lines) if r.get("event") == "loop_stall"]

        async def records() -> list[dict[str, Any]]:
            return stall_records()

        found = await wait_until(records, bool, 5, "a loop_stall record in the log file")
        record = found[0]
        assert record["level"] == "WARNING"
        assert record["stalled_s"] > 1
        assert "in block_event_loop" in record["stack"]
        assert "time.sleep(milliseconds / 1000)" in record["stack"]

        # Still serving, with nothing left over.
        assert text_of(result_of(await call(port, "echo", {"text": "after"}))) == "after"
        assert (await health(port))["in_flight"] == 0


# -- 3. deadlines --------------------------------------------------------------------------


async def test_call_past_its_deadline_is_cancelled(tmp_path: Path) -> None:
    with http_server("--stress-tools", "--call-timeout", "0.5", tmp=tmp_path) as srv:
        reply = await call(srv.port, "hang")
        assert reply.elapsed < 1.5
        assert reply.elapsed >= 0.45
        err = reply.json()["error"]
        assert err["code"] == CALL_TIMEOUT
        assert err["data"] == {"reason": "deadline", "timeout_s": 0.5}
        h = await health(srv.port)
        assert h["in_flight"] == 0
        assert h["completed"]["timeout"] == 1
        assert h["watchdog"]["events"].get("deadline_cancel", 0) == 0  # asyncio.timeout did it, not the backstop


# -- 4. the memory budget ------------------------------------------------------------------


async def test_memory_budget_refuses_and_bounds_allocations(stress: HttpServer) -> None:
    port = stress.port
    budget = int(512 * MiB * 0.8)
    h = await health(port)
    assert h["memory"]["limit_bytes"] == 512 * MiB
    assert h["memory"]["source"] == "configured"
    assert h["memory"]["budget_bytes"] == budget

    refused = await call(port, "allocate_memory", {"megabytes": 600})
    result = result_of(refused)
    assert result["isError"] is True
    text = text_of(result)
    assert "600.0 MiB" in text
    assert f"{budget / MiB:.1f} MiB budget" in text  # 409.6
    assert refused.elapsed < 0.5

    proc = psutil.Process(stress.proc.pid)
    rss_before = proc.memory_info().rss
    holder = asyncio.create_task(call(port, "allocate_memory", {"megabytes": 100, "hold_seconds": 0.2}))
    reported: list[int] = []
    reserved: list[int] = []
    real: list[int] = []
    while not holder.done():
        snap = await health(port)
        reported.append(snap["memory"]["rss_bytes"])
        reserved.append(snap["memory"]["reserved_bytes"])
        real.append(proc.memory_info().rss)
        await asyncio.sleep(0.01)
    held = result_of(await holder)
    assert held.get("isError") is not True
    assert held["structuredContent"] == {"megabytes": 100.0, "held_seconds": 0.2}
    assert 100 * MiB in reserved  # the reservation was visible while held
    assert max(real) - rss_before >= 90 * MiB  # the pages really were resident
    assert max(real) < budget
    assert max(reported) < budget
    # Bytes marked resident count as "settling" until the next sample shows them in the usage (up to one
    # sampling period after the call, 500 ms at normal level), then nothing is reserved any more.
    after = await wait_until(
        lambda: health(port), lambda h: h["memory"]["reserved_bytes"] == 0, 3, "reserved bytes back to 0"
    )
    assert after["memory"]["level"] == "normal"


# -- 5. the fan-out budget -----------------------------------------------------------------


async def test_fanout_bomb_stops_at_its_budget(stress: HttpServer) -> None:
    port = stress.port
    bomb = await call(port, "recursive_fanout", {"depth": 10, "breadth": 10}, timeout=10)
    result = result_of(bomb)
    assert result["isError"] is True
    assert text_of(result) == "fan-out stopped at its budget of 10000 sub-tasks"
    assert bomb.elapsed < 3
    h = await health(port)
    assert h["status"] == "ok"
    assert h["in_flight"] == 0
    assert (await metrics(port))["bemcp_subtasks"] == 0

    small = result_of(await call(port, "recursive_fanout", {"depth": 2, "breadth": 3}))
    assert small["structuredContent"] == {"nodes": 13, "depth": 2, "breadth": 3}


async def test_fanout_budget_bounds_the_tasks_created() -> None:
    """In process: the budget caps the tasks that exist, and the error is the budget's own, not a group."""
    loop = asyncio.get_running_loop()
    created = 0

    def count(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        nonlocal created
        created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    calls = CallRegistry()
    fanout = Fanout(calls, max_nodes=500)
    loop.set_task_factory(count)
    try:
        with pytest.raises(FanoutLimitReached, match="budget of 500 sub-tasks"):
            await fanout.run(10, 10)
    finally:
        loop.set_task_factory(None)
    assert created < 500  # the root runs in the caller's task
    assert calls.subtasks == 0
    assert await fanout.run(3, 2) == 15


# -- 6. client disconnects -----------------------------------------------------------------


async def test_disconnect_storm_cancels_every_call(stress: HttpServer) -> None:
    port = stress.port
    n = 100
    baseline = await health(port)
    cancelled_before = baseline["completed"].get("cancelled", 0)
    conns = await asyncio.gather(*(Conn.open(port) for _ in range(n)))
    for i, conn in enumerate(conns):
        conn.writer.write(call_request(port, i, "hang"))
    await wait_until(lambda: health(port), lambda h: h["in_flight"] == n, 5, f"{n} hang calls in flight")
    for conn in conns:
        conn.abort()
    gone = time.monotonic()
    settled = await wait_until(lambda: health(port), lambda h: h["in_flight"] == 0, 3, "in_flight back to 0")
    assert time.monotonic() - gone < 3
    assert settled["completed"]["cancelled"] - cancelled_before == n
    await wait_until(
        lambda: health(port),
        lambda h: abs(h["loop_tasks"] - baseline["loop_tasks"]) <= 2,
        3,
        "loop_tasks back to baseline",
    )


# -- 7. drain on SIGTERM -------------------------------------------------------------------


async def test_sigterm_drains_in_flight_calls_then_exits_cleanly(tmp_path: Path) -> None:
    with http_server("--stress-tools", "--drain-timeout", "5", tmp=tmp_path) as srv:
        port = srv.port
        slow = asyncio.create_task(call(port, "sleep", {"seconds": 1.5}))
        await asyncio.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # The drain starts on uvicorn's next tick (every 0.1 s).
        ready = await wait_until(lambda: get(port, "/readyz"), lambda r: r.status == 503, 1, "/readyz 503")
        assert ready.json() == {"ready": False, "reason": "draining"}
        refused = await call(port, "echo", {"text": "too late"})
        assert refused.status == 503
        assert int(refused.headers["retry-after"]) >= 1
        err = refused.json()["error"]
        assert err["code"] == OVERLOADED
        assert err["data"]["reason"] == "draining"
        assert not slow.done()

        finished = await slow
        assert text_of(result_of(finished)) == "slept 1.5s"
        rc = await asyncio.to_thread(srv.proc.wait, 5)
        assert rc == 0
        assert time.monotonic() - signalled < 5


# -- 8. the supervisor ---------------------------------------------------------------------


def _healthz(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        return s.recv(64).startswith(b"HTTP/1.1 200")
    return False


def _supervised(port: int, log: Path) -> subprocess.Popen[bytes]:
    """`bemcp serve --transport http --port P --supervise`, as a service manager would start it."""
    cmd = [sys.executable, "-m", "bemcp", "serve", "--transport", "http", "--port", str(port), "--supervise"]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)


async def test_supervisor_restarts_a_killed_server(tmp_path: Path) -> None:
    port = free_port()
    sup = _supervised(port, tmp_path / "supervisor.log")
    try:

        async def up() -> bool:
            return await asyncio.to_thread(_healthz, port)

        await wait_until(up, bool, 20, "/healthz under the supervisor")
        first = (await health(port))["pid"]
        assert first != sup.pid
        assert psutil.Process(first).ppid() == sup.pid

        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()

        async def new_pid() -> int | None:
            if not await up():
                return None
            return int((await health(port))["pid"])

        second = await wait_until(new_pid, lambda pid: pid is not None and pid != first, 5, "a restarted server")
        assert time.monotonic() - killed < 5
        assert second is not None
        assert psutil.Process(second).ppid() == sup.pid
        assert not psutil.pid_exists(first)

        sup.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(sup.wait, 10) == 0
        assert not psutil.pid_exists(second)
        assert not _healthz(port)
    finally:
        stop(sup)


# -- 9. the I/O sandbox --------------------------------------------------------------------


def _evil_files() -> list[str]:
    found = []
    for root in {tempfile.gettempdir(), "/tmp"}:
        for folder, _, files in os.walk(root):
            found += [os.path.join(folder, f) for f in files if "evil" in f]
    return found


def _sandbox_state(pid: int) -> tuple[list[Path], list[Path], list[Path]]:
    """(evil files in /etc, the server's sandbox folders, everything inside them)."""
    sandboxes = list(Path(tempfile.gettempdir()).glob(f"bemcp-io-{pid}-*"))
    return list(Path("/etc").glob("evil*")), sandboxes, [p for box in sandboxes for p in box.rglob("*")]


async def test_io_write_stays_in_its_sandbox(stress: HttpServer) -> None:
    port = stress.port
    ok = result_of(await call(port, "io_write", {"kilobytes": 4, "files": 2}))
    assert ok.get("isError") is not True
    data = ok["structuredContent"]
    assert data["files"] == 2
    assert data["bytes_written"] == 8192
    assert data["bytes_verified"] == 8192

    evil_before = await asyncio.to_thread(_evil_files)
    refused = result_of(await call(port, "io_write", {"kilobytes": 1, "name": "../../etc/evil"}))
    assert refused["isError"] is True
    assert "1-64 letters, digits, '-' or '_'" in text_of(refused)
    assert await asyncio.to_thread(_evil_files) == evil_before
    in_etc, sandboxes, inside = await asyncio.to_thread(_sandbox_state, stress.proc.pid)
    assert in_etc == []
    assert len(sandboxes) == 1
    assert inside == []  # each call removes its own folder


# -- 10. stdio -----------------------------------------------------------------------------


def test_stdio_admission_refuses_past_the_limit() -> None:
    with StdioServer("--stress-tools", "--max-concurrency", "2", "--queue-size", "0") as srv:
        srv.initialize()
        for i in range(5):
            srv.send(
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "tools/call",
                    "params": {"name": "sleep", "arguments": {"seconds": 0.3}},
                }
            )
        replies = [srv.recv() for _ in range(5)]
    assert sorted(r["id"] for r in replies) == list(range(5))
    results = [r for r in replies if "result" in r]
    errors = [r["error"] for r in replies if "error" in r]
    assert len(results) == 2
    assert all(text_of(r["result"]) == "slept 0.3s" for r in results)
    assert len(errors) == 3
    for err in errors:
        assert err["code"] == OVERLOADED
        assert err["data"]["reason"] == "concurrency_limit"
        assert err["data"]["limit"] == 2
        assert err["data"]["in_flight"] == 2


# -- 11. the runtime's lifecycle -----------------------------------------------------------


def _bemcp_threads() -> dict[int, str]:
    return {t.ident or 0: t.name for t in threading.enumerate() if t.name.startswith("bemcp-")}


async def test_runtime_start_stop_cycles_leave_no_threads_or_tasks(tmp_path: Path) -> None:
    threads_before = _bemcp_threads()
    tasks_before = asyncio.all_tasks()
    rt = Runtime(RuntimeConfig(log_file=str(tmp_path / "runtime.jsonl")))
    for _ in range(2):
        rt.start()
        assert rt.running
        started = {k: v for k, v in _bemcp_threads().items() if k not in threads_before}
        assert sorted(started.values()) == ["bemcp-memory", "bemcp-tasklog", "bemcp-watchdog"]
        pool = rt._pool
        rt.start()  # a no-op: the same pool and the same threads
        assert rt._pool is pool
        assert {k: v for k, v in _bemcp_threads().items() if k not in threads_before} == started
        worker = await rt.run_sync(lambda: threading.current_thread().name, {})
        assert worker.startswith("bemcp-sync")
        assert rt.health()["loop_tasks"] == len(asyncio.all_tasks())
        rt.stop()
        assert not rt.running
        assert _bemcp_threads() == threads_before
        rt.stop()  # also a no-op
    assert asyncio.all_tasks() == tasks_before
