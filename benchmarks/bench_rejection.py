"""How fast a refused call is answered: p50 and p99 of overload refusals (HTTP 503, JSON-RPC -32050).

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_rejection.py                  # 20,000 steady refusals, 5 storms
    .venv/bin/python benchmarks/bench_rejection.py --steady 50000 --storms 10 --json rejection.json

A refused call never waits for a slot, so its latency is the server reading it, admission saying no, and the
answer being written: the whole cost of shedding load. Two scenarios, each against a fresh `bemcp serve
--stress-tools`, the server pinned to CPU 0 and this client to CPU 1 when there are two:

- steady: one slot (`--max-concurrency 1 --queue-size 0`) held by a `hang` call for the whole run; CONNS keep-alive
  connections send `echo` calls back to back, and every one is refused at admission. Each is timed from its send
  to the end of its response: the refusal path at its own pace.
- storm: 500 simultaneous `sleep(0.3)` calls at `--max-concurrency 50 --queue-size 50`, the storm of the end-to-end
  test (tests/test_protection.py): 400 are refused while the server is still reading the rest, so the last
  refusal also waits for the parsing of everything ahead of it. Timed the same way, per storm.

Goals: steady p99 under 1 ms; storm p99 under 50 ms in the median storm. The client is a blocking selector loop on
one thread, about the cheapest Python has, so the figures are the server's. Before each run the machine is given
up to 30 s to calm down, and the table says how busy the other processes were during it: on a shared machine a
busy neighbour only ever adds to a latency.
"""

from __future__ import annotations

import argparse
import gc
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from benchmarks._common import (
    META,
    PYTHON,
    ROOT,
    can_pin,
    child_env,
    cpu_seconds,
    free_port,
    percentile,
    pin_self,
    pinned,
    stop,
    system_busy_seconds,
    wait_for_calm,
    write_json,
)

STEADY_GOAL_P99_MS = 1.0
STORM_GOAL_P99_MS = 50.0
STORM_CALLS, STORM_LIMIT, STORM_QUEUE = 500, 50, 50
OVERLOADED = b'"code":-32050'


def request(port: int, req_id: int, tool: str, args: dict[str, Any], *, close: bool = False) -> bytes:
    body = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": req_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": args, "_meta": META},
        }
    )
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n"
        f"Mcp-Method: tools/call\r\nMcp-Name: {tool}\r\nContent-Length: {len(body)}\r\n"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode() + body


@contextmanager
def server(*flags: str, cpu: int | None) -> Iterator[tuple[int, int]]:
    """A `bemcp serve --stress-tools` on a free port; yields (port, pid) once /healthz answers."""
    port = free_port()
    cmd = pinned([PYTHON, "-m", "bemcp", "serve", "--transport", "http", "--port", str(port), "--stress-tools"], cpu)
    proc = subprocess.Popen(
        [*cmd, *flags], env=child_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not become healthy in 30 s")
            time.sleep(0.05)
        yield port, proc.pid
    finally:
        stop(proc)


class _Reader:
    """Collects one HTTP response per socket; `done()` once its body is complete."""

    __slots__ = ("buf", "sent")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.buf = bytearray()

    def done(self) -> bool:
        head, sep, body = bytes(self.buf).partition(b"\r\n\r\n")
        if not sep:
            return False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return len(body) >= int(value)
        return False

    def refused(self) -> bool:
        return self.buf.startswith(b"HTTP/1.1 503") and OVERLOADED in self.buf


@dataclass
class Result:
    scenario: str
    latencies_ms: list[float]  # of the refused calls, sorted
    others_busy_cores: float  # other processes' CPU during the run, in cores

    def row(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "scenario": self.scenario,
            "refusals": len(lat),
            "p50_ms": round(percentile(lat, 50), 3),
            "p99_ms": round(percentile(lat, 99), 3),
            "max_ms": round(lat[-1], 3) if lat else 0.0,
            "others_busy_cores": round(self.others_busy_cores, 2),
        }


def _ours(pids: list[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def _others_busy(before: float, ours_before: float, wall: float, pids: list[int]) -> float:
    """Cores the rest of the machine kept busy since `before` (the whole machine's busy CPU seconds then)."""
    return max(0.0, (system_busy_seconds() - before) - (_ours(pids) - ours_before)) / wall


def steady(count: int, conns: int, cpu: int | None) -> Result:
    with server("--max-concurrency", "1", "--queue-size", "0", cpu=cpu) as (port, pid):
        holder = socket.create_connection(("127.0.0.1", port))
        holder.sendall(request(port, 0, "hang", {}))  # takes the one slot until the server stops
        time.sleep(0.3)
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
        sel = selectors.DefaultSelector()
        latencies: list[float] = []
        pending: dict[socket.socket, _Reader] = {}
        sent = 0
        pids = [pid, os.getpid()]
        busy, ours = system_busy_seconds(), _ours(pids)
        start = time.perf_counter()
        gc.disable()
        try:
            for s in socks:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
                sent += 1
                pending[s] = _Reader(time.perf_counter())
                s.sendall(request(port, sent, "echo", {"text": "x"}))
            while len(latencies) < count:
                ready = sel.select(5)
                if not ready:
                    raise SystemExit("no answer in 5 s")
                for key, _ in ready:
                    s = key.fileobj  # type: ignore[assignment]  # only sockets are registered
                    assert isinstance(s, socket.socket)
                    reader = pending[s]
                    data = s.recv(65536)
                    if not data:
                        raise SystemExit("the server closed a keep-alive connection after a refusal")
                    reader.buf += data
                    if not reader.done():
                        continue
                    now = time.perf_counter()
                    if not reader.refused():
                        raise SystemExit(f"not an overload refusal: {bytes(reader.buf[:300])!r}")
                    latencies.append((now - reader.sent) * 1000)
                    if sent < count:
                        sent += 1
                        pending[s] = _Reader(time.perf_counter())
                        s.sendall(request(port, sent, "echo", {"text": "x"}))
        finally:
            gc.enable()
            wall = time.perf_counter() - start
            sel.close()
            for s in [*socks, holder]:
                s.close()
        return Result("steady", sorted(latencies), _others_busy(busy, ours, wall, pids))


def storm(number: int, cpu: int | None) -> Result:
    flags = ("--max-concurrency", str(STORM_LIMIT), "--queue-size", str(STORM_QUEUE), "--queue-timeout-ms", "10000")
    with server(*flags, cpu=cpu) as (port, pid):
        requests = [request(port, i, "sleep", {"seconds": 0.3}, close=True) for i in range(STORM_CALLS)]
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in requests]
        time.sleep(0.2)  # every connection accepted before the clock starts
        sel = selectors.DefaultSelector()
        pending: dict[socket.socket, _Reader] = {}
        refused: list[float] = []
        pids = [pid, os.getpid()]
        busy, ours = system_busy_seconds(), _ours(pids)
        start = time.perf_counter()
        gc.disable()
        try:
            for s, raw in zip(socks, requests, strict=True):
                s.setblocking(False)
                pending[s] = _Reader(time.perf_counter())
                s.sendall(raw)
                sel.register(s, selectors.EVENT_READ)
            deadline = time.monotonic() + 30
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(0.5):
                    s = key.fileobj  # type: ignore[assignment]  # only sockets are registered
                    assert isinstance(s, socket.socket)
                    reader = pending[s]
                    data = s.recv(65536)
                    reader.buf += data
                    if data and not reader.done():
                        continue
                    now = time.perf_counter()
                    if reader.refused():
                        refused.append((now - reader.sent) * 1000)
                    sel.unregister(s)
                    del pending[s]
        finally:
            gc.enable()
            wall = time.perf_counter() - start
            sel.close()
            for s in socks:
                s.close()
        if pending or len(refused) < STORM_CALLS - STORM_LIMIT - STORM_QUEUE:
            raise SystemExit(f"storm {number}: {len(pending)} unanswered, {len(refused)} refused")
        return Result(f"storm {number}", sorted(refused), _others_busy(busy, ours, wall, pids))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steady", type=int, default=20_000, help="steady refusals to time (default 20,000)")
    p.add_argument("--conns", type=int, default=4, help="keep-alive connections of the steady scenario (default 4)")
    p.add_argument("--storms", type=int, default=5, help="storms to time, each on a fresh server (default 5)")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = p.parse_args()
    server_cpu, client_cpu = (0, 1) if can_pin([0, 1]) else (None, None)
    pin_self(client_cpu)
    results: list[Result] = []
    wait_for_calm(25.0)
    results.append(steady(args.steady, args.conns, server_cpu))
    for n in range(1, args.storms + 1):
        wait_for_calm(25.0)
        results.append(storm(n, server_cpu))
    rows = [r.row() for r in results]
    print(f"{'scenario':<10} {'refusals':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'others busy':>12}")
    for row in rows:
        print(
            f"{row['scenario']:<10} {row['refusals']:>9,} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} "
            f"{row['max_ms']:>8.3f} {row['others_busy_cores']:>9.2f} cores"
        )
    steady_p99 = rows[0]["p99_ms"]
    storm_p99 = statistics.median(r["p99_ms"] for r in rows[1:]) if rows[1:] else None
    print(
        f"\nsteady p99 {steady_p99:.3f} ms: goal < {STEADY_GOAL_P99_MS:g} ms "
        f"{'met' if steady_p99 < STEADY_GOAL_P99_MS else 'MISSED'}"
    )
    if storm_p99 is not None:
        print(
            f"storm p99 {storm_p99:.1f} ms (median of {len(rows) - 1} storms): goal < {STORM_GOAL_P99_MS:g} ms "
            f"{'met' if storm_p99 < STORM_GOAL_P99_MS else 'MISSED'}"
        )
    pinning = f"server on CPU {server_cpu}, client on CPU {client_cpu}" if server_cpu is not None else "not pinned"
    print(f"({pinning})")
    if args.json:
        write_json(args.json, {"rows": rows, "steady_p99_ms": steady_p99, "storm_median_p99_ms": storm_p99})


if __name__ == "__main__":
    main()
