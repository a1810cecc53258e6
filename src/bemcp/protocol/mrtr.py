"""2026-07-28 per-request envelope and multi round-trip input requests.

A 2026-07-28 server cannot send requests to the client. A tool that needs
sampling or elicitation answers `resultType: "input_required"` with the
requests it needs; the client retries the same call with `inputResponses`.
BE-MCP re-runs the tool, and each `ctx.sample`/`ctx.elicit` in order picks its
answer by key, so a tool is written once for both revisions.
"""

from __future__ import annotations

from typing import Any

from bemcp.errors import InvalidParams, McpError
from bemcp.protocol import codes, versions
from bemcp.protocol.exchange import LOG_RANK, Exchange


class InputRequired(Exception):
    """Raised inside a modern call when it needs an answer the client has not sent yet."""

    def __init__(self, key: str, method: str, params: dict[str, Any]) -> None:
        super().__init__(key)
        self.requests = {key: {"method": method, "params": params}}

    def result(self) -> dict[str, Any]:
        return {"resultType": "input_required", "inputRequests": self.requests}


def enter_modern(ex: Exchange, params: dict[str, Any]) -> None:
    """Validate the request's `_meta` envelope and mark the exchange as 2026-07-28."""
    meta = ex.meta
    version = meta.get(versions.META_PROTOCOL_VERSION)
    if versions.META_CLIENT_CAPABILITIES not in meta:
        raise InvalidParams(f"params._meta is missing the required envelope key {versions.META_CLIENT_CAPABILITIES}")
    if not isinstance(version, str):
        raise InvalidParams("the protocol-version envelope value must be a string")
    if version not in versions.MODERN:
        raise McpError(
            codes.UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            {"supported": list(versions.SUPPORTED), "requested": version},
        )
    ex.modern = True
    ex.can_request = False
    peer = ex.peer
    peer.protocol_version = version
    caps = meta[versions.META_CLIENT_CAPABILITIES]
    peer.client_capabilities = caps if isinstance(caps, dict) else {}
    level = meta.get(versions.META_LOG_LEVEL)
    if level is not None:
        if level not in LOG_RANK:
            raise InvalidParams(f"unknown log level {level!r} in params._meta")
        ex.log_level = level
    responses = params.get("inputResponses")
    if responses is not None:
        if not isinstance(responses, dict):
            raise InvalidParams("params.inputResponses must be an object")
        ex.input_responses = responses


_CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}


def require_capability(ex: Exchange, method: str) -> None:
    """The spec: never send a client request the client did not declare it can answer."""
    cap = _CAPABILITY.get(method)
    if cap is not None and cap not in ex.peer.client_capabilities:
        raise McpError(
            codes.MISSING_REQUIRED_CLIENT_CAPABILITY,
            f"{method} needs the client capability {cap!r}",
            {"requiredCapabilities": {cap: {}}},
        )


def ask_modern(ex: Exchange, key: str, method: str, params: dict[str, Any]) -> Any:
    """Return the client's answer for `key`, or stop the call to ask for it."""
    if ex.input_responses is not None and key in ex.input_responses:
        return ex.input_responses[key]
    require_capability(ex, method)
    raise InputRequired(key, method, params)
