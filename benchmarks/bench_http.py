"""Streamable HTTP benchmark: the same no-op async tool on BE-MCP, the SDK, FastMCP and a raw ASGI echo ceiling.

Usage (from the repository root; needs `wrk`, e.g. `apt-get install -y wrk`):

    .venv/bin/python benchmarks/bench_http.py                 # 2 rounds x 8 s (+2 s warm-up), 16 and 64 connections
    .venv/bin/python benchmarks/bench_http.py --quick         # 1 round x 3 s (+1 s warm-up)
    .venv/bin/python benchmarks/bench_http.py --json /tmp/http.json --duration 10 --rounds 3 --conns 16,64,128
    .venv/bin/python benchmarks/bench_http.py --servers bemcp,sdk --revisions 2026-07-28

Servers (each a subprocess pinned to CPU 0 with `taskset -c 0`; wrk runs with one thread pinned to CPU 1):

- bemcp:   `python -m bemcp serve --transport http --app benchmarks.apps:bemcp_app`
- bemcp-bare: the same with `--protections off` (what the protections cost)
- bemcp-base: the same as bemcp (protections on), importing bemcp from the --base-src tree: the commit before a change
- sdk:     the SDK's `MCPServer` at its best: log level WARNING, json_response=True, uvicorn with uvloop + httptools,
           no access log. "vs SDK" ratios are against this one.
- sdk-sse: the same with the SDK's default json_response=False (SSE-capable, 1.6-2.3x slower), for reference
- fastmcp: FastMCP with json_response=True, same uvicorn settings; skipped when `fastmcp` is not installed
- echo:    a raw ASGI app that parses the body with orjson and answers a tools/call-shaped result (the ceiling)

Each call is a `tools/call noop` POST with a fresh JSON-RPC id. For 2026-07-28 it carries the `_meta` envelope and the
MCP-Protocol-Version, Mcp-Method and Mcp-Name headers (stateless). For 2025-11-25 a small Python step first runs
`initialize` + `notifications/initialized` to get an Mcp-Session-Id, and every wrk connection then shares that session.
Every response is checked in wrk's `response()` hook: a non-200 status, or a body that is not a proper result, counts
as an error. Runs alternate across servers (A B C D A B C D ...) so drift and noise fall evenly on all of them.

Columns: calls/s is the mean over rounds and `spread` its (max - min) / mean; `cpu us/call` is the server's CPU time per
call, which stays steadier than calls/s when other work shares the machine. On a shared machine each run first waits
(up to 30 s) for a lull, and is re-measured (--retries) when other processes took more than --max-other-cpu percent
of a core during it; the per-run lines on stderr show the CPU shares of server, wrk and everything else.

To benchmark a fixed revision while others edit the working tree:

    mkdir -p /tmp/snap && git archive HEAD src | tar -x -C /tmp/snap
    .venv/bin/python benchmarks/bench_http.py --bemcp-src /tmp/snap/src

To compare a change with the commit before it in the same run (bemcp imports the working tree or --bemcp-src,
bemcp-base the --base-src tree; the two alternate like every other pair of servers):

    mkdir -p /tmp/base && git archive HEAD~1 src | tar -x -C /tmp/base
    .venv/bin/python benchmarks/bench_http.py --servers bemcp,bemcp-base --base-src /tmp/base/src --rounds 4

After the table it prints "bemcp / bemcp-base" (and "protections on / off" when bemcp-bare ran): the ratios of runs
paired by round, calls/s and server CPU per call, with a verdict on the geometric mean of calls/s against the goal
(>= 97 % of the base; >= 95 % of protections off).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c
from benchmarks.apps import fastmcp_available

SERVERS = ("bemcp", "bemcp-bare", c.BASE, "sdk", "sdk-sse", "fastmcp", "echo")
DEFAULT_SERVERS = ",".join(s for s in SERVERS if s != c.BASE)  # bemcp-base only with --base-src
CEILING = "echo"
READY_TIMEOUT = 40.0


@dataclass(frozen=True)
class Target:
    server: str
    revision: str


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def server_cmd(name: str, port: int) -> list[str]:
    if name in c.BEMCP_SERVERS:  # bemcp-base: bemcp's command, run on the --base-src tree (see c.child_env)
        args = ["serve", "--transport", "http", "--app", "benchmarks.apps:bemcp_app", "--port", str(port)]
        # bemcp-bare: the protections (shedding, admission, memory sampler, watchdog, metrics, task log) off,
        # to measure what they cost beside the protected server in the same run.
        bare = ["--protections", "off"] if name == "bemcp-bare" else []
        return [c.PYTHON, "-m", "bemcp", *args, "--log-level", "warning", *bare]
    if name == "sdk-sse":  # the SDK's default, SSE-capable mode: slower, kept to show what the setting is worth
        return [c.PYTHON, "-m", "benchmarks.apps", "sdk", "--port", str(port)]
    # The SDK and FastMCP at their best: plain JSON responses.
    return [c.PYTHON, "-m", "benchmarks.apps", name, "--port", str(port), "--json-response"]


# -- talking to a server directly (readiness, sessions) -------------------------------------------------


def _post(port: int, body: bytes, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        conn.request("POST", "/mcp", body, {**base, **headers})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def modern_headers() -> dict[str, str]:
    return {"MCP-Protocol-Version": c.MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "noop"}


def wait_ready(server: Server) -> None:
    """Poll with a real 2026-07-28 call until it succeeds: the server is up and answers correctly."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}): {server.log.read_text()[-2000:]}")
        try:
            status, _, body = _post(server.port, c.call_body(1, c.MODERN), modern_headers(), timeout=2.0)
            if status == 200 and c.is_good_result(body):
                return
            last = f"{status} {body[:300]!r}"
        except OSError as e:
            last = repr(e)
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} not ready in {READY_TIMEOUT:.0f}s (last: {last})")


def open_session(port: int) -> str:
    """The 2025-11-25 handshake: initialize (which mints the session), then notifications/initialized."""
    status, headers, body = _post(port, c.initialize_body(0), {})
    sid = headers.get("mcp-session-id")
    if status != 200 or not sid:
        raise RuntimeError(f"initialize failed: {status} {body[:300]!r}")
    session = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": c.LEGACY}
    status, _, body = _post(port, c.INITIALIZED, session)
    if status not in (200, 202):
        raise RuntimeError(f"notifications/initialized failed: {status} {body[:300]!r}")
    status, _, body = _post(port, c.call_body(1, c.LEGACY), session)
    if status != 200 or not c.is_good_result(body):
        raise RuntimeError(f"first call in the session failed: {status} {body[:300]!r}")
    return sid


@contextlib.contextmanager
def running(name: str, cpu: int | None, logdir: Path) -> Iterator[Server]:
    port = c.free_port()
    log = logdir / f"{name}-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            c.pinned(server_cmd(name, port), cpu),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=c.child_env(name),
            cwd=c.ROOT,
        )
    server = Server(name, proc, port, log)
    try:
        wait_ready(server)
        yield server
    finally:
        c.stop(proc)


# -- wrk --------------------------------------------------------------------------------------------------

# Globals (not locals) so that done() can read each thread's counters with thread:get().
_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
@HEADERS@
local head = [==[@HEAD@]==]
local tail = [==[@TAIL@]==]
local threads = {}
counter = 0
non200 = 0
bad = 0
responses = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function request()
  -- A fresh id per call: servers that track in-flight ids per session must not see duplicates.
  counter = counter + 1
  return wrk.format(nil, nil, nil, head .. (tid * 1000000000 + counter) .. tail)
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 then
    non200 = non200 + 1
  elseif not (string.find(body, '"result":{', 1, true) and string.find(body, '"text":"ok"', 1, true))
      or string.find(body, '"isError":true', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local n200, nbad, nresp = 0, 0, 0
  for _, t in ipairs(threads) do
    n200 = n200 + t:get("non200")
    nbad = nbad + t:get("bad")
    nresp = nresp + t:get("responses")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"non200":%d,"bad_body":%d,"responses":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, n200, nbad, nresp, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_script(revision: str, session: str | None) -> str:
    head, tail = c.call_body_parts(revision)
    if revision == c.MODERN:
        headers = modern_headers()
    else:
        assert session is not None
        headers = {"MCP-Protocol-Version": c.LEGACY, "Mcp-Session-Id": session}
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    return _LUA.replace("@HEADERS@", lines).replace("@HEAD@", head.decode()).replace("@TAIL@", tail.decode())


def run_wrk(port: int, script: Path, conns: int, seconds: float, cpu: int | None) -> dict[str, Any]:
    # wrk takes whole seconds only.
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script)]
    cmd.append(f"http://127.0.0.1:{port}/mcp")
    out = subprocess.run(c.pinned(cmd, cpu), capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            parsed: dict[str, Any] = orjson.loads(line[6:])
            return parsed
    raise RuntimeError(f"wrk printed no result (exit {out.returncode}): {(out.stderr or out.stdout)[-500:].strip()}")


def measure(
    server: Server, target: Target, conns: int, rnd: int, args: argparse.Namespace, workdir: Path, others: list[int]
) -> c.Run:
    # A fresh session per measurement keeps one run's leftovers out of the next.
    session = open_session(server.port) if target.revision == c.LEGACY else None
    script = workdir / f"{target.server}-{target.revision}.lua"
    script.write_text(lua_script(target.revision, session))
    calm_wait = c.wait_for_calm(args.max_other_cpu)
    if args.warmup > 0:
        run_wrk(server.port, script, conns, args.warmup, args.client_cpu)
    # All servers share CPU 0: start only once none of them is still chewing on a backlog.
    c.wait_quiet([server.proc.pid, *others])
    server_cpu, client_cpu = c.cpu_seconds(server.proc.pid), c.children_cpu_seconds()
    busy = c.system_busy_seconds()
    res = run_wrk(server.port, script, conns, args.duration, args.client_cpu)
    wall = res["duration_us"] / 1e6
    server_cpu = c.cpu_seconds(server.proc.pid) - server_cpu
    client_cpu = c.children_cpu_seconds() - client_cpu
    # Near 100% server CPU with spare client CPU means the server, not wrk, set the pace; CPU used by anything
    # else on the machine (other than the server and wrk) is noise this run suffered.
    res["server_cpu_pct"] = round(100 * server_cpu / wall, 1)
    res["client_cpu_pct"] = round(100 * client_cpu / wall, 1)
    res["other_cpu_pct"] = round(max(0.0, 100 * (c.system_busy_seconds() - busy - server_cpu - client_cpu) / wall), 1)
    res["calm_wait_s"] = calm_wait
    if server.proc.poll() is not None:
        raise RuntimeError(f"{server.name} died during the run: {server.log.read_text()[-2000:]}")
    errors = res["non200"] + res["bad_body"] + res["connect"] + res["read"] + res["write"] + res["timeout"]
    p50, p99 = res["p50_us"] / 1000, res["p99_us"] / 1000
    per_call = 1e6 * server_cpu / res["requests"] if res["requests"] else 0.0
    return c.Run(target.server, target.revision, conns, rnd, res["requests"], wall, p50, p99, errors, per_call, res)


# -- orchestration -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="BE-MCP vs the MCP SDK vs FastMCP vs a raw echo over streamable HTTP.")
    p.add_argument("--duration", type=int, default=8, help="whole seconds per measured run (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="whole seconds of warm-up per run; 0: none (default 2)")
    p.add_argument("--conns", default="16,64", help="comma-separated connection counts (default 16,64)")
    p.add_argument(
        "--servers", default=DEFAULT_SERVERS, help=f"subset of {','.join(SERVERS)} (default {DEFAULT_SERVERS})"
    )
    c.add_run_args(p)
    return c.finish_run_args(p, p.parse_args(argv))


def targets_for(servers: list[str], revisions: list[str]) -> list[Target]:
    out = []
    for revision in revisions:
        for server in servers:
            # The echo ceiling has no sessions; it stands for every revision through its one figure.
            if server == CEILING and revision != c.MODERN:
                continue
            out.append(Target(server, revision))
    return out


def run_all(args: argparse.Namespace, servers: list[str], targets: list[Target], conns_list: list[int]) -> c.Outcome:
    """Measure target after target, round after round, with fresh server processes every round.

    A process's own luck (hash seed, memory layout) moves its throughput by a few percent for as long as it
    lives; new processes each round turn that into noise the rounds average out, instead of a bias that
    every round of one run repeats.
    """
    outcome = c.Outcome()
    with tempfile.TemporaryDirectory(prefix="bemcp-bench-") as tmp:
        workdir = Path(tmp)
        total, n = args.rounds * len(conns_list) * len(targets), 0
        for rnd in range(args.rounds):
            with contextlib.ExitStack() as stack:
                live = {name: stack.enter_context(running(name, args.server_cpu, workdir)) for name in servers}
                n = _round(args, rnd, live, workdir, targets, conns_list, outcome, n, total)
    return outcome


def _round(
    args: argparse.Namespace,
    rnd: int,
    live: dict[str, Server],
    workdir: Path,
    targets: list[Target],
    conns_list: list[int],
    outcome: c.Outcome,
    n: int,
    total: int,
) -> int:
    for conns in conns_list:
        # Alternate (every target once before any twice), in reverse order every other round so no
        # server always runs first: A B C, C B A, A B C ...
        for target in targets if rnd % 2 == 0 else targets[::-1]:
            n += 1
            label = f"[{n}/{total}] round {rnd + 1} {target.server:10s} {target.revision} c={conns}"
            server = live[target.server]
            others = [s.proc.pid for s in live.values() if s is not server]
            c.measure_into(
                outcome,
                label,
                functools.partial(measure, server, target, conns, rnd, args, workdir, others),
                args,
                (RuntimeError, subprocess.TimeoutExpired),
            )
    return n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (or make deps-debian)", file=sys.stderr)
        return 2
    servers = [s for s in args.servers.split(",") if s]
    if "fastmcp" in servers and not fastmcp_available():
        print("note: fastmcp is not installed; skipping it (pip install fastmcp)", file=sys.stderr)
        servers.remove("fastmcp")
    conns_list = [int(x) for x in args.conns.split(",")]
    targets = targets_for(servers, [r for r in args.revisions.split(",") if r])
    c.pin_self(args.client_cpu)
    outcome = run_all(args, servers, targets, conns_list)
    header = [
        f"Streamable HTTP, tools/call noop; {args.rounds} round(s) x {args.duration} s (+{args.warmup} s warm-up)",
        f"servers on CPU {args.server_cpu}, wrk -t1 on CPU {args.client_cpu}",
    ]
    settings = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "connections": conns_list,
        "server_cpu": args.server_cpu,
        "client_cpu": args.client_cpu,
    }
    ceiling = CEILING if CEILING in servers else None
    code = c.report("http", header, outcome, ceiling, "conns", {c.MODERN: 5.0}, settings, args.json)
    c.print_protection_cost(outcome.runs, "conns")
    c.print_base_ratio(outcome.runs, "conns")
    return code


if __name__ == "__main__":
    sys.exit(main())
