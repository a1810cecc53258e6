"""The request headers MCP cares about, parsed once per request into one typed object."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from bemcp.protocol import versions
from bemcp.protocol.jsonrpc import Message

# 2026-07-28: the body parameter the Mcp-Name header must equal, per method.
_NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


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


def decode_name(value: str | None) -> str | None:
    """An Mcp-Name value, undoing the spec's `=?base64?...?=` form for names that are not plain ASCII."""
    if value is not None and value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return value
