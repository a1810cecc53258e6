"""2026-07-28 per-request envelope and multi round-trip input requests (MRTR).

A 2026-07-28 server cannot send requests to the client. A call that needs
sampling, elicitation or roots answers `resultType: "input_required"` with
the requests it needs; the client retries the same call with
`inputResponses`. BE-MCP re-runs the handler, and each `ctx.ask` finds its
answers by key, so a tool is written once for both revisions.

Answers from earlier rounds travel in `requestState`, signed with a
per-process key so a client cannot forge or alter them, and bound to the
call (method, target, arguments) and a short lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

import orjson

from bemcp.errors import InvalidParams, McpError
from bemcp.protocol import codes, versions
from bemcp.protocol.answers import clean as clean_answer
from bemcp.protocol.answers import problem as answer_problem
from bemcp.protocol.exchange import LOG_RANK, Exchange
from bemcp.runtime.pipeline import Suspended

STATE_TTL_S = 600.0
_CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}


class InputRequired(Suspended):
    """Raised inside a 2026-07-28 call when it needs answers the client has not sent yet."""

    def __init__(self, requests: dict[str, dict[str, Any]]) -> None:
        super().__init__(", ".join(requests))
        self.requests = requests


class StateSigner:
    """Signs and verifies `requestState` tokens (HMAC-SHA256, sign-only)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def seal(self, binding: str, answers: dict[str, Any]) -> str:
        payload = orjson.dumps({"b": binding, "r": answers, "e": time.time() + STATE_TTL_S})
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._mac(payload)

    def open(self, token: Any, binding: str) -> dict[str, Any]:
        """The answers a token carries; raises InvalidParams for anything forged, stale or foreign."""
        if not isinstance(token, str) or token.count(".") != 1:
            raise InvalidParams("invalid requestState")
        body, mac = token.split(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            raise InvalidParams("invalid requestState") from None
        # compare_digest raises TypeError on non-ASCII str: compare bytes.
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise InvalidParams("invalid requestState: signature mismatch")
        state = orjson.loads(payload)
        if state.get("b") != binding:
            raise InvalidParams("invalid requestState: it belongs to a different request")
        if state.get("e", 0) < time.time():
            raise InvalidParams("invalid requestState: expired")
        answers = state.get("r")
        return answers if isinstance(answers, dict) else {}


def binding_of(method: str, params: dict[str, Any]) -> str:
    """What a requestState is tied to: the method, its target and its arguments."""
    target = params.get("name", params.get("uri"))
    digest = hashlib.sha256(orjson.dumps(params.get("arguments"), option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{method}|{target}|{digest}"


def enter_stateless(ex: Exchange, params: dict[str, Any], signer: StateSigner) -> None:
    """Validate the request's `_meta` envelope and mark the exchange as 2026-07-28."""
    meta = ex.meta
    missing = [k for k in (versions.META_PROTOCOL_VERSION, versions.META_CLIENT_CAPABILITIES) if k not in meta]
    if missing:
        raise InvalidParams(f"params._meta is missing the required envelope key(s): {', '.join(missing)}")
    version = meta[versions.META_PROTOCOL_VERSION]
    if not isinstance(version, str):
        raise InvalidParams("the protocol-version envelope value must be a string")
    if version not in versions.MODERN:
        raise McpError(
            codes.UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            {"supported": list(versions.MODERN), "requested": version},
        )
    ex.stateless = True
    ex.can_request = False
    ex.protocol_version = version
    caps = meta[versions.META_CLIENT_CAPABILITIES]
    ex.client_capabilities = caps if isinstance(caps, dict) else {}
    level = meta.get(versions.META_LOG_LEVEL)
    if level is not None:
        if not isinstance(level, str) or level not in LOG_RANK:
            shown = repr(level) if isinstance(level, str) else f"of type {type(level).__name__}"
            raise InvalidParams(f"unknown log level {shown} in params._meta")
        ex.log_level = level
    answers: dict[str, Any] = {}
    if "requestState" in params:
        answers.update(signer.open(params["requestState"], binding_of(ex.method, params)))
    responses = params.get("inputResponses")
    if responses is not None:
        if not isinstance(responses, dict):
            raise InvalidParams("params.inputResponses must be an object")
        answers.update(responses)
    if answers:
        ex.input_responses = answers


def require_capability(ex: Exchange, method: str) -> None:
    """The spec: never send a client request the client did not declare it can answer."""
    cap = _CAPABILITY.get(method)
    if cap is not None and cap not in ex.capabilities:
        raise McpError(
            codes.MISSING_REQUIRED_CLIENT_CAPABILITY,
            f"{method} needs the client capability {cap!r}",
            {"requiredCapabilities": {cap: {}}},
        )


def check_answer(key: str, request: dict[str, Any], answer: Any) -> Any:
    """An input response as the tool gets it; InvalidParams when it does not answer what the request asked."""
    method = request["method"]
    why = answer_problem(method, request.get("params") or {}, answer)
    if why is not None:
        raise InvalidParams(
            f"inputResponses[{key!r}] is not a valid {method} result: {why}",
            {"key": key, "method": method, "problem": why},
        )
    return clean_answer(method, answer)


def ask_stateless(ex: Exchange, requests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """All answers for `requests`, or stop the call to ask the client for the missing ones."""
    have = ex.input_responses or {}
    missing = {k: r for k, r in requests.items() if k not in have}
    if missing:
        for req in missing.values():
            require_capability(ex, req["method"])
        raise InputRequired(missing)
    return {k: check_answer(k, r, have[k]) for k, r in requests.items()}


def input_required_result(
    ex: Exchange, params: dict[str, Any], need: InputRequired, signer: StateSigner
) -> dict[str, Any]:
    answered = {k: v for k, v in (ex.input_responses or {}).items() if k not in need.requests}
    return {
        "resultType": "input_required",
        "inputRequests": need.requests,
        "requestState": signer.seal(binding_of(ex.method, params), answered),
    }
