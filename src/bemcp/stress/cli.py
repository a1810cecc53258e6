"""`bemcp stress` and `bemcp stress compare`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bemcp.protocol import versions
from bemcp.stress.profiles import PROFILES

PHASES = ("tsunami", "tasks", "avalanche", "chaos", "rate", "soak")


USAGE = "bemcp stress [options]\n       bemcp stress compare OLD.json NEW.json [--threshold PCT]"


def _compare_epilog() -> str:
    """`bemcp stress compare`'s own usage and options, from its parser, so the two helps cannot drift apart."""
    from bemcp.stress.compare import compare_parser

    lines = compare_parser().format_help().rstrip().splitlines()
    return "compare two reports (exit 1 on a regression, 3 if a report fails its consistency checks):\n\n" + "\n".join(
        f"  {line}".rstrip() for line in lines
    )


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "stress",
        help="stress-test an MCP server and write a report",
        usage=USAGE,
        description="Stress-test any MCP server (embedded BE-MCP, an HTTP URL, or a stdio command), find its\n"
        "limits, and write report.json, report.md, report.html and stress.log.",
        epilog=_compare_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target",
        default="embedded",
        help='"embedded" (default: a BE-MCP server with the workload tools on a free loopback port), '
        'an http://HOST:PORT/mcp URL, or "stdio:COMMAND ARGS"',
    )
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="quick",
        help="quick (about a minute), standard (about 5 minutes) or extreme",
    )
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, from {','.join(PHASES)}")
    p.add_argument("--out", type=Path, help="report folder (default bemcp-reports/<UTC timestamp>/)")
    p.add_argument("--slo-p99-ms", type=float, default=1000.0, help="p99 latency a good step must stay under")
    p.add_argument(
        "--error-budget",
        type=float,
        default=0.01,
        help="fraction of calls that may fail (protocol errors, timeouts, transport errors)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed for arguments and the chaos mix")
    p.add_argument(
        "--allow-writes",
        action="store_true",
        help="also call tools not marked readOnlyHint (destructiveHint tools are never called)",
    )
    p.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="NAME[=WEIGHT]",
        help="load this tool (repeatable; weights are shares of calls, default 1): --tool a=3 --tool b=1 is a 3:1 "
        "mix. Default: the cheapest-looking of the target's own tools, never BE-MCP's built-in server_health",
    )
    p.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="call tool NAME with these arguments instead of ones generated from its inputSchema (repeatable)",
    )
    p.add_argument(
        "--revision",
        choices=["auto", versions.MODERN[0], versions.LATEST_HANDSHAKE],
        default="auto",
        help="protocol revision (auto: server/discover first, then initialize)",
    )
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra `bemcp serve` argument for the embedded target, written --serve-arg=--flag (repeatable; "
        "any given replaces the default --memory-limit-mb 1024, a simulated container limit)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="apply HTTP load from N processes (this one and N-1 workers) when one process is the limit",
    )
    p.add_argument(
        "--chaos-restart",
        action="store_true",
        help="embedded target only: run it under --supervise (its task store under --out) and, in the tasks phase, "
        "SIGKILL the server while tasks run; after the supervisor restarts it, every task must still answer "
        "(completed with its own result, or failed saying the server restarted)",
    )
    p.add_argument("--quiet", action="store_true", help="print only where the reports are and the verdict")


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "compare":
        from bemcp.stress.compare import compare_main

        return compare_main(list(argv[1:]))
    parser = argparse.ArgumentParser(prog="bemcp")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["stress", *argv])
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    bad = [p for p in phases if p not in PHASES]
    if bad or not phases:
        print(
            f"bemcp stress: unknown phase(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(PHASES)}",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.workers <= 64:
        print("bemcp stress: --workers must be between 1 and 64", file=sys.stderr)
        return 2
    if not 0 <= args.error_budget <= 1 or args.slo_p99_ms <= 0:
        print("bemcp stress: --error-budget must be in [0, 1] and --slo-p99-ms positive", file=sys.stderr)
        return 2
    from bemcp.stress.progress import Progress
    from bemcp.stress.runner import StressOptions, run_sync
    from bemcp.stress.selection import parse_flags
    from bemcp.stress.targets import TargetError

    try:
        tools, arguments = parse_flags(args.tool, args.args)
    except TargetError as e:
        print(f"bemcp stress: {e}", file=sys.stderr)
        return 2

    opts = StressOptions(
        target=args.target,
        profile=args.profile,
        phases=phases,
        out=args.out,
        slo_p99_ms=args.slo_p99_ms,
        error_budget=args.error_budget,
        seed=args.seed,
        allow_writes=args.allow_writes,
        revision=args.revision,
        serve_args=tuple(args.serve_arg),
        quiet=args.quiet,
        workers=args.workers,
        tools=tuple(tools),
        arguments=arguments,
        chaos_restart=args.chaos_restart,
    )
    progress = Progress(quiet=args.quiet)
    try:
        report, paths = run_sync(opts, progress.say, progress)
    except TargetError as e:
        print(f"bemcp stress: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bemcp stress: interrupted", file=sys.stderr)
        return 130
    progress.verdict(report, paths)
    if report["target"].get("error"):  # the report is written, and says the same: FAIL
        print(f"bemcp stress: {report['target']['error']}", file=sys.stderr)
    return 0 if report["verdict"]["status"] == "PASS" else 1
