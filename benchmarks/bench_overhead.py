"""What the protections cost: BE-MCP with every protection on against `--protections off`, finely interleaved.

Usage (from the repository root; needs `wrk` for HTTP):

    .venv/bin/python benchmarks/bench_overhead.py                       # 4 trials x 12 pairs of 2 s runs
    .venv/bin/python benchmarks/bench_overhead.py --transport stdio     # the same over stdio (16 calls in flight)
    .venv/bin/python benchmarks/bench_overhead.py --trials 6 --pairs 20 --conns 64 --revision 2025-11-25

A protected call does well under a microsecond more Python work than an unprotected one, about 1-2% of the
~50 us of server CPU a call costs end to end, while this shared machine moves a 5-second throughput figure by
5-10% from one minute to the next. `bench_http.py` compares servers seconds apart; here the two servers take
turns every two seconds (on, off, off, on, ...), so a pair of runs shares the machine's state, and the median of
many pairs is the estimate. Each trial starts a fresh pair of processes: a process's own luck (hash seed,
memory layout) stays with it, so it is averaged over trials instead of repeated in every pair.

Both servers share CPU 0 (taskset) and the load generator (wrk, or this process over stdio) runs on CPU 1;
each run is a `tools/call noop` (the same request and checks as bench_http.py and bench_stdio.py). The goal:
protections on keep >= 95% of the protections-off throughput.

It also reads each server's CPU time around every run and prints the median CPU per call. (Its off/on ratio
tracks the throughput ratio within a fraction of a percent here: the server is CPU-bound and the VM's stolen
time lands in both, so it is no steadier.) For a figure that does not move between runs, `bench_instructions.py`
counts the instructions a call executes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c
from benchmarks import bench_stdio
from benchmarks.bench_http import Server, lua_script, open_session, run_wrk, running

GOAL = 0.95


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=4, help="fresh process pairs (default 4)")
    p.add_argument("--pairs", type=int, default=12, help="on/off run pairs per trial (default 12)")
    p.add_argument("--seconds", type=int, default=2, help="length of one run in whole seconds (default 2)")
    p.add_argument("--transport", default="http", choices=["http", "stdio"])
    p.add_argument("--conns", type=int, default=16, help="wrk connections, or stdio calls in flight (default 16)")
    p.add_argument("--revision", default=c.MODERN, choices=[c.MODERN, c.LEGACY])
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    c.add_source_arg(p)
    args = p.parse_args(argv)
    c.use_bemcp_src(args.bemcp_src)
    if not c.can_pin([args.server_cpu, args.client_cpu]):
        args.server_cpu = args.client_cpu = None
    return args


@dataclass
class Pair:
    """One on/off pair of runs: throughput and server CPU per call of each."""

    rate_on: float
    rate_off: float
    cpu_on: float  # server CPU seconds per call
    cpu_off: float

    @property
    def throughput(self) -> float:
        return self.rate_on / self.rate_off


def run(server: Server, script: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(calls/s, server CPU seconds per call) of one wrk run."""
    proc = psutil.Process(server.proc.pid)
    before = proc.cpu_times()
    r = run_wrk(server.port, script, args.conns, args.seconds, args.client_cpu)
    after = proc.cpu_times()
    if r["non200"] or r["bad_body"] or r["requests"] == 0:
        raise RuntimeError(f"bad answers: {r}")
    cpu = (after.user - before.user) + (after.system - before.system)
    return float(r["requests"]) / (float(r["duration_us"]) / 1e6), cpu / float(r["requests"])


def trial(n: int, args: argparse.Namespace, workdir: Path) -> list[Pair]:
    return (trial_stdio if args.transport == "stdio" else trial_http)(n, args, workdir)


def trial_http(n: int, args: argparse.Namespace, workdir: Path) -> list[Pair]:
    with contextlib.ExitStack() as stack:
        on = stack.enter_context(running("bemcp", args.server_cpu, workdir))
        off = stack.enter_context(running("bemcp-bare", args.server_cpu, workdir))
        scripts = {}
        for server in (on, off):
            session = None if args.revision == c.MODERN else open_session(server.port)
            script = workdir / f"{server.name}-{n}.lua"
            script.write_text(lua_script(args.revision, session))
            scripts[server.name] = script
            run_wrk(server.port, script, args.conns, 2, args.client_cpu)  # warm-up
        pairs = []
        for i in range(args.pairs):
            order = (on, off) if i % 2 == 0 else (off, on)
            got = {s.name: run(s, scripts[s.name], args) for s in order}
            (r_on, c_on), (r_off, c_off) = got["bemcp"], got["bemcp-bare"]
            pairs.append(Pair(r_on, r_off, c_on, c_off))
        return pairs


def run_stdio(server: bench_stdio.Stdio, args: argparse.Namespace) -> tuple[float, float]:
    proc = psutil.Process(server.proc.pid)
    before = proc.cpu_times()
    r = bench_stdio.drive(server, args.revision, args.conns, 0.0, args.seconds)
    after = proc.cpu_times()
    if r.errors or not r.calls:
        raise RuntimeError(f"{server.name}: {r.errors} bad answers of {r.calls}")
    cpu = (after.user - before.user) + (after.system - before.system)
    return r.calls / r.seconds, cpu / r.total_calls


def trial_stdio(n: int, args: argparse.Namespace, workdir: Path) -> list[Pair]:
    c.pin_self(args.client_cpu)  # this process is the load generator
    with contextlib.ExitStack() as stack:
        on = stack.enter_context(bench_stdio.running("bemcp", args.server_cpu, workdir))
        off = stack.enter_context(bench_stdio.running("bemcp-bare", args.server_cpu, workdir))
        for server in (on, off):
            bench_stdio.prepare(server, args.revision)
            bench_stdio.drive(server, args.revision, args.conns, 0.0, 2.0)  # warm-up
        pairs = []
        for i in range(args.pairs):
            order = (on, off) if i % 2 == 0 else (off, on)
            got = {s.name: run_stdio(s, args) for s in order}
            (r_on, c_on), (r_off, c_off) = got["bemcp"], got["bemcp-bare"]
            pairs.append(Pair(r_on, r_off, c_on, c_off))
        return pairs


def summary(values: list[float]) -> str:
    geo = math.exp(statistics.fmean(math.log(x) for x in values))
    spread = f"min {min(values):.1%}, max {max(values):.1%}"
    return f"median {statistics.median(values):.1%}, geometric mean {geo:.1%} ({spread})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    every: list[Pair] = []
    with tempfile.TemporaryDirectory(prefix="bemcp-overhead-") as tmp:
        for n in range(1, args.trials + 1):
            pairs = trial(n, args, Path(tmp))
            every += pairs
            print(f"trial {n}: throughput on / off {summary([p.throughput for p in pairs])}", flush=True)
    on_us = statistics.median(p.cpu_on for p in every) * 1e6
    off_us = statistics.median(p.cpu_off for p in every) * 1e6
    print(
        f"protections on / off, {args.transport}, {args.revision}, {args.conns} in flight, "
        f"{len(every)} pairs of {args.seconds} s runs, "
        f"code {c.git_revision()}:"
    )
    print(f"  throughput on / off:           {summary([p.throughput for p in every])}")
    print(f"  server CPU per call (median):  on {on_us:.1f} us, off {off_us:.1f} us")
    median = statistics.median(p.throughput for p in every)
    print(f"goal >= {GOAL:.0%} (median throughput ratio): {'meets' if median >= GOAL else 'MISSES'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
