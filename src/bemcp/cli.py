"""The `bemcp` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from bemcp import __version__, config
from bemcp.config import ConfigError

_GROUPS = {"server": "server", "protection": "protection", "tasks": "tasks"}


def _metavar(name: str, field: Any) -> str:
    rule = config.allowed(field) or ""
    if rule.startswith("one of "):
        return "{" + rule.removeprefix("one of ").replace(", ", ",") + "}"
    if "whole number" in rule:
        return "N"
    if "number" in rule:
        return "X"
    return "PATH" if name.endswith(("_file", "_dir")) else name.split("_")[-1].upper()


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run an MCP server",
        description="Serve an MCP app over Streamable HTTP or stdio.\n\n"
        "Every flag also reads BEMCP_<FLAG> from the environment (BEMCP_PORT=9000) and <flag> from the\n"
        "TOML file given with --config; flags win over the environment, which wins over the file.",
        epilog="examples:\n  bemcp serve weather.py\n  bemcp serve weather:app --port 9000\n"
        "  bemcp serve weather.py --transport stdio",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "target",
        nargs="?",
        metavar="TARGET",
        help="the app: MODULE:ATTR, MODULE (its one bemcp.App), FILE.py or FILE.py:ATTR (default: the built-in app)",
    )
    p.add_argument("--app", dest="app", metavar="TARGET", help="the same as TARGET")
    p.add_argument("--config", metavar="FILE", help="a TOML file ([serve] table or top-level keys)")
    groups = {name: p.add_argument_group(title) for name, title in _GROUPS.items()}
    for name, field in config.fields().items():
        if name == "app":
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        group = groups[str(extra.get("group", "server"))]
        shown = bool(extra.get("flag", True))
        helptext = field.description if shown else argparse.SUPPRESS
        if field.annotation is bool and shown:
            group.add_argument(config.flag_name(name), dest=name, action=argparse.BooleanOptionalAction, help=helptext)
        else:
            group.add_argument(config.flag_name(name), dest=name, metavar=_metavar(name, field), help=helptext)


def _supervise(argv: list[str]) -> int:
    import logging
    import os

    from bemcp.runtime.supervisor import Supervisor, build_child_argv

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = {**os.environ, "BEMCP_SUPERVISE": "0"}  # the child serves, even when a config file says supervise
    return Supervisor(build_child_argv(argv), env=env).run()


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    from bemcp import serve

    given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "target")}
    if args.target is not None:
        if args.app is not None and args.app != args.target:
            print(f"bemcp serve: two apps given ({args.target} and --app {args.app}); give one", file=sys.stderr)
            return 2
        given["app"] = args.target
    try:
        cfg = config.load(given, args.config)
        if cfg.supervise:
            return _supervise(argv)
        return serve.run(cfg)
    except ConfigError as e:
        print(f"bemcp serve: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bemcp", description="BE-MCP: a hardened MCP server runtime.")
    parser.add_argument("--version", action="version", version=f"bemcp {__version__}")
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
        return _serve(args, raw)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
