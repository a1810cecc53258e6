"""Tools that declare their input JSON Schema themselves: `@app.tool(input_schema={...})`.

The schema is served in `tools/list` as given (every keyword kept: `$schema`, `$defs`, `$anchor`, `allOf`,
`if`/`then`/`else`, ...) and arguments are checked against it by a real JSON Schema validator (the
`jsonschema` package: Draft 2020-12 unless `$schema` names another draft), built once at registration.

The function receives the arguments as keyword arguments:

- with named parameters only, each parameter gets the argument of its name when the call has one (else its
  Python default applies); arguments the schema lets through but that no parameter names are dropped. Every
  property of the schema must have a parameter, and every parameter without a default must be a property.
- with `**kwargs`, it gets every argument of the call (named parameters still take theirs).
- a parameter annotated `Context` gets the call's context, as for typed tools.

A bad call raises `pydantic.ValidationError` from `bind`, so that it becomes the same tool error, through the
same code, as a typed tool's: "Invalid arguments for tool T: address.city: 5 is not of type 'string'".
"""

from __future__ import annotations

import inspect
import itertools
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pydantic_core
from jsonschema import Draft4Validator, Draft6Validator, Draft7Validator, Draft201909Validator, Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import specification_with

from bemcp.schema import Signature, _is_context

_DRAFTS: tuple[type[Validator], ...] = (
    Draft4Validator,
    Draft6Validator,
    Draft7Validator,
    Draft201909Validator,
    Draft202012Validator,
)
# Metaschema URI (without the empty fragment) -> its validator; the MCP default is 2020-12.
_DIALECTS = {str(v.META_SCHEMA.get("$id") or v.META_SCHEMA.get("id")).rstrip("#"): v for v in _DRAFTS}
_MAX_ERRORS = 10  # reported per call: a hostile argument object must not make a huge error text
_MAX_MESSAGE = 300  # jsonschema puts the failing value's repr in its messages
_NOT_SCHEMAS = frozenset({"enum", "const", "default", "examples"})  # values, not subschemas: no $ref to check


@dataclass(frozen=True, slots=True)
class RawSignature(Signature):
    """A `Signature` whose validator is a JSON Schema validator (`validator`) instead of a pydantic model."""

    var_keyword: bool = False  # the function takes **kwargs: it gets every argument

    def bind(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate arguments into keyword arguments; raises pydantic.ValidationError (see the module doc)."""
        errors = list(itertools.islice(self.validator.iter_errors(arguments), _MAX_ERRORS))
        if errors:
            raise _as_pydantic(errors)
        if self.var_keyword:
            return dict(arguments)
        return {name: arguments[name] for name in self.param_names if name in arguments}


def analyse(fn: Callable[..., Any], input_schema: Mapping[str, Any], tool: str) -> RawSignature:
    """Check `input_schema` and `fn` against each other once, at registration; ValueError or TypeError if bad."""
    schema = _json_copy(input_schema, tool)
    if schema.get("type") != "object":
        raise ValueError(f'tool {tool}: input_schema must have "type": "object" (MCP tool arguments are an object)')
    cls = _validator_class(schema, tool)
    try:
        cls.check_schema(schema)
    except SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise ValueError(f"tool {tool}: input_schema is not a valid JSON Schema: {e.message} (at {where})") from e
    _check_refs(schema, cls, tool)
    context_param, names, var_keyword = _parameters(fn, schema, tool)
    return RawSignature(schema, context_param, names, cls(schema), var_keyword)


def _json_copy(input_schema: Mapping[str, Any], tool: str) -> dict[str, Any]:
    """A private, JSON-only copy: what `tools/list` serves, safe from later changes to the caller's dict."""
    if not isinstance(input_schema, Mapping):
        raise ValueError(f"tool {tool}: input_schema must be a JSON object (a dict), got {type(input_schema).__name__}")
    try:
        copied: dict[str, Any] = orjson.loads(orjson.dumps(dict(input_schema)))
    except TypeError as e:  # orjson.JSONEncodeError
        raise ValueError(f"tool {tool}: input_schema is not JSON: {e}") from e
    return copied


def _validator_class(schema: dict[str, Any], tool: str) -> type[Validator]:
    dialect = schema.get("$schema")
    if dialect is None:
        return Draft202012Validator
    cls = _DIALECTS.get(dialect.rstrip("#")) if isinstance(dialect, str) else None
    if cls is None:
        known = ", ".join(sorted(_DIALECTS))
        raise ValueError(f"tool {tool}: input_schema's $schema {dialect!r} is not a known JSON Schema draft ({known})")
    return cls


def _check_refs(schema: dict[str, Any], cls: type[Validator], tool: str) -> None:
    """Every `$ref` must resolve within the schema: the validator never fetches one over the network, so an
    unresolved one would fail each call instead of the registration."""
    spec = specification_with(cls.META_SCHEMA.get("$id") or cls.META_SCHEMA["id"])
    root = spec.create_resource(schema)
    registry: Registry[Any] = Registry().with_resource(root.id() or "", root).crawl()
    resolver = registry.resolver(root.id() or "")
    for ref in _refs(schema, top=True):
        try:
            resolver.lookup(ref)
        except Unresolvable as e:
            raise ValueError(f"tool {tool}: input_schema has a $ref that does not resolve within it: {ref!r}") from e


def _refs(node: Any, top: bool = False) -> Iterator[str]:
    """The `$ref`s resolved against the root's base URI: not those under a nested `$id` (another base)."""
    if isinstance(node, dict):
        if "$id" in node and not top:
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for key, value in node.items():
            if key not in _NOT_SCHEMAS:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _declared(schema: Any, depth: int = 0) -> set[str]:
    """Property names the schema declares: its own `properties` and those of its composition branches."""
    if not isinstance(schema, dict) or depth > 8:
        return set()
    props = schema.get("properties")
    names = set(props) if isinstance(props, dict) else set()
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(key) or ():
            names |= _declared(branch, depth + 1)
    for key in ("if", "then", "else"):
        names |= _declared(schema.get(key), depth + 1)
    return names


def _parameters(fn: Callable[..., Any], schema: dict[str, Any], tool: str) -> tuple[str | None, tuple[str, ...], bool]:
    """The function's context parameter, its argument parameters, and whether it takes **kwargs."""
    hints = typing.get_type_hints(fn)
    context_param = None
    names: list[str] = []
    var_keyword = False
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind is param.VAR_KEYWORD:
            var_keyword = True
        elif param.kind is param.VAR_POSITIONAL or param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"tool {tool}: {fn.__qualname__} gets its arguments by name: no *args or positional-only")
        elif _is_context(hints.get(name)):
            context_param = name
        else:
            names.append(name)
            if param.default is param.empty:
                required.append(name)
    declared = _declared(schema)
    if context_param is not None and context_param in declared:
        raise TypeError(
            f"tool {tool}: property {context_param!r} has the name of {fn.__qualname__}'s Context parameter"
        )
    unknown = [n for n in required if n not in declared]
    if unknown:
        raise TypeError(
            f"tool {tool}: {fn.__qualname__} needs {', '.join(unknown)}, which input_schema does not declare"
        )
    missing = sorted(declared - set(names))
    if missing and not var_keyword:
        raise TypeError(
            f"tool {tool}: input_schema declares {', '.join(missing)}, which {fn.__qualname__} has no parameter "
            "for (add them, or **kwargs)"
        )
    return context_param, tuple(names), var_keyword


def _as_pydantic(errors: list[ValidationError]) -> pydantic_core.ValidationError:
    """jsonschema's errors as a pydantic ValidationError: `loc` is the failing argument's path, `msg` the reason."""
    details: list[pydantic_core.InitErrorDetails] = []
    for e in errors:
        message = e.message if len(e.message) <= _MAX_MESSAGE else e.message[: _MAX_MESSAGE - 3] + "..."
        details.append(
            {
                "type": pydantic_core.PydanticCustomError("json_schema", "{reason}", {"reason": message}),
                "loc": tuple(e.absolute_path),
                "input": e.instance,
            }
        )
    return pydantic_core.ValidationError.from_exception_data("tool_arguments", details)
