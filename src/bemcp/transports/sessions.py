"""HTTP sessions for handshake-era (2025-11-25 and older) clients."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

from bemcp.protocol import jsonrpc
from bemcp.protocol.exchange import Peer
from bemcp.protocol.server import Server
from bemcp.runtime.cancel import CancelReason

log = logging.getLogger("bemcp.http")


class SessionLimit(Exception):
    """No new session: `reason` is session_limit (all sessions) or client_session_limit (this client's)."""

    def __init__(self, reason: str, limit: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.limit = limit
        self.message = message


def client_key(host: str | None) -> str:
    """Who counts as one client for --max-sessions-per-client: its IPv4 address, or its IPv6 /64.

    One IPv6 host usually holds a whole /64, and could take a fresh address for every session. `host` is
    the ASGI scope's client: the connecting address, or the X-Forwarded-For client named by a proxy in
    --forwarded-allow-ips (uvicorn's proxy-headers middleware). None (a Unix socket) is one client.
    """
    if not host:
        return ""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


@dataclass(slots=True)
class Session:
    id: str
    peer: Peer
    last_seen: float
    client: str = ""
    # Messages for the standalone GET stream; bounded so a client that never
    # opens or reads it cannot grow the server's memory.
    outbox: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=1024))
    stream_open: bool = False
    dropped: int = 0


class SessionStore:
    """Creates, finds, expires and closes sessions; owns the idle-sweeper task."""

    def __init__(
        self, server: Server, *, max_sessions: int, idle_timeout: float, max_per_client: int | None = None
    ) -> None:
        self.server = server
        self.max_sessions = max_sessions
        self.max_per_client = max_per_client if max_per_client is not None else max_sessions
        self.idle_timeout = idle_timeout
        self._sessions: dict[str, Session] = {}
        self._per_client: Counter[str] = Counter()
        self.refused: Counter[str] = Counter({"session_limit": 0, "client_session_limit": 0})
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="bemcp-session-sweeper")

    async def stop(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for sid in list(self._sessions):
            self.close(sid)

    def create(self, client: str = "") -> Session:
        """A new session for `client` (a `client_key`); raises SessionLimit when a cap is reached."""
        if len(self._sessions) >= self.max_sessions:
            self.refused["session_limit"] += 1
            raise SessionLimit(
                "session_limit",
                self.max_sessions,
                f"Service Unavailable: the session limit ({self.max_sessions}, --max-sessions) is reached",
            )
        if self._per_client[client] >= self.max_per_client:
            self.refused["client_session_limit"] += 1
            raise SessionLimit(
                "client_session_limit",
                self.max_per_client,
                f"Service Unavailable: client {client or '(local socket)'} already holds {self.max_per_client} "
                "sessions (--max-sessions-per-client); end one with DELETE, or let one expire",
            )
        sid = secrets.token_urlsafe(24)
        peer = Peer()
        session = Session(sid, peer, time.monotonic(), client)
        self._per_client[client] += 1

        async def standalone(msg: jsonrpc.Message) -> None:
            try:
                session.outbox.put_nowait(jsonrpc.dumps(msg))
            except asyncio.QueueFull:
                session.dropped += 1

        peer.standalone = standalone
        self._sessions[sid] = session
        self.server.peers.add(peer)
        return session

    def get(self, sid: str) -> Session | None:
        session = self._sessions.get(sid)
        if session is not None:
            session.last_seen = time.monotonic()
        return session

    def close(self, sid: str) -> bool:
        """End a session; its in-flight calls are cancelled and answered (`session_ended`)."""
        session = self._sessions.pop(sid, None)
        if session is None:
            return False
        left = self._per_client[session.client] - 1
        if left > 0:
            self._per_client[session.client] = left
        else:
            del self._per_client[session.client]
        self.server.peers.discard(session.peer)
        session.peer.close(CancelReason.SESSION_ENDED)
        if session.stream_open:
            with contextlib.suppress(asyncio.QueueFull):
                session.outbox.put_nowait(b"")
        return True

    async def _sweep(self) -> None:
        interval = max(0.05, min(self.idle_timeout / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self.idle_timeout
            for sid, session in list(self._sessions.items()):
                # A session with a call in flight or an open stream is not idle.
                if session.last_seen < cutoff and not session.peer.inflight and not session.stream_open:
                    log.info("session %s expired after %.0fs idle", sid[:8], self.idle_timeout)
                    self.close(sid)

    def end_streams(self) -> None:
        for session in self._sessions.values():
            if session.stream_open:
                with contextlib.suppress(asyncio.QueueFull):
                    session.outbox.put_nowait(b"")  # the stream ends on an empty message
