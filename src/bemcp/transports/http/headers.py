"""The request headers MCP cares about, parsed once per request into one typed object."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from bemcp.protocol import versions
from bemcp.protocol.jsonrpc import Message
from bemcp.schema import ParamHeader

# 2026-07-28: the body parameter the Mcp-Name header must equal, per method (the tasks extension routes on the
# task id, so that a load balancer can send a task's requests where its state is).
_NAME_PARAM = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "tasks/get": "taskId",
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}


@dataclass(slots=True)
class McpHeaders:
    """Raw where only compared as bytes (host, origin, accept, content type), decoded where compared as text."""

    host: bytes | None = None
    origin: bytes | None = None
    accept: bytes | None = None
    content_type: bytes | None = None
    content_length: int = -1  # -1: absent or not a number
    protocol_version: str | None = None
    session_id: str | None = None
    method: str | None = None  # Mcp-Method
    name: str | None = None  # Mcp-Name, as sent (see `decode_name`)

    @classmethod
    def parse(cls, raw: list[tuple[bytes, bytes]]) -> McpHeaders:
        """One pass over the ASGI header list; a repeated header keeps its last value."""
        # Locals, then one constructor call: attribute stores on the object cost more per header (hot path).
        host = origin = accept = ctype = None
        pv = sid = method = name = None
        length = -1
        for k, v in raw:
            if k == b"host":
                host = v
            elif k == b"accept":
                accept = v
            elif k == b"content-type":
                ctype = v
            elif k == b"content-length":
                length = int(v) if v.isdigit() else -1
            elif k == b"origin":
                origin = v
            elif k == b"mcp-protocol-version":
                pv = v.decode("latin-1")
            elif k == b"mcp-session-id":
                sid = v.decode("latin-1")
            elif k == b"mcp-method":
                method = v.decode("latin-1").strip()
            elif k == b"mcp-name":
                name = v.decode("latin-1").strip()
        return cls(host, origin, accept, ctype, length, pv, sid, method, name)

    @property
    def sse_ok(self) -> bool:
        accept = self.accept
        return accept is not None and (b"text/event-stream" in accept or b"*/*" in accept)

    @property
    def json_ok(self) -> bool:
        accept = self.accept
        return accept is not None and (b"application/json" in accept or b"*/*" in accept)

    def mismatch(self, msg: Message) -> str | None:
        """The 2026-07-28 routing-header rule: headers must be present and equal the body."""
        params: dict[str, Any] = msg.get("params") or {}
        meta = params.get("_meta")
        body_version = meta.get(versions.META_PROTOCOL_VERSION) if isinstance(meta, dict) else None
        pv = self.protocol_version
        if pv is None or pv != body_version:
            return (
                f"Header mismatch: MCP-Protocol-Version header {pv!r} does not match the body's "
                f"protocol version {body_version!r}"
            )
        method = msg["method"]
        if self.method != method:
            return f"Header mismatch: Mcp-Method header {self.method!r} does not match body method {method!r}"
        key = _NAME_PARAM.get(method)
        if key is not None:
            value = params.get(key)
            if value is not None and decode_name(self.name) != value:
                return f"Header mismatch: Mcp-Name header {self.name!r} does not match body value {value!r}"
        return None


_BASE64_PREFIX = "=?base64?"
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,19})")  # 64 bits at most, as in a body orjson parsed
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def param_mismatch(raw: list[tuple[bytes, bytes]], wanted: tuple[ParamHeader, ...], arguments: Any) -> str | None:
    """SEP-2243: each x-mcp-header argument of a `tools/call` travels in its `Mcp-Param-<Name>` header too, and
    the two must agree. Only called for a tool that has such arguments; `raw` is the ASGI header list."""
    if not isinstance(arguments, dict):
        return None  # not an object: `tools/call` itself answers that
    sent = {k: v for k, v in raw if k.startswith(b"mcp-param-")}
    for p in wanted:
        value = arguments.get(p.arg)
        got = sent.get(p.key)
        if got is None:
            if value is None:
                continue  # a client leaves out the header of an absent or null argument
            return f"Header mismatch: missing Mcp-Param-{p.header} header for argument {p.arg!r}"
        if value is None:
            return f"Header mismatch: Mcp-Param-{p.header} header sent without argument {p.arg!r} in the body"
        text = decode_param(got.decode("latin-1").strip(" \t"))
        if text is None:
            return f"Header mismatch: Mcp-Param-{p.header} header is not valid Base64 of UTF-8 text"
        if not _same(text, value):
            shown = text if len(text) <= 100 else text[:100] + "..."
            return f"Header mismatch: Mcp-Param-{p.header} header {shown!r} does not match argument {p.arg!r}"
    return None


def decode_param(value: str) -> str | None:
    """An Mcp-Param value: `=?base64?...?=` is strict Base64 of UTF-8 (None if not); anything else is literal."""
    if len(value) > 10 and value.startswith(_BASE64_PREFIX) and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return value


def _same(text: str, value: Any) -> bool:
    """Header text against the body's value: strings as they are, booleans and numbers by their JSON text (a
    number by value, so that `1e3` or `42.0` in the body matches a client's `1000` or `42`)."""
    if type(value) is str:
        return text == value
    if type(value) is bool:
        return text == ("true" if value else "false")
    if type(value) is int and _INTEGER.fullmatch(text) is not None:
        return int(text) == value
    if type(value) in (int, float) and _NUMBER.fullmatch(text) is not None:
        return bool(float(text) == value)
    return False


def decode_name(value: str | None) -> str | None:
    """An Mcp-Name value, undoing the spec's `=?base64?...?=` form for names that are not plain ASCII."""
    if value is not None and value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return value
