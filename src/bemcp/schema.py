"""JSON Schemas and validators derived from Python signatures (pydantic v2).

Built once per registered function; a call costs one pydantic-core
validation of the arguments and, when there is an output schema, one of the
return value.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import ConfigDict, TypeAdapter

from bemcp.content import ContentBlock, ToolResult


@dataclass(frozen=True, slots=True)
class Signature:
    """What a call needs to know about the function it calls."""

    input_schema: dict[str, Any]
    context_param: str | None
    param_names: tuple[str, ...]
    validator: Any  # pydantic model class, or None when there are no parameters

    def bind(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate arguments into keyword arguments; raises pydantic.ValidationError."""
        if self.validator is None:
            return {}
        model = self.validator.model_validate(arguments)
        return {name: getattr(model, name) for name in self.param_names}


def _is_context(annotation: Any) -> bool:
    from bemcp.context import Context

    return inspect.isclass(annotation) and issubclass(annotation, Context)


def analyse(fn: Callable[..., Any], model_name: str) -> Signature:
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    context_param = None
    for name, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{fn.__qualname__}: *args and **kwargs cannot be described by a schema")
        annotation = hints.get(name, Any)
        if _is_context(annotation):
            context_param = name
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (annotation, default)
    if not fields:
        return Signature({"type": "object", "properties": {}}, context_param, (), None)
    model = pydantic.create_model(
        model_name,
        __config__=ConfigDict(extra="ignore", arbitrary_types_allowed=False),
        **fields,
    )
    schema = model.model_json_schema()
    schema.setdefault("properties", {})
    return Signature(schema, context_param, tuple(fields), model)


_CONTENT_TYPES: tuple[type, ...] = (ContentBlock, ToolResult)


def _returns_content(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is not None:
        args = typing.get_args(annotation)
        return any(_returns_content(a) for a in args)
    return inspect.isclass(annotation) and issubclass(annotation, _CONTENT_TYPES)


@dataclass(frozen=True, slots=True)
class Output:
    """How a return value becomes `structuredContent`."""

    schema: dict[str, Any]
    wrapped: bool  # non-object values travel as {"result": value}
    adapter: TypeAdapter[Any]

    def structure(self, value: Any) -> dict[str, Any]:
        """Validate and dump a return value; raises pydantic.ValidationError."""
        checked = self.adapter.validate_python(value)
        dumped = self.adapter.dump_python(checked, mode="json")
        return {"result": dumped} if self.wrapped else dumped


def output_for(fn: Callable[..., Any]) -> Output | None:
    hints = typing.get_type_hints(fn, include_extras=True)
    if "return" not in hints:
        return None
    annotation = hints["return"]
    if annotation in (None, type(None), Any, object) or _returns_content(annotation):
        return None
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    schema = adapter.json_schema(mode="serialization")
    if schema.get("type") == "object":
        return Output(schema, False, adapter)
    wrapped = {"type": "object", "properties": {"result": schema}, "required": ["result"]}
    if "$defs" in schema:
        wrapped["$defs"] = schema.pop("$defs")
    return Output(wrapped, True, adapter)


# -- x-mcp-header (SEP-2243): arguments a client mirrors into `Mcp-Param-<Name>` HTTP headers -----------------

# RFC 9110 token characters: what a header field name may hold.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_TYPES = frozenset({"string", "integer", "boolean", "null"})
_PY_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}


@dataclass(frozen=True, slots=True)
class ParamHeader:
    """An argument a client mirrors into an `Mcp-Param-<header>` header on a 2026-07-28 `tools/call`."""

    arg: str
    header: str  # as the schema spells it
    key: bytes  # the header's name as ASGI hands it over: lowercase bytes


def param_headers(input_schema: dict[str, Any], tool: str) -> tuple[ParamHeader, ...]:
    """The tool's `x-mcp-header` arguments (top-level properties), found once at registration.

    ValueError for an annotation the spec tells clients to reject (the tool would be unusable): a name that is
    not an HTTP token, one used twice (names ignore case), or one on a type other than string, integer, boolean.
    """
    props = input_schema.get("properties")
    if not isinstance(props, dict):
        return ()
    found: dict[bytes, ParamHeader] = {}
    for arg, prop in props.items():
        if not isinstance(prop, dict) or "x-mcp-header" not in prop:
            continue
        header = prop["x-mcp-header"]
        if not isinstance(header, str) or _TOKEN.fullmatch(header) is None:
            raise ValueError(
                f"tool {tool}: the x-mcp-header of {arg!r} must be a header name (ASCII letters, digits and "
                f"!#$%&'*+-.^_`|~), got {header!r}"
            )
        types = _json_types(prop, input_schema, 0)
        if not types - {"null"} or not types <= _HEADER_TYPES:
            shown = ", ".join(sorted(types - {"?"}) or ["not typed"])
            raise ValueError(
                f"tool {tool}: x-mcp-header {header!r} is on {arg!r}, which must be a string, integer or boolean "
                f"(got {shown})"
            )
        key = b"mcp-param-" + header.lower().encode("ascii")
        if key in found:
            raise ValueError(
                f"tool {tool}: x-mcp-header {header!r} of {arg!r} repeats that of {found[key].arg!r} "
                "(header names ignore case)"
            )
        found[key] = ParamHeader(arg, header, key)
    return tuple(found.values())


def _json_types(prop: Any, root: dict[str, Any], depth: int) -> set[str]:
    """The JSON types a property's schema admits, as far as `type`, `enum`/`const`, `anyOf`/`oneOf` and a local
    `$ref` tell; "?" stands for anything they do not pin down."""
    if not isinstance(prop, dict) or depth > 8:
        return {"?"}
    kind = prop.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k if isinstance(k, str) else "?" for k in kind}
    if "const" in prop:
        return {_PY_TYPES.get(type(prop["const"]), "?")}
    if isinstance(prop.get("enum"), list):
        return {_PY_TYPES.get(type(v), "?") for v in prop["enum"]}
    for key in ("anyOf", "oneOf"):
        branches = prop.get(key)
        if isinstance(branches, list) and branches:
            return set().union(*(_json_types(b, root, depth + 1) for b in branches))
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        return _json_types(target, root, depth + 1)
    return {"?"}
