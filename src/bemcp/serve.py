"""Assembling and running a server from a `ServeConfig`."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from types import FrameType
from typing import Any

import uvicorn

from bemcp.app import App
from bemcp.config import ConfigError, ServeConfig
from bemcp.protocol.server import Server
from bemcp.runtime.runtime import Runtime, RuntimeConfig
from bemcp.tools.builtin import add_builtin_tools, default_app
from bemcp.tools.workload import add_workload_tools
from bemcp.transports.http import HttpOptions, HttpTransport
from bemcp.transports.stdio import StdioTransport

log = logging.getLogger("bemcp.serve")


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
    # stdout belongs to the protocol on stdio; plain logs go to stderr. With --log-file, the
    # runtime's task log writes "bemcp" records there as JSON lines, off the event loop.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if cfg.debug else getattr(logging, cfg.log_level.upper(), logging.WARNING))


def runtime_config(cfg: ServeConfig) -> RuntimeConfig:
    return RuntimeConfig(
        sync_workers=cfg.sync_workers,
        call_timeout=cfg.call_timeout,
        debug=cfg.debug,
        max_concurrency=cfg.max_concurrency,
        queue_size=cfg.queue_size,
        queue_timeout_ms=cfg.queue_timeout_ms,
        limit=cfg.limit,
        memory_fraction=cfg.memory_fraction,
        memory_limit_mb=cfg.memory_limit_mb,
        log_file=cfg.log_file,
        task_log=cfg.task_log and cfg.log_file is not None,
        stall_threshold=cfg.stall_threshold,
        emergency_threshold=cfg.emergency_threshold,
        drain_timeout=cfg.drain_timeout,
        protections=cfg.protections,
    )


def build(cfg: ServeConfig) -> tuple[Server, Runtime]:
    app = load_app(cfg.app)
    runtime = Runtime(runtime_config(cfg))
    if "server_health" not in app.tools:
        add_builtin_tools(app, runtime)
    if cfg.stress_tools:
        add_workload_tools(app, runtime)
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
    if cfg.transport == "stdio":
        _run_loop(_serve_stdio(server, runtime))
        return 0
    _serve_http(server, runtime, cfg)
    return 0


# -- HTTP ----------------------------------------------------------------------


def _serve_http(server: Server, runtime: Runtime, cfg: ServeConfig) -> None:
    transport = http_transport(server, cfg)
    config = uvicorn.Config(
        transport,
        host=cfg.host,
        port=cfg.port,
        log_level=cfg.log_level,
        access_log=False,
        lifespan="on",
        loop=_loop_name(),
        http=_http_name(),
        timeout_graceful_shutdown=max(1, int(cfg.drain_timeout)),
    )
    DrainingServer(config, runtime, transport).run()


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT drains before shutting down.

    While draining, the server still accepts requests and answers new calls
    with the `draining` overload error (503), so clients learn to go
    elsewhere instead of seeing refused connections; a second signal exits at once.
    """

    def __init__(self, config: uvicorn.Config, runtime: Runtime, transport: HttpTransport) -> None:
        super().__init__(config)
        self._runtime = runtime
        self._transport = transport
        self._signals = 0
        self._drain: asyncio.Task[bool] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            super().handle_exit(sig, frame)
            self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._signals and self._drain is None:
            log.warning("signal received: draining (in flight: %d)", self._runtime.tasks.in_flight)
            self._drain = asyncio.get_running_loop().create_task(self._runtime.drain(), name="bemcp-drain")
        if self._drain is not None and self._drain.done() and not self.should_exit:
            self._transport.end_streams()
            self.should_exit = True
        return await super().on_tick(counter)


# -- stdio ---------------------------------------------------------------------


async def _serve_stdio(server: Server, runtime: Runtime) -> None:
    loop = asyncio.get_running_loop()
    runtime.start(loop)
    transport = StdioTransport(server)
    serving = loop.create_task(transport.serve(), name="bemcp-stdio")
    drain: asyncio.Task[None] | None = None

    async def drain_then_stop() -> None:
        await runtime.drain()
        transport.stop_reading()

    def on_signal() -> None:
        nonlocal drain
        if drain is None:
            drain = loop.create_task(drain_then_stop(), name="bemcp-drain")
        else:
            serving.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    try:
        await serving
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        if drain is not None and not drain.done():
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)
        runtime.stop()


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


def _run_loop(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)
