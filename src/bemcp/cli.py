"""The `bemcp` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bemcp.config import ConfigError


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run an MCP server",
        description="Run an MCP server over stdio or HTTP. "
        "Every flag also reads BEMCP_<FLAG> from the environment and <flag> from --config.",
    )
    p.add_argument("--transport", choices=["stdio", "http"], help="default: http")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="default 8000")
    p.add_argument("--app", help="MODULE:ATTR of a bemcp.App (default: the built-in app)")
    p.add_argument("--path", help="the MCP endpoint path (default /mcp)")
    p.add_argument("--call-timeout", type=float, help="seconds before a call is cancelled (default: none)")
    p.add_argument("--sync-workers", type=int, help="threads for sync tools (default 32)")
    p.add_argument("--max-body-bytes", type=int, help="larger HTTP bodies get 413 (default 4 MiB)")
    p.add_argument("--max-sessions", type=int, help="sessions past this get 503 (default 10000)")
    p.add_argument("--session-idle-timeout", type=float, help="seconds before an idle session ends (default 1800)")
    p.add_argument("--allowed-hosts", help="comma-separated Host names accepted besides the loopback names (* for any)")
    p.add_argument("--allowed-origins", help="comma-separated Origins accepted besides loopback origins (* for any)")
    p.add_argument("--log-file", help="write logs here instead of stderr")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--debug", action="store_const", const=True, help="tracebacks in tool errors")
    p.add_argument("--config", help="a TOML file ([serve] table or top-level keys)")
    g = p.add_argument_group("protection")
    g.add_argument(
        "--stress-tools",
        action="store_const",
        const=True,
        help="register the workload tools (denial-of-service by design; never in production)",
    )
    g.add_argument("--max-concurrency", type=int, help="calls running at once (default 1000)")
    g.add_argument("--queue-size", type=int, help="calls waiting for a slot; past it: overload error (default 1000)")
    g.add_argument("--queue-timeout-ms", type=float, help="how long a call may wait for a slot (default 1000)")
    g.add_argument(
        "--limit",
        choices=["fixed", "adaptive", "vegas"],
        help="the concurrency limit: fixed at --max-concurrency, or adaptive (Gradient2) / vegas, "
        "learning the limit from latency up to --max-concurrency (default fixed)",
    )
    g.add_argument("--memory-fraction", type=float, help="memory budget as a fraction of the limit (default 0.8)")
    g.add_argument(
        "--memory-limit-mb",
        type=float,
        help="the memory limit to budget from, instead of the detected cgroup or physical limit",
    )
    g.add_argument("--stall-threshold", type=float, help="seconds of event-loop stall the watchdog records (1)")
    g.add_argument(
        "--emergency-threshold",
        type=float,
        help="seconds of stall after which the server exits with code 75 (default 30)",
    )
    g.add_argument("--drain-timeout", type=float, help="seconds a drain waits for in-flight calls (default 10)")
    g.add_argument("--protections", choices=["on", "off"], help=argparse.SUPPRESS)  # overhead benchmarks only
    g.add_argument(
        "--supervise",
        action="store_true",
        help="run the server as a child process, restarting it after an abnormal exit",
    )


def _supervise(argv: list[str]) -> int:
    import logging

    from bemcp.runtime.supervisor import Supervisor, build_child_argv

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Supervisor(build_child_argv(argv)).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bemcp", description="BE-MCP: a hardened MCP server runtime.")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    from bemcp.stress.cli import add_parser as add_stress_parser

    add_stress_parser(sub)
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["stress"]:
        from bemcp.stress.cli import main as stress_main

        return stress_main(raw[1:])
    args = parser.parse_args(raw)
    if args.command == "serve":
        from bemcp import config, serve

        if args.supervise:
            return _supervise(list(sys.argv[1:] if argv is None else argv))
        given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "supervise")}
        if given.get("protections") is not None:
            given["protections"] = given["protections"] == "on"
        try:
            cfg = config.load(given, args.config)
            return serve.run(cfg)
        except ConfigError as e:
            print(f"bemcp: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
