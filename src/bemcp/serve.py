"""Assembling and running a server from a `ServeConfig`."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys

from bemcp.app import App
from bemcp.config import ConfigError, ServeConfig
from bemcp.protocol.server import Server
from bemcp.runtime.runtime import Runtime, RuntimeConfig
from bemcp.tools.builtin import add_builtin_tools, default_app
from bemcp.transports.http import HttpOptions, HttpTransport
from bemcp.transports.stdio import StdioTransport


def load_app(spec: str | None) -> App:
    """Import `MODULE:ATTR` (an `App`, or a callable returning one); None gives the built-in app."""
    if not spec:
        return default_app()
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"--app {spec}: cannot import {module_name}: {e}") from None
    obj = getattr(module, attr or "app", None)
    if obj is None:
        raise ConfigError(f"--app {spec}: {module_name} has no attribute {attr or 'app'!r}")
    if callable(obj) and not isinstance(obj, App):
        obj = obj()
    if not isinstance(obj, App):
        raise ConfigError(f"--app {spec}: {type(obj).__name__} is not a bemcp.App")
    return obj


def configure_logging(cfg: ServeConfig) -> None:
    # stdout belongs to the protocol on stdio; logs go to stderr or a file.
    handler: logging.Handler = logging.FileHandler(cfg.log_file) if cfg.log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if cfg.debug else getattr(logging, cfg.log_level.upper(), logging.WARNING))


def build(cfg: ServeConfig) -> tuple[Server, Runtime]:
    app = load_app(cfg.app)
    runtime = Runtime(RuntimeConfig(sync_workers=cfg.sync_workers, call_timeout=cfg.call_timeout, debug=cfg.debug))
    if "server_health" not in app.tools:
        add_builtin_tools(app, runtime)
    return Server(app, runtime), runtime


def http_transport(server: Server, cfg: ServeConfig) -> HttpTransport:
    return HttpTransport(
        server,
        HttpOptions(
            path=cfg.path,
            max_body_bytes=cfg.max_body_bytes,
            max_sessions=cfg.max_sessions,
            session_idle_timeout=cfg.session_idle_timeout,
            allowed_hosts=tuple(h.lower() for h in cfg.allowed_hosts) if cfg.allowed_hosts else None,
            allowed_origins=tuple(o.lower() for o in cfg.allowed_origins) if cfg.allowed_origins else None,
        ),
    )


def run(cfg: ServeConfig) -> int:
    configure_logging(cfg)
    server, runtime = build(cfg)
    runtime.start()
    try:
        if cfg.transport == "stdio":
            _run_loop(StdioTransport(server).serve())
        else:
            import uvicorn

            uvicorn.run(
                http_transport(server, cfg),
                host=cfg.host,
                port=cfg.port,
                log_level=cfg.log_level,
                access_log=False,
                lifespan="on",
                loop=_loop_name(),
                http=_http_name(),
                timeout_graceful_shutdown=10,
            )
    finally:
        runtime.stop()
    return 0


def _loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _http_name() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _run_loop(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
