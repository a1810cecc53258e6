"""Assembling and running a server from `ServeSettings`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any

import uvicorn

from bemcp.app import App
from bemcp.config import ServeSettings
from bemcp.lifecycle import Lifecycle
from bemcp.loader import load_app
from bemcp.protocol.server import Server
from bemcp.runtime.runtime import Runtime, RuntimeConfig
from bemcp.startline import start_line
from bemcp.tasks.runner import TaskConfig
from bemcp.tools.builtin import add_builtin_tools
from bemcp.tools.workload import add_workload_tools
from bemcp.transports.http import HttpOptions, HttpTransport
from bemcp.transports.stdio import StdioTransport

log = logging.getLogger("bemcp.serve")


def configure_logging(cfg: ServeSettings) -> None:
    # stdout belongs to the protocol on stdio; plain logs go to stderr. With --log-file, the
    # runtime's task log writes "bemcp" records there as JSON lines, off the event loop.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if cfg.debug else getattr(logging, cfg.log_level.upper(), logging.WARNING))
    logging.getLogger("bemcp.start").setLevel(logging.INFO)  # the start line shows at every level


def runtime_config(cfg: ServeSettings) -> RuntimeConfig:
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


def build(cfg: ServeSettings, app: App | None = None) -> tuple[Server, Runtime]:
    """The server for `app` (or the one `cfg.app` names); raises ConfigError when it cannot be loaded."""
    if app is None:
        app = load_app(cfg.app, cfg.app_dir)
    runtime = Runtime(runtime_config(cfg))
    extras = App("bemcp-extras")
    add_builtin_tools(extras, runtime)
    if cfg.stress_tools:
        add_workload_tools(extras, runtime)
    return Server(app, runtime, extras.tools, task_config(cfg)), runtime


def task_config(cfg: ServeSettings) -> TaskConfig:
    worker = cfg.worker_id
    if worker is None and cfg.transport == "http" and cfg.port:
        # One process serves a host's port at a time, so host:port names it across restarts.
        worker = f"{socket.gethostname()}:{cfg.port}"
    return TaskConfig(
        store=cfg.task_store,
        state_dir=cfg.state_dir,
        max_tasks=cfg.max_tasks,
        timeout=cfg.task_timeout,
        ttl_s=cfg.task_ttl,
        worker_id=worker,
        lease_s=cfg.task_lease,
    )


def http_transport(server: Server, cfg: ServeSettings) -> HttpTransport:
    return HttpTransport(
        server,
        HttpOptions(
            path=cfg.path,
            max_body_bytes=cfg.max_body_bytes,
            max_sessions=cfg.max_sessions,
            max_sessions_per_client=cfg.max_sessions_per_client,
            session_idle_timeout=cfg.session_idle_timeout,
            max_header_bytes=cfg.max_header_bytes,
            header_timeout=cfg.header_timeout,
            body_timeout=cfg.body_timeout,
            max_connections=cfg.max_connections,
            allowed_hosts=tuple(h.lower() for h in cfg.allowed_hosts) if cfg.allowed_hosts else None,
            allowed_origins=tuple(o.lower() for o in cfg.allowed_origins) if cfg.allowed_origins else None,
        ),
    )


def run(cfg: ServeSettings, app: App | None = None) -> int:
    configure_logging(cfg)
    server, runtime = build(cfg, app)
    if cfg.transport == "stdio":
        _run_loop(_serve_stdio(server, cfg))
        return 0
    _serve_http(server, runtime, cfg)
    return 0


def supervise_script() -> None:
    """`App.run(supervise=True)`: run this same script as a supervised child (which serves), until it ends."""
    from bemcp.runtime.supervisor import Supervisor

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = {**os.environ, "BEMCP_SUPERVISE": "0"}
    sys.exit(Supervisor([sys.executable, *sys.orig_argv[1:]], env=env).run())


def announce(server: Server, cfg: ServeSettings, where: str) -> None:
    logging.getLogger("bemcp.start").info("%s", start_line(server, cfg, where))


# -- HTTP ----------------------------------------------------------------------


def _serve_http(server: Server, runtime: Runtime, cfg: ServeSettings) -> None:
    transport = http_transport(server, cfg)
    config = uvicorn.Config(
        transport,
        host=cfg.host,
        port=cfg.port,
        log_level=cfg.log_level,
        access_log=False,
        lifespan="on",
        loop=_loop_name(),
        # httptools with the connection limits (transports/limits.py); no WebSocket upgrades: MCP has none.
        http=transport.guard.protocol_class(),
        ws="none",
        # uvicorn's proxy-headers middleware sets the client (for --max-sessions-per-client) from these proxies.
        forwarded_allow_ips=cfg.forwarded_allow_ips if cfg.forwarded_allow_ips is not None else "127.0.0.1,::1",
        timeout_graceful_shutdown=max(1, int(cfg.drain_timeout)),
    )
    DrainingServer(config, runtime, transport, lambda url: announce(server, cfg, url)).run()


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT drains before shutting down.

    While draining, the server still accepts requests and answers new calls
    with the `draining` overload error (503), so clients learn to go
    elsewhere instead of seeing refused connections. Calls still running when
    the drain times out are answered `drain_timeout`; work that outlives the
    shutdown is named in the log and the process exits without waiting for it.
    A second signal exits at once (128 + the signal number), from the signal
    handler itself, so even a blocked event loop cannot hold it.
    """

    def __init__(
        self, config: uvicorn.Config, runtime: Runtime, transport: HttpTransport, on_listen: Any = None
    ) -> None:
        super().__init__(config)
        self._runtime = runtime
        self._transport = transport
        self._on_listen = on_listen
        self._signals = 0
        self._drain: asyncio.Task[bool] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_listen is not None:
            self._on_listen(self._url())

    def _url(self) -> str:
        """The endpoint as a client reaches it, with the port really bound (for --port 0)."""
        cfg = self.config
        port = cfg.port
        for server in self.servers:
            for sock in server.sockets:
                port = sock.getsockname()[1]
                break
        host = cfg.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1" if host != "::" else "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        scheme = "https" if cfg.ssl_certfile else "http"
        return f"{scheme}://{host}:{port}{self._transport.options.path}"

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            self._runtime.exit_on_signal(sig)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)  # the app's lifespan exit stops the runtime
        if self._runtime.left_behind:
            # Abandoned tasks would hold asyncio.run's clean-up (it awaits every task) for as long as they run.
            self._runtime.exit_now(0)

    async def on_tick(self, counter: int) -> bool:
        if self._signals and self._drain is None:
            log.warning("signal received: draining (in flight: %d)", self._runtime.calls.in_flight)
            self._drain = asyncio.get_running_loop().create_task(self._runtime.drain(), name="bemcp-drain")
        if self._drain is not None and self._drain.done() and not self.should_exit:
            self._transport.end_streams()
            self.should_exit = True
        return await super().on_tick(counter)


# -- stdio ---------------------------------------------------------------------


async def _serve_stdio(server: Server, cfg: ServeSettings) -> None:
    """Serve stdio until stdin closes or a signal comes; both drain the same way (`StdioTransport.drain`).

    The first SIGTERM/SIGINT drains while still reading, so calls sent meanwhile get the `draining`
    refusal, then stops reading. A second one exits at once (128 + the signal number) from the signal
    handler, so even a blocked event loop cannot hold it.
    """
    loop = asyncio.get_running_loop()
    runtime = server.runtime
    lifecycle = Lifecycle(server)
    await lifecycle.start()
    announce(server, cfg, "stdio")
    transport = StdioTransport(server, drain_timeout=cfg.drain_timeout)
    serving = loop.create_task(transport.serve(), name="bemcp-stdio")
    drain: asyncio.Task[None] | None = None
    signals = 0

    async def drain_then_stop() -> None:
        await transport.drain()
        transport.stop_reading()

    def start_drain() -> None:
        nonlocal drain
        if drain is None and not serving.done():
            log.warning("signal received: draining (in flight: %d)", runtime.calls.in_flight)
            drain = loop.create_task(drain_then_stop(), name="bemcp-drain")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # A plain signal handler, not loop.add_signal_handler: it runs even while the loop is blocked.
        nonlocal signals
        signals += 1
        if signals > 1:
            runtime.exit_on_signal(signum)
        else:
            loop.call_soon_threadsafe(start_drain)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        await serving
    finally:
        for handled, handler in previous.items():
            signal.signal(handled, handler)
        if drain is not None and not drain.done():
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)
        await lifecycle.stop()
    if runtime.left_behind:
        # Abandoned tasks would hold asyncio.run's clean-up (it awaits every task) for as long as they run.
        runtime.exit_now(0)


def _loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _run_loop(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)
