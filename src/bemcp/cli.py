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
    p.add_argument("--allowed-hosts", help="comma-separated Host names accepted (default: loopback names)")
    p.add_argument("--allowed-origins", help="comma-separated Origins accepted (default: loopback origins)")
    p.add_argument("--log-file", help="write logs here instead of stderr")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--debug", action="store_const", const=True, help="tracebacks in tool errors")
    p.add_argument("--config", help="a TOML file ([serve] table or top-level keys)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bemcp", description="BE-MCP: a hardened MCP server runtime.")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        from bemcp import config, serve

        given = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
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
