"""HTTP sessions for handshake-era (2025-11-25 and older) clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field

from bemcp.protocol import jsonrpc
from bemcp.protocol.exchange import Peer
from bemcp.protocol.server import Server

log = logging.getLogger("bemcp.http")


# Why in-flight calls of a session that ends get an answer (see `HttpTransport`), not the silence of a disconnect.
SESSION_ENDED = "session_ended"


@dataclass(slots=True)
class Session:
    id: str
    peer: Peer
    last_seen: float
    # Messages for the standalone GET stream; bounded so a client that never
    # opens or reads it cannot grow the server's memory.
    outbox: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=1024))
    stream_open: bool = False
    dropped: int = 0


class SessionStore:
    """Creates, finds, expires and closes sessions; owns the idle-sweeper task."""

    def __init__(self, server: Server, *, max_sessions: int, idle_timeout: float) -> None:
        self.server = server
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self._sessions: dict[str, Session] = {}
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

    def create(self) -> Session | None:
        """A new session, or None when the cap is reached."""
        if len(self._sessions) >= self.max_sessions:
            return None
        sid = secrets.token_urlsafe(24)
        peer = Peer()
        session = Session(sid, peer, time.monotonic())

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
        """End a session; its in-flight calls are cancelled and answered (`SESSION_ENDED`)."""
        session = self._sessions.pop(sid, None)
        if session is None:
            return False
        self.server.peers.discard(session.peer)
        session.peer.close(SESSION_ENDED)
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
