"""Content blocks a tool, resource or prompt can return.

Each is a thin typed wrapper around the wire dict; `to_wire()` is what goes
out. Tools may also return plain values (text, JSON) and BE-MCP wraps them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic

from bemcp.protocol import jsonrpc

_ANY = pydantic.TypeAdapter(Any)


def _b64(data: bytes | str) -> str:
    return data if isinstance(data, str) else base64.b64encode(data).decode("ascii")


class ContentBlock:
    """Base of the content block types."""

    def to_wire(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(slots=True)
class Text(ContentBlock):
    text: str
    annotations: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "text", "text": self.text}
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(slots=True)
class Image(ContentBlock):
    """Image data; `data` is raw bytes or an already base64-encoded string."""

    data: bytes | str
    mime_type: str = "image/png"
    annotations: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "image", "data": _b64(self.data), "mimeType": self.mime_type}
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(slots=True)
class Audio(ContentBlock):
    data: bytes | str
    mime_type: str = "audio/wav"
    annotations: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "audio", "data": _b64(self.data), "mimeType": self.mime_type}
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(slots=True)
class ResourceLink(ContentBlock):
    uri: str
    name: str
    mime_type: str | None = None
    description: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "resource_link", "uri": self.uri, "name": self.name}
        if self.mime_type:
            out["mimeType"] = self.mime_type
        if self.description:
            out["description"] = self.description
        return out


@dataclass(slots=True)
class EmbeddedResource(ContentBlock):
    """A resource's contents inline: give `text` or `blob` (bytes or base64)."""

    uri: str
    text: str | None = None
    blob: bytes | str | None = None
    mime_type: str | None = None
    annotations: dict[str, Any] | None = None

    def contents(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri}
        if self.mime_type:
            out["mimeType"] = self.mime_type
        if self.blob is not None:
            out["blob"] = _b64(self.blob)
        else:
            out["text"] = self.text or ""
        return out

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "resource", "resource": self.contents()}
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(slots=True)
class ToolResult:
    """Full control over a tool's result."""

    content: list[ContentBlock | dict[str, Any]] = field(default_factory=list)
    structured: dict[str, Any] | None = None
    is_error: bool = False
    meta: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "content": [c.to_wire() if isinstance(c, ContentBlock) else c for c in self.content],
        }
        if self.structured is not None:
            out["structuredContent"] = self.structured
        if self.is_error:
            out["isError"] = True
        if self.meta:
            out["_meta"] = self.meta
        return out


@dataclass(slots=True)
class PromptMessage:
    role: str
    content: ContentBlock | dict[str, Any] | str

    def to_wire(self) -> dict[str, Any]:
        c = self.content
        body = Text(c).to_wire() if isinstance(c, str) else c.to_wire() if isinstance(c, ContentBlock) else c
        return {"role": self.role, "content": body}


# -- shaping: what a function returned, as wire content --------------------------------------------------------


def _json(value: Any) -> str:
    return jsonrpc.dumps(_ANY.dump_python(value, mode="json")).decode()


def content_list(value: Any) -> list[dict[str, Any]]:
    """A tool's plain return value as content blocks: text as text, blocks as themselves, data as JSON text."""
    if value is None:
        return []
    if isinstance(value, ContentBlock):
        return [value.to_wire()]
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return [value]
    if isinstance(value, (list, tuple)):
        out: list[dict[str, Any]] = []
        for item in value:
            out.extend(content_list(item))
        return out
    return [{"type": "text", "text": _json(value)}]


def json_text(shown: Any) -> list[dict[str, Any]]:
    """Structured output's text twin. orjson.dumps, not jsonrpc.dumps: a value JSON cannot carry raises here
    (TypeError), where the call becomes a tool error, rather than being turned into an error answer."""
    text = shown if isinstance(shown, str) else orjson.dumps(shown, option=orjson.OPT_NON_STR_KEYS).decode()
    return [{"type": "text", "text": text}]


def resource_contents(uri: str, mime: str | None, value: Any) -> list[dict[str, Any]]:
    """What a resource function returned, as `contents`: text, a blob, embedded resources, or data as JSON."""
    if isinstance(value, str):
        return [{"uri": uri, "mimeType": mime or "text/plain", "text": value}]
    if isinstance(value, (bytes, bytearray)):
        return [EmbeddedResource(uri, blob=bytes(value), mime_type=mime or "application/octet-stream").contents()]
    if isinstance(value, EmbeddedResource):
        return [value.contents()]
    if isinstance(value, dict) and isinstance(value.get("uri"), str) and ("text" in value or "blob" in value):
        return [value]  # already a wire contents object; any other dict is data, sent as JSON below
    if isinstance(value, (list, tuple)):
        out: list[dict[str, Any]] = []
        for item in value:
            out.extend(resource_contents(uri, mime, item))
        return out
    return [{"uri": uri, "mimeType": mime or "application/json", "text": _json(value)}]


def prompt_messages(value: Any) -> list[dict[str, Any]]:
    """What a prompt function returned, as `messages`: a string is one user message."""
    if isinstance(value, str):
        return [{"role": "user", "content": {"type": "text", "text": value}}]
    if isinstance(value, PromptMessage):
        return [value.to_wire()]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, (list, tuple)):
        out: list[dict[str, Any]] = []
        for item in value:
            out.extend(prompt_messages(item))
        return out
    raise TypeError(f"a prompt returned {type(value).__name__}; expected str, PromptMessage or a list of them")
