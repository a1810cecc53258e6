"""stdio benchmark: the same no-op async tool on BE-MCP and the SDK (plus a raw stdio echo ceiling).

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_stdio.py                  # 2 rounds x 8 s (+2 s warm-up), windows 16 and 64
    .venv/bin/python benchmarks/bench_stdio.py --quick          # 1 round x 3 s (+1 s warm-up)
    .venv/bin/python benchmarks/bench_stdio.py --json /tmp/stdio.json --windows 1,16,64 --rounds 3
    .venv/bin/python benchmarks/bench_stdio.py --servers bemcp,sdk,fastmcp

Each run starts a fresh server subprocess pinned to CPU 0 (`taskset -c 0`):

- bemcp: `python -m bemcp serve --transport stdio --app benchmarks.apps:bemcp_app`
- bemcp-bare (opt-in with --servers): the same with `--protections off`
- bemcp-base (opt-in with --servers, needs --base-src DIR): the same as bemcp, importing bemcp from DIR
- sdk:   the SDK's `MCPServer.run()` (stdio), log level WARNING
- echo:  a uvloop line reader that parses each request with orjson and writes a tools/call-shaped result (the ceiling)
- fastmcp (opt-in with --servers): FastMCP's stdio transport

This process is the load generator, pinned to CPU 1. It keeps a window of N `tools/call noop` requests in flight on
the server's stdin (newline-delimited JSON-RPC, one fresh id each) and tops the window up as responses arrive on
stdout, using non-blocking pipes and poll() so its own cost per call stays at a few microseconds. For 2025-11-25 it
first runs `initialize` and `notifications/initialized`; for 2026-07-28 every request carries the `_meta` envelope.
A response that is not a proper result for an id we sent counts as an error. Runs alternate across servers.

Columns and noise handling are as in bench_http.py (`cpu us/call` is the server's CPU time per call; runs wait for a
lull and are re-measured when other processes disturbed them); --bemcp-src DIR benchmarks a snapshot of src/, and
`--servers bemcp,bemcp-base --base-src DIR` compares it in the same run with an earlier commit's tree, printing the
"bemcp / bemcp-base" ratios paired by round (and "protections on / off" when bemcp-bare ran).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c
from benchmarks.apps import fastmcp_available

SERVERS = ("bemcp", "bemcp-bare", c.BASE, "sdk", "echo", "fastmcp")
DEFAULT_SERVERS = "bemcp,sdk,echo"
CEILING = "echo"
STALL_TIMEOUT = 15.0  # seconds without a single response before a run is declared stuck


def server_cmd(name: str) -> list[str]:
    if name in c.BEMCP_SERVERS:  # bemcp-base: bemcp's command, run on the --base-src tree (see c.child_env)
        args = ["serve", "--transport", "stdio", "--app", "benchmarks.apps:bemcp_app", "--log-level", "warning"]
        bare = ["--protections", "off"] if name == "bemcp-bare" else []  # what the protections cost
        return [c.PYTHON, "-m", "bemcp", *args, *bare]
    return [c.PYTHON, "-m", "benchmarks.apps", name, "--stdio"]


class Pipe:
    """Non-blocking newline-delimited I/O on a server's stdin and stdout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self._in = proc.stdin.fileno()
        self._out = proc.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._pending = bytearray()  # written by us, not yet accepted by the pipe
        self._partial = b""  # the start of a line whose newline has not arrived
        self._poll = select.poll()
        self._poll.register(self._out, select.POLLIN)

    def write(self, data: bytes) -> None:
        self._pending += data
        self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                n = os.write(self._in, self._pending)
            except BlockingIOError:
                return  # the pipe is full; the server will drain it while we read
            del self._pending[:n]

    def read_lines(self, timeout: float) -> list[bytes]:
        """Lines available within `timeout` seconds (possibly none); raises EOFError when the server closes."""
        if self._pending:
            self._flush()
        if not self._poll.poll(timeout * 1000):
            return []
        try:
            chunk = os.read(self._out, 1 << 20)
        except BlockingIOError:
            return []
        if not chunk:
            raise EOFError("the server closed stdout")
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        return [line for line in lines if line]


@dataclass
class Stdio:
    name: str
    proc: subprocess.Popen[bytes]
    pipe: Pipe
    log: Path


@contextlib.contextmanager
def running(name: str, cpu: int | None, logdir: Path) -> Iterator[Stdio]:
    log = logdir / f"{name}-stdio.log"
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            c.pinned(server_cmd(name), cpu),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=c.child_env(name),
            cwd=c.ROOT,
        )
    try:
        yield Stdio(name, proc, Pipe(proc), log)
    finally:
        _close(proc)


def _close(proc: subprocess.Popen[bytes]) -> None:
    # EOF on stdin is the polite way to end a stdio server; signals are the fallback.
    stdin: IO[bytes] | None = proc.stdin
    with contextlib.suppress(OSError):
        if stdin is not None:
            stdin.close()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        c.stop(proc)
    if proc.stdout is not None:
        proc.stdout.close()


def await_reply(server: Stdio, req_id: int | str, timeout: float = 40.0) -> dict[str, Any]:
    """Read until the response to `req_id` arrives; anything else before it is a notification and is skipped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}): {server.log.read_text()[-2000:]}")
        for line in server.pipe.read_lines(0.1):
            msg = orjson.loads(line)
            if isinstance(msg, dict) and msg.get("id") == req_id:
                return msg
    raise RuntimeError(f"{server.name}: no response to id {req_id!r} in {timeout:.0f}s")


def prepare(server: Stdio, revision: str) -> None:
    """Handshake if the revision needs one, then one checked call so imports and first-call costs are paid."""
    if revision == c.LEGACY:
        server.pipe.write(c.initialize_body(0) + b"\n")
        reply = await_reply(server, 0)
        if "result" not in reply:
            raise RuntimeError(f"{server.name}: initialize failed: {reply}")
        server.pipe.write(c.INITIALIZED + b"\n")
    server.pipe.write(c.call_body("ready", revision) + b"\n")
    reply = await_reply(server, "ready")
    if not c.is_good_result(orjson.dumps(reply)):
        raise RuntimeError(f"{server.name}: the first call failed: {reply}")


@dataclass
class LoadResult:
    calls: int
    seconds: float
    latencies_ns: list[int]
    errors: int
    total_calls: int  # warm-up included, to pair with CPU time measured over the whole run


def drive(server: Stdio, revision: str, window: int, warmup: float, duration: float) -> LoadResult:
    """Keep `window` calls in flight; count and time the ones that complete inside the measured span."""
    head, tail = c.call_body_parts(revision)
    sent_at: dict[int, int] = {}
    next_id = 1
    pipe = server.pipe

    def send(n: int) -> None:
        nonlocal next_id
        now = time.perf_counter_ns()
        first = next_id
        next_id += n
        # One write per batch: the server sees a burst, as from a busy client, and we pay one syscall.
        pipe.write(b"".join(head + b"%d" % i + tail + b"\n" for i in range(first, next_id)))
        for i in range(first, next_id):
            sent_at[i] = now

    start = time.perf_counter_ns()
    measure_from = start + int(warmup * 1e9)
    stop_at = measure_from + int(duration * 1e9)
    latencies: list[int] = []
    errors = total = 0
    last_progress = time.monotonic()
    send(window)
    while (now := time.perf_counter_ns()) < stop_at:
        lines = pipe.read_lines(0.1)
        if not lines:
            if time.monotonic() - last_progress > STALL_TIMEOUT:
                raise RuntimeError(f"{server.name}: no response for {STALL_TIMEOUT:.0f}s with {len(sent_at)} in flight")
            continue
        last_progress = time.monotonic()
        now = time.perf_counter_ns()
        done = 0
        for line in lines:
            began = sent_at.pop(_reply_id(line), None)
            if began is None:
                continue  # a notification, or a late reply to the handshake: not a call
            done += 1
            total += 1
            if now >= measure_from:
                latencies.append(now - began)
                if not c.is_good_result(line):
                    errors += 1
        send(done)
    total += _drain(server, sent_at)
    return LoadResult(len(latencies), (now - measure_from) / 1e9, latencies, errors, total)


def _drain(server: Stdio, sent_at: dict[int, int], timeout: float = 10.0) -> int:
    """Collect what is still in flight so the server ends on an empty queue; returns how many came back."""
    deadline = time.monotonic() + timeout
    got = 0
    while sent_at and time.monotonic() < deadline:
        for line in server.pipe.read_lines(0.1):
            got += sent_at.pop(_reply_id(line), None) is not None
    return got


def _reply_id(line: bytes) -> int:
    """The integer id a line answers; -1 for anything else (a notification, the handshake's string ids)."""
    msg = orjson.loads(line)
    req_id = msg.get("id") if isinstance(msg, dict) else None
    return req_id if type(req_id) is int else -1


def self_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def measure(name: str, revision: str, window: int, rnd: int, args: argparse.Namespace, logdir: Path) -> c.Run:
    with running(name, args.server_cpu, logdir) as server:
        prepare(server, revision)
        calm_wait = c.wait_for_calm(args.max_other_cpu)
        server_cpu, client_cpu = c.cpu_seconds(server.proc.pid), self_cpu_seconds()
        busy = c.system_busy_seconds()
        res = drive(server, revision, window, args.warmup, args.duration)
        # Whole-run CPU shares (warm-up included): ~100% server with spare client means the server set the pace.
        wall = args.warmup + res.seconds
        server_cpu = c.cpu_seconds(server.proc.pid) - server_cpu
        client_cpu = self_cpu_seconds() - client_cpu
        other = c.system_busy_seconds() - busy - server_cpu - client_cpu
    lat = sorted(res.latencies_ns)
    detail = {
        "p90_ms": c.percentile(lat, 90) / 1e6,
        "max_ms": (lat[-1] / 1e6) if lat else 0.0,
        "server_cpu_pct": round(100 * server_cpu / wall, 1),
        "client_cpu_pct": round(100 * client_cpu / wall, 1),
        "other_cpu_pct": round(max(0.0, 100 * other / wall), 1),
        "calm_wait_s": calm_wait,
    }
    p50, p99 = c.percentile(lat, 50) / 1e6, c.percentile(lat, 99) / 1e6
    per_call = 1e6 * server_cpu / res.total_calls if res.total_calls else 0.0
    return c.Run(name, revision, window, rnd, res.calls, res.seconds, p50, p99, res.errors, per_call, detail)


# -- orchestration -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="BE-MCP vs the MCP SDK over stdio, with N requests in flight.")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measured run (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each run (default 2)")
    p.add_argument("--windows", default="16,64", help="comma-separated requests in flight (default 16,64)")
    p.add_argument("--servers", default=DEFAULT_SERVERS, help=f"subset of {','.join(SERVERS)}")
    c.add_run_args(p)
    return c.finish_run_args(p, p.parse_args(argv))


def run_all(args: argparse.Namespace, targets: list[tuple[str, str]], windows: list[int]) -> c.Outcome:
    """Measure target after target, round after round, each on a fresh server process."""
    outcome = c.Outcome()
    total, n = args.rounds * len(windows) * len(targets), 0
    with tempfile.TemporaryDirectory(prefix="bemcp-bench-stdio-") as tmp:
        for rnd in range(args.rounds):
            for window in windows:
                for name, revision in targets:  # alternate: every target once before any target twice
                    n += 1
                    label = f"[{n}/{total}] round {rnd + 1} {name:10s} {revision} window={window}"
                    c.measure_into(
                        outcome,
                        label,
                        functools.partial(measure, name, revision, window, rnd, args, Path(tmp)),
                        args,
                        (RuntimeError, EOFError, OSError),
                    )
    return outcome


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    servers = [s for s in args.servers.split(",") if s]
    if "fastmcp" in servers and not fastmcp_available():
        print("note: fastmcp is not installed; skipping it (pip install fastmcp)", file=sys.stderr)
        servers.remove("fastmcp")
    revisions = [r for r in args.revisions.split(",") if r]
    windows = [int(x) for x in args.windows.split(",")]
    # The echo ceiling ignores the revision; one figure per window stands for both.
    targets = [(s, r) for r in revisions for s in servers if s != CEILING or r == c.MODERN]
    c.pin_self(args.client_cpu)
    outcome = run_all(args, targets, windows)
    header = [
        f"stdio, tools/call noop; {args.rounds} round(s) x {args.duration:g} s (+{args.warmup:g} s warm-up)",
        f"servers on CPU {args.server_cpu}, load generator on CPU {args.client_cpu}",
    ]
    settings = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "windows": windows,
        "server_cpu": args.server_cpu,
        "client_cpu": args.client_cpu,
    }
    ceiling = CEILING if CEILING in servers else None
    code = c.report("stdio", header, outcome, ceiling, "window", {None: 10.0}, settings, args.json)
    c.print_protection_cost(outcome.runs, "window")
    c.print_base_ratio(outcome.runs, "window")
    return code


if __name__ == "__main__":
    sys.exit(main())
