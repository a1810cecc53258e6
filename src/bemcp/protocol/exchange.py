"""Per-connection (`Peer`) and per-request (`Exchange`) protocol state.

A transport creates one `Peer` per stdio connection or HTTP session (or one
per request for stateless 2026-07-28 traffic) and one `Exchange` per inbound
request. The exchange is how a handler talks back on the request's own stream.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bemcp.errors import ClientError, NoBackChannel
from bemcp.protocol import jsonrpc
from bemcp.protocol.jsonrpc import Message, RequestId
from bemcp.runtime.cancel import CancelReason

if TYPE_CHECKING:
    from bemcp.tasks.live import LiveTask

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
LOG_RANK = {name: i for i, name in enumerate(LOG_LEVELS)}

Sender = Callable[[Message], Awaitable[None]]


class Peer:
    """What the server knows about one client connection or session."""

    __slots__ = (
        "_ids",
        "_owner",
        "_pending",
        "client_capabilities",
        "client_info",
        "closed",
        "inflight",
        "initialized",
        "log_level",
        "protocol_version",
        "standalone",
        "subscriptions",
    )

    def __init__(self, protocol_version: str | None = None) -> None:
        self.protocol_version = protocol_version
        self.client_capabilities: dict[str, Any] = {}
        self.client_info: dict[str, Any] = {}
        self.log_level: str | None = None  # None: the client has not asked; send everything
        self.initialized = False
        self.subscriptions: set[str] = set()
        # Request id -> the exchange serving it, for notifications/cancelled.
        self.inflight: dict[RequestId, Exchange] = {}
        self._pending: dict[RequestId, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        # Where unsolicited notifications go (stdout, or the HTTP GET stream).
        self.standalone: Sender | None = None
        self.closed = False
        self._owner: str | None = None

    @property
    def owner(self) -> str:
        """Whose tasks this connection or session may see: its own only (random: never another's by chance).
        Made on first use: most peers never create a task, and stateless traffic may make a peer per request."""
        if self._owner is None:
            self._owner = "peer:" + secrets.token_hex(12)
        return self._owner

    @owner.setter
    def owner(self, value: str) -> None:
        self._owner = value

    def owns(self, owner: str) -> bool:
        """Whether tasks of `owner` are this peer's (without giving a peer that never had a task an owner)."""
        return self._owner is not None and self._owner == owner

    def next_id(self) -> str:
        return f"s-{next(self._ids)}"

    def expect_response(self, req_id: RequestId) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        return fut

    def forget(self, req_id: RequestId) -> None:
        self._pending.pop(req_id, None)

    def deliver(self, msg: Message) -> bool:
        """Resolve a pending server-to-client request; False when nothing waited for it."""
        req_id: Any = msg.get("id")
        # Any JSON can arrive here: an unhashable id or a non-integer code must not raise.
        fut = self._pending.pop(req_id, None) if jsonrpc.valid_id(req_id) else None
        if fut is None or fut.done():
            return False
        if "error" in msg:
            err = msg["error"] if isinstance(msg["error"], dict) else {}
            code, message = err.get("code"), err.get("message")
            fut.set_exception(
                ClientError(
                    code if isinstance(code, int) else 0, message if isinstance(message, str) else "", err.get("data")
                )
            )
        else:
            fut.set_result(msg.get("result"))
        return True

    def close(self, reason: CancelReason = CancelReason.DISCONNECT) -> None:
        """End the connection or session: pending client requests fail, in-flight calls are cancelled for `reason`.

        `disconnect` (nobody is left to answer) gets no response; any other reason is answered.
        """
        self.closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NoBackChannel("the client connection closed"))
        self._pending.clear()
        for ex in list(self.inflight.values()):
            if ex.task is not None and ex.cancel_reason is None and not ex.task.done():
                ex.cancel_reason = reason
                ex.task.cancel()

    def wants_log(self, level: str) -> bool:
        return self.log_level is None or LOG_RANK.get(level, 0) >= LOG_RANK[self.log_level]


@dataclass(slots=True)
class Exchange:
    """One inbound request and the stream its answer (and related messages) travel on."""

    peer: Peer
    request_id: RequestId
    method: str
    send: Sender | None  # None: this stream cannot carry messages before the response
    progress_token: str | int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    can_request: bool = True  # False where a client reply could not come back
    log_level: str | None = None  # 2026-07-28: per-request opt-in
    stateless: bool = False
    input_responses: dict[str, Any] | None = None  # 2026-07-28 multi round-trip answers
    protocol_version: str | None = None  # 2026-07-28: from this request's _meta
    client_capabilities: dict[str, Any] | None = None  # 2026-07-28: from this request's _meta
    cancel_reason: CancelReason | None = None
    task: asyncio.Task[Any] | None = None
    in_task: LiveTask | None = None  # the task this call runs as: ctx.ask and ctx.progress go to it
    hand_off: bool = False  # the tool may hand the rest of the call to a task (`ctx.run_as_task`)
    # The pipeline's admission Token when the call got one: Any, as the protocol layer never touches admission.
    slot: Any = None

    def cancel(self, reason: CancelReason) -> bool:
        """Cancel the task serving this request, recording why; False if already cancelled or not running."""
        task = self.task
        if self.cancel_reason is not None or task is None or task.done():
            return False
        self.cancel_reason = reason
        task.cancel()
        return True

    @property
    def version(self) -> str | None:
        return self.protocol_version if self.stateless else self.peer.protocol_version

    @property
    def capabilities(self) -> dict[str, Any]:
        caps = self.client_capabilities if self.stateless else self.peer.client_capabilities
        return caps if caps is not None else {}

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        if self.send is not None:
            await self.send(jsonrpc.notification(method, params))

    async def client_request(self, method: str, params: dict[str, Any], timeout: float | None) -> Any:
        """Send a request to the client on this request's stream and await its answer."""
        if self.send is None or not self.can_request:
            raise NoBackChannel(f"{method}: this transport cannot carry a request to the client")
        req_id = self.peer.next_id()
        fut = self.peer.expect_response(req_id)
        answered = False
        try:
            await self.send(jsonrpc.request(req_id, method, params))
            result = await asyncio.wait_for(fut, timeout)
            answered = True
            return result
        except ClientError:
            answered = True
            raise
        finally:
            self.peer.forget(req_id)
            if not answered and not self.peer.closed:
                # Timed out or the call was cancelled: tell the client to stop asking its user/model.
                task = asyncio.current_task()
                reason = "cancelled" if task is not None and task.cancelling() else "timed out"
                await self._cancel_outbound(req_id, reason)

    async def _cancel_outbound(self, req_id: RequestId, reason: str) -> None:
        if self.send is None:
            return
        try:
            await self.send(jsonrpc.notification("notifications/cancelled", {"requestId": req_id, "reason": reason}))
        except Exception:
            return  # the stream may be gone; the cancel is best effort
