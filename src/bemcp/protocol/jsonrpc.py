"""JSON-RPC 2.0 framing on plain dicts.

Messages stay plain dicts from parse to encode: no per-message model objects
on the hot path. `classify` checks only the envelope; method-specific params
are checked by their handlers.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

import orjson

from bemcp.protocol import codes

Message = dict[str, Any]
RequestId = str | int


class Kind(Enum):
    REQUEST = 1
    NOTIFICATION = 2
    RESPONSE = 3
    INVALID = 4


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def dumps(msg: Any) -> bytes:
    """Encode a message; one that cannot be encoded becomes an error answer for the same id.

    Tool results can hold values JSON cannot carry (an int past 64 bits, a
    custom object): the client still gets exactly one well-formed answer.
    """
    try:
        return orjson.dumps(msg, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError) as e:
        req_id = msg.get("id") if isinstance(msg, dict) else None
        if not valid_id(req_id):
            req_id = None
        return orjson.dumps(
            error(req_id, codes.INTERNAL_ERROR, f"Internal error: the answer could not be encoded as JSON ({e})")
        )


def result(req_id: RequestId, res: dict[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "id": req_id, "result": res}


def error(req_id: RequestId | None, code: int, message: str, data: Any = None) -> Message:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": req_id, "error": err}


def notification(method: str, params: dict[str, Any] | None = None) -> Message:
    msg: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def request(req_id: RequestId, method: str, params: dict[str, Any] | None = None) -> Message:
    msg: Message = {"jsonrpc": "2.0", "id": req_id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def valid_id(value: Any) -> bool:
    # bool is an int subclass but never a valid id; MCP forbids null ids.
    return (isinstance(value, (str, int))) and not isinstance(value, bool)


def classify(msg: Any, raw: bytes | None = None) -> tuple[Kind, str]:
    """Return the message kind, or INVALID with a reason for the client.

    `raw`, the bytes `msg` was parsed from, lets a reason quote an id as the client wrote it.
    """
    if not isinstance(msg, dict):
        return Kind.INVALID, "message must be a JSON object"
    if msg.get("jsonrpc") != "2.0":
        return Kind.INVALID, 'jsonrpc must be "2.0"'
    method = msg.get("method")
    if method is not None:
        if not isinstance(method, str):
            return Kind.INVALID, "method must be a string"
        params = msg.get("params")
        if params is not None and not isinstance(params, dict):
            return Kind.INVALID, "params must be an object"
        if "id" not in msg:
            return Kind.NOTIFICATION, ""
        if not valid_id(msg["id"]):
            return Kind.INVALID, _id_problem(msg["id"], raw)
        return Kind.REQUEST, ""
    if "id" in msg and ("result" in msg or "error" in msg):
        if "result" in msg and "error" in msg:
            return Kind.INVALID, "a response has either result or error"
        return Kind.RESPONSE, ""
    return Kind.INVALID, "not a request, notification or response"


# orjson reads integers from -2**63 to 2**64 - 1 as int, and any integer past them as a float.
_INT_LOW, _INT_HIGH = -(2**63), 2**64
_RAW_ID = re.compile(rb'"id"\s*:\s*(-?[0-9]{19,309})(?![0-9.eE])')  # past 309 digits a float is inf


def _id_problem(value: Any, raw: bytes | None) -> str:
    if isinstance(value, float) and value.is_integer():
        # An integer literal that came out as a float did not fit; so did any integral float past the range.
        digits = _digits(value, raw)
        if digits is not None or not _INT_LOW <= value < _INT_HIGH:
            return f"id {digits or value} is too large: integer ids must fit in 64 bits (JSON-RPC allows strings)"
    return "id must be a string or an integer"


def _digits(value: float, raw: bytes | None) -> str | None:
    """The too-large integer literal in the raw message that parsed as `value`, if there is one."""
    for m in _RAW_ID.finditer(raw or b""):
        n = int(m.group(1))
        if not _INT_LOW <= n < _INT_HIGH and float(n) == value:
            return m.group(1).decode()
    return None


def invalid_request(msg: Any, reason: str) -> Message:
    req_id = msg.get("id") if isinstance(msg, dict) else None
    return error(req_id if valid_id(req_id) else None, codes.INVALID_REQUEST, f"Invalid request: {reason}")


def parse_error(detail: str) -> Message:
    return error(None, codes.PARSE_ERROR, f"Parse error: {detail}")
