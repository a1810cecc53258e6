"""Shared plumbing for the benchmarks: processes, CPU pinning, request bodies, statistics and the table."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
REVISIONS = (MODERN, LEGACY)

META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "bemcp-bench", "version": "0.1.0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def call_body(req_id: int | str, revision: str) -> bytes:
    """One `tools/call noop` request; 2026-07-28 carries the per-request `_meta` envelope."""
    params: dict[str, Any] = {"name": "noop", "arguments": {}}
    if revision == MODERN:
        params["_meta"] = META
    return orjson.dumps({"jsonrpc": "2.0", "id": req_id, "method": "tools/call", "params": params})


def call_body_parts(revision: str) -> tuple[bytes, bytes]:
    """The request body split around its id, so a load generator can splice in a fresh id cheaply."""
    marker = "__ID__"
    body = call_body(marker, revision)
    head, tail = body.split(b'"' + marker.encode() + b'"')
    return head, tail


def initialize_body(req_id: int) -> bytes:
    params = {
        "protocolVersion": LEGACY,
        "capabilities": {},
        "clientInfo": {"name": "bemcp-bench", "version": "0.1.0"},
    }
    return orjson.dumps({"jsonrpc": "2.0", "id": req_id, "method": "initialize", "params": params})


INITIALIZED = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})


def is_good_result(body: bytes) -> bool:
    """A proper tools/call result: a JSON-RPC result object whose content says "ok", not a tool error."""
    return b'"result":{' in body and b'"text":"ok"' in body and b'"isError":true' not in body


# -- processes and CPUs --------------------------------------------------------------------------------


# Set by --bemcp-src and --base-src: the source trees whose `bemcp` the servers import instead of the installed one.
_bemcp_src: list[Path] = []
_base_src: list[Path] = []
# `bemcp.__version__` of each tree given, as a server's environment imports it (filled by verify_sources).
_tree_versions: dict[Path, str] = {}

BASE = "bemcp-base"  # the server that imports bemcp from --base-src: the earlier commit of a same-run comparison
BEMCP_SERVERS = ("bemcp", "bemcp-bare", BASE)  # the servers that run `python -m bemcp serve`


def _tree(path: str, flag: str) -> Path:
    src = Path(path).resolve()
    if not (src / "bemcp" / "__init__.py").is_file():
        raise ValueError(f"{flag} {path}: no bemcp package there (DIR is the src/ folder, holding bemcp/)")
    return src


def use_bemcp_src(path: str | None) -> None:
    """Benchmark the `bemcp` package under `path` (e.g. a `git archive` snapshot) instead of the working tree."""
    if path:
        try:
            _bemcp_src[:] = [_tree(path, "--bemcp-src")]
        except ValueError as e:
            raise SystemExit(str(e)) from None


def source_for(server: str | None) -> Path | None:
    """The tree `server` imports bemcp from: bemcp-base the --base-src tree, every other server the --bemcp-src
    tree; None means the installed (editable: working tree) package."""
    if server == BASE:
        if not _base_src:
            raise ValueError(f"{BASE} needs --base-src DIR")
        return _base_src[0]
    return _bemcp_src[0] if _bemcp_src else None


def child_env(server: str | None = None) -> dict[str, str]:
    """The environment of a server process; `server` picks which bemcp tree it imports (see source_for)."""
    env = dict(os.environ)
    # `benchmarks.apps` must be importable by `bemcp serve --app` and `python -m benchmarks.apps`; the chosen tree
    # goes first so that it shadows the editable install.
    src = source_for(server)
    parts = [str(src) if src else "", str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def verify_sources(servers: Sequence[str]) -> None:
    """Ask each given tree's server environment which bemcp it imports, and stop if it is not that tree (e.g. an
    install that shadows PYTHONPATH): a comparison of a tree with itself would look like a perfect result."""
    probe = "import bemcp, sys; sys.stdout.write(bemcp.__file__ + '\\n' + getattr(bemcp, '__version__', '-'))"
    for server in dict.fromkeys(s for s in servers if s in BEMCP_SERVERS):
        src = source_for(server)
        if src is None or src in _tree_versions:
            continue
        out = subprocess.run(
            [PYTHON, "-c", probe], env=child_env(server), cwd=ROOT, capture_output=True, text=True, check=False
        )
        lines = out.stdout.splitlines()
        if out.returncode != 0 or len(lines) != 2 or not Path(lines[0]).resolve().is_relative_to(src):
            got = lines[0] if out.returncode == 0 and lines else out.stderr.strip()[-500:]
            raise SystemExit(f"{server}: expected to import bemcp from {src}, got {got}")
        _tree_versions[src] = lines[1]


def add_source_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bemcp-src",
        metavar="DIR",
        help="benchmark the bemcp package in DIR (e.g. from `git archive HEAD src | tar -x -C /tmp/snap`, "
        "DIR=/tmp/snap/src) instead of the working tree",
    )


def add_base_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--base-src",
        metavar="DIR",
        help=f"the bemcp package the {BASE} server imports, to compare bemcp with an earlier commit in the same run "
        f"(needs {BASE} in --servers); make it with `mkdir -p /tmp/base && git archive COMMIT src | tar -x -C "
        f"/tmp/base`, DIR=/tmp/base/src",
    )


def can_pin(cpus: Sequence[int]) -> bool:
    have = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    return shutil.which("taskset") is not None and all(c in have for c in cpus)


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """Prefix `cmd` with `taskset -c CPU` so the server and the load generator never share a core."""
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


def pin_self(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL: a benchmark must never leave a server behind."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it is gone)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def children_cpu_seconds() -> float:
    """CPU time of every child this process has reaped, e.g. each finished wrk run."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def system_busy_seconds() -> float:
    """CPU seconds every process on the machine has used so far (all cores)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


def wait_for_calm(max_busy_pct: float, timeout: float = 30.0, window: float = 0.5) -> float:
    """Wait until the whole machine is nearly idle (under `max_busy_pct` of a core), at most `timeout` seconds.

    Call it while our own servers are idle: on a shared machine other people's test runs come in bursts, and a
    run started in a lull is worth more than one re-measured afterwards. Returns the seconds waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = system_busy_seconds()
        time.sleep(window)
        if 100 * (system_busy_seconds() - before) / window <= max_busy_pct:
            break
    return round(time.monotonic() - start, 2)


def wait_quiet(pids: Sequence[int], timeout: float = 15.0, window: float = 0.25) -> float:
    """Wait until the given servers are idle, so one server's backlog never eats into the next one's run.

    Returns the seconds waited. Idle means under 4% of a core, all together, over `window`.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(window)
        if sum(cpu_seconds(p) for p in pids) - before < 0.04 * window:
            break
    return time.monotonic() - start


def package_versions(echo: str) -> dict[str, str]:
    """Each server's package version, for the table (`echo` labels the ceiling)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"echo": echo}
    # A given tree's own version; the installed distribution's otherwise.
    for server, tree in (("bemcp", _bemcp_src), ("bemcp-bare", _bemcp_src), (BASE, _base_src)):
        if tree and tree[0] in _tree_versions:
            out[server] = _tree_versions[tree[0]]
    for server, dist in (
        ("bemcp", "bemcp"),
        ("bemcp-bare", "bemcp"),
        ("sdk", "mcp"),
        ("sdk-sse", "mcp"),
        ("fastmcp", "fastmcp"),
    ):
        with contextlib.suppress(PackageNotFoundError):
            out.setdefault(server, version(dist))
    return out


def git_revision() -> str:
    """What BE-MCP code ran: the --bemcp-src tree, or HEAD (+dirty when src/ has uncommitted changes)."""
    if _bemcp_src:
        return str(_bemcp_src[0])
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return "unknown"


def base_revision() -> str | None:
    """What the bemcp-base server ran: the --base-src tree (None without one)."""
    return f"{_base_src[0]} (--base-src)" if _base_src else None


# -- results -------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured run of one target (server x revision) at one concurrency."""

    server: str
    revision: str
    conns: int
    round: int
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_call: float  # server CPU time per call: steadier than calls/s when the machine is shared
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Row:
    """All rounds of one (server, revision, concurrency), summarised."""

    server: str
    revision: str
    conns: int
    rate: float
    spread: float  # (max - min) / mean over rounds: how noisy this figure is
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_call: float
    rates: list[float]
    vs_sdk: float | None = None
    vs_ceiling: float | None = None


def summarise(runs: list[Run], ceiling: str | None) -> list[Row]:
    """Average the rounds, then add ratios against the SDK and against the ceiling server (if any)."""
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.server, run.revision, run.conns), []).append(run)
    rows = []
    for (server, revision, conns), group in groups.items():
        rates = [r.rate for r in group]
        mean = statistics.fmean(rates)
        rows.append(
            Row(
                server,
                revision,
                conns,
                mean,
                (max(rates) - min(rates)) / mean if mean else 0.0,
                statistics.fmean(r.p50_ms for r in group),
                statistics.fmean(r.p99_ms for r in group),
                sum(r.errors for r in group),
                statistics.fmean(r.cpu_us_per_call for r in group),
                rates,
            )
        )
    by_key = {(r.server, r.revision, r.conns): r for r in rows}
    for row in rows:
        sdk = by_key.get(("sdk", row.revision, row.conns))
        if sdk is not None and sdk.rate > 0:
            row.vs_sdk = row.rate / sdk.rate
        # The ceiling is revision-agnostic (it only echoes), so compare every revision with its one figure.
        top = by_key.get((ceiling, MODERN, row.conns)) if ceiling else None
        if top is not None and top.rate > 0:
            row.vs_ceiling = row.rate / top.rate
    return rows


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_table(rows: list[Row], revision_of: dict[str, str], conns_label: str) -> str:
    """A plain-text table; `revision_of` maps a server name to its code revision label."""
    head = ["server", "version", "protocol", conns_label, "calls/s", "spread", "p50 ms", "p99 ms", "errors"]
    head += ["cpu us/call", "vs SDK", "vs ceiling"]
    lines = [head]
    for r in sorted(rows, key=lambda r: (r.revision != MODERN, r.conns, -r.rate)):
        lines.append(
            [
                r.server,
                revision_of.get(r.server, "-"),
                r.revision,
                str(r.conns),
                f"{r.rate:,.0f}",
                f"{r.spread * 100:.0f}%",
                f"{r.p50_ms:.2f}",
                f"{r.p99_ms:.2f}",
                str(r.errors),
                f"{r.cpu_us_per_call:.1f}",
                _ratio(r.vs_sdk),
                _ratio(r.vs_ceiling),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        # Text columns left-aligned, numbers right-aligned.
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in pairs]
        out.append("  ".join(cells))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def least_disturbed(measure: Callable[[], Run], max_other_cpu: float, retries: int) -> Run:
    """Measure, and measure again (up to `retries` times) while other processes took over `max_other_cpu` percent
    of a core during the run; keep the least disturbed run. On a shared machine this filters out the runs that
    overlapped someone else's test suite instead of averaging them in."""
    best = measure()
    for attempt in range(retries):
        if best.detail.get("other_cpu_pct", 0.0) <= max_other_cpu:
            break
        again = measure()
        again.detail["attempt"] = attempt + 2
        if again.detail.get("other_cpu_pct", 0.0) < best.detail.get("other_cpu_pct", 0.0):
            best = again
    return best


def measure_into(
    outcome: Outcome,
    label: str,
    measure: Callable[[], Run],
    args: argparse.Namespace,
    errors: tuple[type[BaseException], ...],
) -> None:
    """One measurement (re-taken while disturbed), kept in `outcome`; an error in `errors` becomes a failure line."""
    try:
        run = least_disturbed(measure, args.max_other_cpu, args.retries)
    except errors as e:
        outcome.failures.append(f"{label}: {e}")
        print(f"{label}: FAILED {e}", file=sys.stderr)
        return
    outcome.runs.append(run)
    progress(label, run)


def progress(label: str, run: Run) -> None:
    """One line per run on stderr, with the CPU shares that tell whether the figure can be trusted."""
    d = run.detail
    print(
        f"{label}: {run.rate:9,.0f} calls/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  errors {run.errors}"
        f"  cpu: server {d['server_cpu_pct']:.0f}% client {d['client_cpu_pct']:.0f}% other {d['other_cpu_pct']:.0f}%"
        f"  attempt {d.get('attempt', 1)}, waited {d.get('calm_wait_s', 0):g} s for a lull",
        file=sys.stderr,
    )


def add_noise_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-other-cpu",
        type=float,
        default=25.0,
        help="re-measure a run when other processes used more than this %% of a core during it (default 25)",
    )
    p.add_argument("--retries", type=int, default=2, help="re-measurements allowed per run (default 2)")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def write_json(path: str, payload: dict[str, Any]) -> None:
    Path(path).write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))


def rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [
        {
            "server": r.server,
            "revision": r.revision,
            "concurrency": r.conns,
            "calls_per_s": round(r.rate, 1),
            "calls_per_s_by_round": [round(x, 1) for x in r.rates],
            "spread": round(r.spread, 4),
            "p50_ms": round(r.p50_ms, 3),
            "p99_ms": round(r.p99_ms, 3),
            "errors": r.errors,
            "server_cpu_us_per_call": round(r.cpu_us_per_call, 2),
            "vs_sdk": None if r.vs_sdk is None else round(r.vs_sdk, 3),
            "vs_ceiling": None if r.vs_ceiling is None else round(r.vs_ceiling, 3),
        }
        for r in rows
    ]


@dataclass
class Outcome:
    """Everything one benchmark invocation measured."""

    runs: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def report(
    name: str,
    header: list[str],
    outcome: Outcome,
    ceiling: str | None,
    conns_label: str,
    goals: dict[str | None, float],
    settings: dict[str, Any],
    json_path: str | None,
) -> int:
    """Print the table and the goal checks, write the JSON, and return the exit status.

    `goals` maps a protocol revision (None: every revision) to the calls/s multiple of the SDK BE-MCP aims for.
    """
    rows = summarise(outcome.runs, ceiling)
    versions = package_versions(echo="uvicorn" if name == "http" else "-")
    code_rev = git_revision()
    base_rev = base_revision()
    print()
    print("\n".join([*header, f"BE-MCP code {code_rev}"]))
    if base_rev:
        print(f"{BASE} code {base_rev}")
    print(format_table(rows, versions, conns_label))
    for r in rows:
        goal = goals.get(r.revision, goals.get(None))
        if r.server == "bemcp" and goal is not None and r.vs_sdk is not None:
            verdict = "meets" if r.vs_sdk >= goal else "MISSES"
            print(f"goal >={goal:g}x SDK ({r.revision}, {conns_label} {r.conns}): {r.vs_sdk:.2f}x - {verdict}")
    if outcome.failures:
        print("\nFAILURES:\n" + "\n".join(outcome.failures))
    if json_path:
        payload = {
            "benchmark": name,
            "code_revision": code_rev,
            "base_code_revision": base_rev,
            "versions": versions,
            "settings": settings,
            "results": rows_json(rows),
            "runs": [vars(r) for r in outcome.runs],
            "failures": outcome.failures,
        }
        write_json(json_path, payload)
    return 1 if outcome.failures or any(r.errors for r in rows) else 0


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The options both benchmarks share: rounds, revisions, --quick, --json, CPU pinning, noise, source."""
    p.add_argument("--rounds", type=int, default=2, help="times each target is measured, alternating (default 2)")
    p.add_argument("--revisions", default=",".join(REVISIONS), help="2026-07-28 and/or 2025-11-25")
    p.add_argument("--quick", action="store_true", help="1 round x 3 s, 1 s warm-up")
    p.add_argument("--json", metavar="PATH", help="write machine-readable results here")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    add_noise_args(p)
    add_source_arg(p)
    add_base_arg(p)


def finish_run_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Check --servers against --base-src, apply --bemcp-src, --base-src, --quick and the pinning fallback to
    parsed arguments, and check that each given tree is the one its servers import."""
    servers = [s for s in args.servers.split(",") if s]
    if args.base_src and BASE not in servers:
        p.error(f"--base-src is only used by the {BASE} server: add it to --servers (e.g. --servers bemcp,{BASE})")
    if BASE in servers and not args.base_src:
        p.error(f"--servers {BASE} needs --base-src DIR, the tree of the earlier commit it imports bemcp from")
    try:
        if args.bemcp_src:
            _bemcp_src[:] = [_tree(args.bemcp_src, "--bemcp-src")]
        if args.base_src:
            _base_src[:] = [_tree(args.base_src, "--base-src")]
    except ValueError as e:
        p.error(str(e))
    verify_sources(servers)
    if args.quick:
        args.duration, args.warmup, args.rounds = type(args.duration)(3), type(args.warmup)(1), 1
    if args.no_pin or not can_pin((args.server_cpu, args.client_cpu)):
        if not args.no_pin:
            print("note: cannot pin to the requested CPUs; running unpinned", file=sys.stderr)
        args.server_cpu = args.client_cpu = None
    return args


# -- paired ratios ---------------------------------------------------------------------------------------

PROTECTION_GOAL = 0.95  # protections on keep at least this share of the protections-off throughput
BASE_GOAL = 0.97  # a change to the call path keeps at least this share of the throughput of the commit before it


def paired_ratios(runs: list[Run], subject: str, reference: str) -> dict[tuple[str, int], list[tuple[float, float]]]:
    """`subject` against `reference`, paired by round within each (revision, concurrency): for each pair the calls/s
    ratio subject / reference and the server CPU per call ratio reference / subject (so above 1 favours the
    subject in both). On a shared machine the ratio of two runs taken seconds apart is steadier than either rate."""
    by_key = {(r.server, r.revision, r.conns, r.round): r for r in runs}
    groups: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in runs:
        if r.server != subject:
            continue
        ref = by_key.get((reference, r.revision, r.conns, r.round))
        if ref is not None and ref.rate > 0 and r.cpu_us_per_call > 0:
            groups.setdefault((r.revision, r.conns), []).append(
                (r.rate / ref.rate, ref.cpu_us_per_call / r.cpu_us_per_call)
            )
    return groups


def _geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in values))


def _stats(values: Sequence[float]) -> str:
    return (
        f"geometric mean {_geomean(values):.1%}, mean {statistics.fmean(values):.1%}, "
        f"median {statistics.median(values):.1%}"
    )


def print_paired(runs: list[Run], subject: str, reference: str, title: str, goal: float, conns_label: str) -> None:
    """Print `paired_ratios` over all pairs and per (revision, concurrency), each with a verdict on the geometric
    mean of the calls/s ratios against `goal`; nothing when no pair was measured."""
    groups = paired_ratios(runs, subject, reference)
    if not groups:
        return
    print(f"\n{title}, paired by round (calls/s {subject} / {reference}; server CPU per call {reference} / {subject}):")

    def verdict(rates: Sequence[float]) -> str:
        return "meets" if _geomean(rates) >= goal else "MISSES"

    every = [p for pairs in groups.values() for p in pairs]
    rates, cpus = [p[0] for p in every], [p[1] for p in every]
    print(
        f"  all {len(every)} pairs: calls/s {_stats(rates)}; CPU/call {_stats(cpus)}; "
        f"goal >= {goal:.0%} (geometric mean of calls/s): {verdict(rates)}"
    )
    for (revision, conns), pairs in sorted(groups.items()):
        rates, cpus = [p[0] for p in pairs], [p[1] for p in pairs]
        by_round = ", ".join(f"{x:.1%}" for x in rates)
        print(
            f"  {revision} {conns_label} {conns}: calls/s {_stats(rates)} (by round {by_round}); "
            f"CPU/call {_stats(cpus)}; goal >= {goal:.0%}: {verdict(rates)}"
        )


def print_protection_cost(runs: list[Run], conns_label: str) -> None:
    """bemcp (protections on) against bemcp-bare (off)."""
    print_paired(runs, "bemcp", "bemcp-bare", "protections on / off", PROTECTION_GOAL, conns_label)


def print_base_ratio(runs: list[Run], conns_label: str) -> None:
    """bemcp (this tree) against bemcp-base (the --base-src tree, the commit before the change)."""
    if _base_src:
        title = f"bemcp / {BASE} ({git_revision()} / {_base_src[0]})"
        print_paired(runs, "bemcp", BASE, title, BASE_GOAL, conns_label)
