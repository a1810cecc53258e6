"""The requests a peer has in flight, by id: what both transports keep so that `notifications/cancelled` (and a
session's end) can find a request, and so that one id is one request at a time."""

from __future__ import annotations

from bemcp.protocol import codes, jsonrpc
from bemcp.protocol.exchange import Exchange
from bemcp.protocol.jsonrpc import Message


def enter(ex: Exchange, scope: str = "") -> Message | None:
    """Register `ex` under its id; the -32600 answer instead when that id is already in flight.

    `scope` finishes the refusal's sentence ("in this session"). Registered before the request runs, so a
    cancel that follows at once finds it.
    """
    inflight = ex.peer.inflight
    req_id = ex.request_id
    if req_id in inflight:
        where = f" {scope}" if scope else ""
        text = f"Invalid request: id {req_id!r} is already in flight{where}"
        return jsonrpc.error(req_id, codes.INVALID_REQUEST, text)
    inflight[req_id] = ex
    return None


def leave(ex: Exchange) -> None:
    """Forget `ex` (if its id still names it). Safe to call twice: a task cancelled before its first step runs
    no `finally`, so its done callback calls this too."""
    inflight = ex.peer.inflight
    if inflight.get(ex.request_id) is ex:
        del inflight[ex.request_id]
