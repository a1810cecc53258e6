"""JSON Schemas and validators derived from Python signatures (pydantic v2).

Built once per registered function; a call costs one pydantic-core
validation of the arguments and, when there is an output schema, one of the
return value.
"""

from __future__ import annotations

import inspect
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
