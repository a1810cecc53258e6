"""How the runtime's verdicts are answered on the wire: a `Refusal` as the overload error, a `CutOff` as a
call timeout.

A refusal's answer is a `RefusedAnswer`, an ordinary error response that also
carries the retry hint, so a transport can add what its framing offers (HTTP:
503 and `Retry-After`) without reading JSON-RPC codes back.
"""

from __future__ import annotations

from typing import Any

from bemcp.protocol import codes
from bemcp.protocol.jsonrpc import Message, RequestId
from bemcp.runtime.cancel import CutOff
from bemcp.runtime.refusal import Refusal


class RefusedAnswer(dict[str, Any]):
    """The error response to a refused call; `retry_after_ms` says when to try again."""

    __slots__ = ("retry_after_ms",)

    def __init__(self, message: Message, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms

    @property
    def retry_after_s(self) -> int:
        """The hint in whole seconds, rounded up, at least 1: what `Retry-After` carries."""
        return max(1, -(-self.retry_after_ms // 1000))


def refusal_error(refusal: Refusal) -> dict[str, Any]:
    """The JSON-RPC error object for a refusal: the documented overload code, its message and figures."""
    return {"code": codes.OVERLOADED, "message": refusal.message, "data": refusal.data()}


def refused(req_id: RequestId, refusal: Refusal) -> RefusedAnswer:
    return RefusedAnswer({"jsonrpc": "2.0", "id": req_id, "error": refusal_error(refusal)}, refusal.retry_after_ms)


def cut_off_error(cut: CutOff) -> dict[str, Any]:
    """The JSON-RPC error object for a call the server ended: -32051 with the reason and deadline."""
    return {"code": codes.CALL_TIMEOUT, "message": cut.message, "data": cut.data()}
