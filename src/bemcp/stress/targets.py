"""What the stress tester points at: the embedded BE-MCP server, an HTTP URL, or a stdio command.

`parse_target(spec)` turns `--target` into a `Target`; `await target.start()` launches it when it is ours,
detects the protocol revision (`detect_revision`: 2026-07-28 `server/discover` first, then `initialize`) and
returns what the server said about itself. Every failure the user can cause or fix (a bad spec, nothing
listening, a command that does not exist, a server that does not speak MCP) is a `TargetError` with a one-line
message, which the CLI prints and exits 2 on. A target is an async context manager; `close()` always tears down
a process it started.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import shlex
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, Self

import psutil

from bemcp.protocol import codes
from bemcp.protocol.versions import META_SERVER_INFO
from bemcp.stress.client import (
    LEGACY,
    MODERN,
    ClientError,
    ConnectError,
    Endpoint,
    HttpClient,
    HttpSession,
    Tally,
    http_get,
    is_stateless,
)
from bemcp.stress.model import Session
from bemcp.stress.stdio_client import StdioClient

TargetKind = Literal["embedded", "http", "stdio"]
Revision = Literal["auto", "2026-07-28", "2025-11-25"]
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_UNSUPPORTED_VERSION = codes.UNSUPPORTED_PROTOCOL_VERSION


class TargetError(Exception):
    """The target cannot be used; the message is one line meant for the user."""


@dataclass(slots=True)
class TargetInfo:
    """What the server said about itself when the tester connected."""

    revision: str  # the protocol revision in use: "2026-07-28", or the version initialize agreed on
    server_info: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None
    supported_versions: list[str] = field(default_factory=list)

    @property
    def stateless(self) -> bool:
        return is_stateless(self.revision)

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "server_info": self.server_info,
            "capabilities": self.capabilities,
            "instructions": self.instructions,
            "supported_versions": self.supported_versions,
        }


async def detect_revision(
    client: HttpClient | StdioClient,
    *,
    timeout: float,
    revision: Revision = "auto",
    probe_timeout: float | None = None,
) -> TargetInfo:
    """Settle the revision the client speaks, per the spec's dual-era rule.

    "auto": a `server/discover` result (or a recognised 2026-07-28 error naming 2026-07-28) means 2026-07-28;
    anything else (another error, a non-JSON answer, no answer within `probe_timeout`) falls back to
    `initialize`, and the server's chosen version is used. A fixed revision skips the probe. Raises TargetError
    when neither works.
    """
    if revision in ("auto", MODERN):
        probe_error: str | None = None
        try:
            msg = await client.discover(timeout=timeout if probe_timeout is None else probe_timeout)
        except ConnectError as e:
            raise TargetError(f"cannot reach the target: {e}") from None
        except ClientError as e:
            if e.detail == "eof":  # the stdio server is gone: initialize cannot do better
                raise TargetError(f"the target closed the connection: {e}") from None
            msg, probe_error = None, str(e)
        info = _stateless_info(msg)
        if info is not None:
            client.revision = MODERN
            return info
        if revision == MODERN:
            raise TargetError(f"server/discover failed: {_describe(msg, probe_error)}")
    try:
        msg = await client.initialize(timeout=timeout)
    except ConnectError as e:
        raise TargetError(f"cannot reach the target: {e}") from None
    except ClientError as e:
        raise TargetError(f"the target does not speak MCP: initialize got {e}") from None
    result = msg.get("result")
    if not isinstance(result, dict):
        raise TargetError(f"the target does not speak MCP: initialize got {_describe(msg, None)}")
    return TargetInfo(
        revision=client.revision,
        server_info=_dict(result.get("serverInfo")),
        capabilities=_dict(result.get("capabilities")),
        instructions=result.get("instructions") if isinstance(result.get("instructions"), str) else None,
        supported_versions=[client.revision],
    )


def _stateless_info(msg: dict[str, Any] | None) -> TargetInfo | None:
    if msg is None:
        return None
    result = msg.get("result")
    if isinstance(result, dict):
        versions = result.get("supportedVersions")
        supported = [v for v in versions if isinstance(v, str)] if isinstance(versions, list) else [MODERN]
        if supported and MODERN not in supported:
            return None  # a 2026-07-28 server that does not speak the revision we do
        meta = _dict(result.get("_meta"))
        server_info = _dict(meta.get(META_SERVER_INFO)) or _dict(result.get("serverInfo"))
        instructions = result.get("instructions")
        return TargetInfo(
            revision=MODERN,
            server_info=server_info,
            capabilities=_dict(result.get("capabilities")),
            instructions=instructions if isinstance(instructions, str) else None,
            supported_versions=supported,
        )
    error = _dict(msg.get("error"))
    data = _dict(error.get("data"))
    if error.get("code") == _UNSUPPORTED_VERSION and MODERN in (data.get("supported") or []):
        # The server speaks 2026-07-28 but did not like something else about the probe: still 2026-07-28.
        return TargetInfo(revision=MODERN, supported_versions=list(data["supported"]))
    return None


def _describe(msg: dict[str, Any] | None, error: str | None) -> str:
    if msg is None:
        return error or "no answer"
    err = _dict(msg.get("error"))
    if err:
        return f"error {err.get('code')}: {str(err.get('message'))[:200]}"
    return str(msg)[:200]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# -- targets ----------------------------------------------------------------------------------------------


class Target(abc.ABC):
    """A server under test. `start()` once, `session()` as often as needed, `close()` always."""

    kind: TargetKind
    spec: str
    info: TargetInfo | None = None
    metrics_url: str | None = None  # Prometheus /metrics, when the target has one
    client: HttpClient | StdioClient | None = None

    @property
    @abc.abstractmethod
    def pid(self) -> int | None:
        """The server's process id, when known (ours, or found listening on a loopback port)."""

    @abc.abstractmethod
    async def start(self, *, timeout: float = 30.0) -> TargetInfo:
        """Launch (when ours) and connect; detect the revision. Raises TargetError."""

    @abc.abstractmethod
    def session(self) -> Session:
        """A new client session (HTTP: its own keep-alive connections; stdio: a view of the one pipe)."""

    @abc.abstractmethod
    async def alive(self) -> bool:
        """Whether the server is still there: its process runs, and for HTTP a TCP connect works."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect, and stop the server when this target started it. Safe to call twice."""

    @property
    def revision(self) -> str | None:
        return self.info.revision if self.info is not None else None

    @property
    def tally(self) -> Tally:
        """What the server sent that no call could carry (duplicates, unknown ids): see `client.Tally`."""
        return self.client.tally if self.client is not None else Tally()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class HttpTarget(Target):
    """A Streamable HTTP server someone else runs: `http://HOST:PORT/PATH`."""

    kind: TargetKind = "http"

    def __init__(self, url: str, *, revision: Revision = "auto") -> None:
        try:
            self.endpoint = Endpoint.parse(url)
        except ValueError as e:
            raise TargetError(f"bad target URL: {e}") from None
        self.spec = url
        self.url = url
        self._revision_choice: Revision = revision
        self.client: HttpClient | None = None
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def mcp_session_id(self) -> str | None:
        """The handshake-era session every session of this target joins (workers join it too)."""
        return self.client.mcp_session_id if self.client is not None else None

    async def start(self, *, timeout: float = 30.0) -> TargetInfo:
        client = HttpClient(self.url)
        self.client = client
        self.info = await detect_revision(client, timeout=min(timeout, 10.0), revision=self._revision_choice)
        self.metrics_url = await self._find_metrics()
        if self._pid is None and self.endpoint.host in _LOOPBACK:  # scanning sockets can take a while: a thread
            self._pid = await asyncio.to_thread(_listening_pid, self.endpoint.port)
        return self.info

    def client_params(self) -> dict[str, Any]:
        """What another process needs to load this target (`--workers`): `HttpClient(**params, id_base=...)`.

        Give each worker its own `id_base` (e.g. `worker_index << 40`): in a handshake-era session, request
        ids must not repeat while in flight.
        """
        if self.client is None or self.info is None:
            raise TargetError("the target is not started")
        return {"url": self.url, "revision": self.info.revision, "mcp_session_id": self.client.mcp_session_id}

    @classmethod
    def joined(cls, params: Mapping[str, Any], *, id_base: int) -> HttpTarget:
        """A target already started elsewhere (`client_params()` of the parent), joined without a handshake:
        what a `--workers` process loads."""
        target = cls(str(params["url"]))
        revision = str(params["revision"])
        target.client = HttpClient(target.url, revision, mcp_session_id=params.get("mcp_session_id"), id_base=id_base)
        target.info = TargetInfo(revision)
        return target

    def session(self) -> HttpSession:
        if self.client is None:
            raise TargetError("the target is not started")
        return self.client.session()

    async def alive(self) -> bool:
        return await _tcp_connects(self.endpoint, 2.0)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def _find_metrics(self) -> str | None:
        # Worth a look on any server: BE-MCP serves /metrics beside /mcp, and so do many others.
        try:
            answer = await http_get(self.endpoint, "/metrics", timeout=2.0)
        except ClientError:
            return None
        if answer.status == 200 and b"# TYPE" in answer.body:
            return f"{self.endpoint.base}/metrics"
        return None


class EmbeddedTarget(HttpTarget):
    """`bemcp serve --transport http --stress-tools` on a free loopback port, as a subprocess we own."""

    kind: TargetKind = "embedded"

    def __init__(
        self,
        *,
        serve_args: Sequence[str] = (),
        log_path: Path | None = None,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        revision: Revision = "auto",
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__("http://127.0.0.1:0/mcp", revision=revision)
        self.spec = "embedded"
        self.serve_args = list(serve_args)
        self.log_path = log_path
        self._python = python
        self._env = dict(env) if env is not None else None
        self._stop_timeout = stop_timeout
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self, port: int) -> list[str]:
        return [
            self._python,
            "-m",
            "bemcp",
            "serve",
            "--transport",
            "http",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--stress-tools",
            *self.serve_args,
        ]

    async def start(self, *, timeout: float = 30.0) -> TargetInfo:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            port = await self._spawn(deadline, timeout)
        except BaseException:
            await self._stop()
            raise
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.endpoint = Endpoint.parse(self.url)
        try:
            return await super().start(timeout=max(1.0, deadline - loop.time()))
        except BaseException:  # whoever called start() without `async with` still gets no stray server
            await self.close()
            raise

    async def _spawn(self, deadline: float, timeout: float) -> int:
        """Start the server and wait until /healthz answers; returns its port."""
        loop = asyncio.get_running_loop()
        for attempt in range(3):
            port = _free_port()
            await self._launch(port)
            if await self._wait_healthy(deadline):
                return port
            exited = self._proc is not None and self._proc.returncode is not None
            await self._stop()
            if loop.time() >= deadline:
                raise TargetError(f"the embedded server did not become healthy in {timeout:g}s{self._log_tail()}")
            # The free port can be taken between our check and the server's bind: only that is worth a retry.
            if not (exited and "address already in use" in self._log_tail().lower()) or attempt == 2:
                raise TargetError(f"the embedded server exited at start{self._log_tail()}")
        raise TargetError(f"the embedded server did not start{self._log_tail()}")

    async def _launch(self, port: int) -> None:
        self.log_path, log_file = _open_log(self.log_path, "bemcp-embedded-")
        with log_file as log:  # the child keeps its own copy of the descriptor
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.command(port),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env=self._env,
                )
            except OSError as e:
                raise TargetError(f"cannot start the embedded server ({self._python}): {e}") from None
        self.endpoint = Endpoint.parse(f"http://127.0.0.1:{port}/mcp")

    async def _wait_healthy(self, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        proc = self._proc
        while loop.time() < deadline:
            if proc is None or proc.returncode is not None:
                return False
            try:
                answer = await http_get(self.endpoint, "/healthz", timeout=1.0)
                if answer.status == 200:
                    return True
            except ClientError:
                pass
            await asyncio.sleep(0.05)
        return False

    async def alive(self) -> bool:
        proc = self._proc
        return proc is not None and proc.returncode is None and await _tcp_connects(self.endpoint, 2.0)

    async def close(self) -> None:
        await super().close()
        await self._stop()

    async def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            await _terminate(proc, self._stop_timeout)

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return f": {lines[-1][:300]} (log: {self.log_path})" if lines else f" (log: {self.log_path})"


class StdioTarget(Target):
    """`stdio:COMMAND ARGS`: a server process on our stdin/stdout, shared by every session."""

    kind: TargetKind = "stdio"

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        log_path: Path | None = None,
        revision: Revision = "auto",
    ) -> None:
        try:
            argv = shlex.split(command) if isinstance(command, str) else list(command)
        except ValueError as e:
            raise TargetError(f"bad stdio command: {e}") from None
        if not argv:
            raise TargetError('a stdio target needs a command, e.g. "stdio:python server.py"')
        self.argv = argv
        self.spec = "stdio:" + (command if isinstance(command, str) else shlex.join(argv))
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._revision_choice: Revision = revision
        self.client: StdioClient | None = None

    @property
    def pid(self) -> int | None:
        return self.client.pid if self.client is not None else None

    async def start(self, *, timeout: float = 30.0) -> TargetInfo:
        self.log_path, log_file = _open_log(self.log_path, "bemcp-stdio-")
        with log_file as log:  # the child keeps its own copy of the descriptor
            client = StdioClient(self.argv, env=self._env, cwd=self._cwd, stderr=log)
            try:
                await client.start()
            except OSError as e:
                raise TargetError(f"cannot run {self.argv[0]!r}: {e.strerror or e}") from None
        self.client = client
        try:
            # A legacy server may ignore the probe rather than answer it: give it a shorter wait.
            self.info = await detect_revision(client, timeout=min(timeout, 10.0), revision=self._revision_choice)
        except TargetError as e:
            code = await client.wait_exit(1.0 if not client.alive() else 0.0)
            if code is not None:
                tail = self._log_tail()
                raise TargetError(f"the stdio server exited with {code}{': ' + tail if tail else ''}") from None
            raise e from None
        return self.info

    def session(self) -> Session:
        if self.client is None:
            raise TargetError("the target is not started")
        return self.client.session()

    async def alive(self) -> bool:
        return self.client is not None and self.client.alive()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else ""


def parse_target(
    spec: str,
    *,
    serve_args: Sequence[str] = (),
    log_dir: Path | None = None,
    revision: Revision = "auto",
) -> Target:
    """`embedded`, `http[s]://HOST:PORT/PATH` or `stdio:COMMAND ARGS` → a Target (not started).

    `serve_args` are extra `bemcp serve` flags for the embedded server; `log_dir` holds server logs.
    """
    spec = spec.strip()
    if spec == "embedded":
        log = log_dir / "embedded-server.log" if log_dir is not None else None
        return EmbeddedTarget(serve_args=serve_args, log_path=log, revision=revision)
    if spec.startswith(("http://", "https://")):
        return HttpTarget(spec, revision=revision)
    if spec.startswith("stdio:"):
        log = log_dir / "stdio-server.log" if log_dir is not None else None
        return StdioTarget(spec[len("stdio:") :].strip(), log_path=log, revision=revision)
    raise TargetError(f'unknown target {spec!r}: use "embedded", an http://HOST:PORT/mcp URL, or "stdio:COMMAND ARGS"')


# -- helpers -----------------------------------------------------------------------------------------------


def _open_log(path: Path | None, prefix: str) -> tuple[Path, BinaryIO]:
    """The server's log file (stdout/stderr must go somewhere that never fills up, and stay readable)."""
    if path is None:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".log")
        os.close(fd)
        path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, open(path, "ab")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _tcp_connects(endpoint: Endpoint, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _terminate(proc: asyncio.subprocess.Process, timeout: float) -> None:
    """SIGTERM (a graceful drain), then SIGKILL after `timeout`."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    await proc.wait()


def _listening_pid(port: int) -> int | None:
    """The pid of our own process listening on a loopback port, if the OS lets us see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except (psutil.Error, OSError):
        return None
    return None


__all__ = [
    "LEGACY",
    "MODERN",
    "EmbeddedTarget",
    "HttpTarget",
    "Revision",
    "StdioTarget",
    "Target",
    "TargetError",
    "TargetInfo",
    "TargetKind",
    "detect_revision",
    "parse_target",
]
