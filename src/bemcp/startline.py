"""The one line `bemcp serve` prints when it is ready: where, which revisions, which limits, what memory budget."""

from __future__ import annotations

from bemcp import __version__
from bemcp.config import ServeSettings
from bemcp.protocol import versions
from bemcp.protocol.server import Server


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def start_line(server: Server, cfg: ServeSettings, where: str) -> str:
    """E.g. `bemcp 0.1.0: weather 1.0.0 (2 tools, ...) on http://127.0.0.1:8000/mcp | MCP 2026-07-28 ...`."""
    app = server.app
    rt = server.runtime
    offers = ", ".join(
        (
            _plural(len(app.tools), "tool"),
            _plural(len(app.resources) + len(app.templates), "resource"),
            _plural(len(app.prompts), "prompt"),
        )
    )
    if server.extra_tools:
        offers += " + " + ", ".join(sorted(server.extra_tools)) if len(server.extra_tools) < 3 else " + built-ins"
    place = "over stdio" if where == "stdio" else f"on {where}"
    older = len(versions.HANDSHAKE) - 1
    revisions = f"MCP {' + '.join((*versions.MODERN, versions.LATEST_HANDSHAKE))} (and {older} older)"
    if not cfg.protections:
        limits = "protections OFF (benchmarks only)"
    else:
        limit = "adaptive up to " if cfg.limit != "fixed" else ""
        timeout = f", call timeout {cfg.call_timeout:g} s" if cfg.call_timeout else ""
        mem = rt.memory.limit
        limits = (
            f"{limit}{cfg.max_concurrency} calls at once, {cfg.queue_size} queued{timeout}; memory budget "
            f"{_size(rt.memory.budget)} ({cfg.memory_fraction:.0%} of {_size(mem.limit)}, {mem.source})"
        )
    stop = "" if where == "stdio" else "; Ctrl-C drains and stops"
    runner = server.tasks
    if runner.running:  # where tasks live is what an operator must know to keep them across restarts
        kind = runner.config.store
        kept = (
            f"in {runner.state_path.absolute()}"
            if kind == "sqlite"
            else "in memory (lost at exit)"
            if kind == "memory"
            else f"in {kind}"
        )
        limits += f"; tasks {kept}, as worker {runner.worker}"
    return f"bemcp {__version__}: {app.name} {app.version} ({offers}) {place} | {revisions} | {limits}{stop}"
