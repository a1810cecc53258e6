"""Checks on what a client answers to the server's own requests, before a tool sees it.

An elicitation answer must match the schema the tool asked with (MCP's flat form schema: an object whose
properties are strings, numbers, integers, booleans, or enums of them); a sampling answer must be shaped like a
`CreateMessageResult`; a roots answer like a `ListRootsResult`. `problem` says what is wrong, in words that name
the field, or None when the answer is fine. Both revisions use it: 2025-11-25 answers arrive as responses on the
session, 2026-07-28 answers as `inputResponses` in the retried request.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

_ROLES = ("user", "assistant")
_ACTIONS = ("accept", "decline", "cancel")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S*")


def problem(method: str, params: dict[str, Any], answer: Any) -> str | None:
    """What is wrong with `answer` as the result of the request (`method`, `params`), or None."""
    if not isinstance(answer, dict):
        return f"the result must be an object, not {_kind(answer)}"
    if method == "elicitation/create":
        return _elicitation(params.get("requestedSchema"), answer)
    if method == "sampling/createMessage":
        return _sampling(answer)
    if method == "roots/list":
        return _roots(answer)
    return None


def clean(method: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as a tool gets it: an elicitation that was not accepted carries no content."""
    if method == "elicitation/create" and answer.get("action") != "accept" and "content" in answer:
        return {k: v for k, v in answer.items() if k != "content"}
    return answer


# -- elicitation -------------------------------------------------------------------------------------------------


def _elicitation(schema: Any, answer: dict[str, Any]) -> str | None:
    action = answer.get("action")
    if action not in _ACTIONS:
        return f"action must be one of accept, decline, cancel, not {_show(action)}"
    if action != "accept":
        return None
    content = answer.get("content", {})
    if not isinstance(content, dict):
        return f"content must be an object, not {_kind(content)}"
    if not isinstance(schema, dict):
        return None  # nothing was asked for that could be checked
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    for name in required if isinstance(required, list) else ():
        if isinstance(name, str) and name not in content:
            return f"content.{name} is required by the requested schema but missing"
    for name, value in content.items():
        prop = props.get(name)
        if prop is None:
            if schema.get("additionalProperties") is False:
                return f"content.{name} is not in the requested schema"
            continue
        why = _value(prop, value) if isinstance(prop, dict) else None
        if why is not None:
            return f"content.{name}: {why}"
    return None


def _value(prop: dict[str, Any], value: Any) -> str | None:
    """What is wrong with one field's value for its property schema, or None."""
    kind = prop.get("type")
    if kind == "string" or (kind is None and ("enum" in prop or "oneOf" in prop)):
        return _string(prop, value)
    if kind in ("number", "integer"):
        return _number(prop, value, kind)
    if kind == "boolean":
        return None if isinstance(value, bool) else f"expected a boolean, got {_show(value)}"
    if kind == "array":
        return _array(prop, value)
    return None  # a type the flat schema does not define: nothing to hold the value to


def _string(prop: dict[str, Any], value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected a string, got {_show(value)}"
    allowed = _choices(prop)
    if allowed is not None and value not in allowed:
        return f"{_show(value)} is not one of {', '.join(map(_show, allowed))}"
    low, high = prop.get("minLength"), prop.get("maxLength")
    if isinstance(low, int) and len(value) < low:
        return f"expected at least {low} characters, got {len(value)}"
    if isinstance(high, int) and len(value) > high:
        return f"expected at most {high} characters, got {len(value)}"
    fmt = prop.get("format")
    if isinstance(fmt, str) and not _formatted(fmt, value):
        return f"{_show(value)} is not a valid {fmt}"
    return None


def _formatted(fmt: str, value: str) -> bool:
    try:
        if fmt == "date":
            datetime.date.fromisoformat(value)
        elif fmt == "date-time":
            datetime.datetime.fromisoformat(value)
        elif fmt == "email":
            return _EMAIL.fullmatch(value) is not None
        elif fmt == "uri":
            return _URI.fullmatch(value) is not None
    except ValueError:
        return False
    return True


def _number(prop: dict[str, Any], value: Any, kind: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected {'an integer' if kind == 'integer' else 'a number'}, got {_show(value)}"
    if kind == "integer" and isinstance(value, float) and not value.is_integer():
        return f"expected an integer, got {_show(value)}"
    low, high = prop.get("minimum"), prop.get("maximum")
    if isinstance(low, (int, float)) and value < low:
        return f"{_show(value)} is less than the minimum {low}"
    if isinstance(high, (int, float)) and value > high:
        return f"{_show(value)} is more than the maximum {high}"
    return None


def _array(prop: dict[str, Any], value: Any) -> str | None:
    """A multi-select enum: a list of the items' allowed strings."""
    if not isinstance(value, list):
        return f"expected an array, got {_show(value)}"
    items = prop.get("items")
    allowed = _choices(items) if isinstance(items, dict) else None
    for item in value:
        if not isinstance(item, str):
            return f"expected an array of strings, got an item {_show(item)}"
        if allowed is not None and item not in allowed:
            return f"item {_show(item)} is not one of {', '.join(map(_show, allowed))}"
    low, high = prop.get("minItems"), prop.get("maxItems")
    if isinstance(low, int) and len(value) < low:
        return f"expected at least {low} items, got {len(value)}"
    if isinstance(high, int) and len(value) > high:
        return f"expected at most {high} items, got {len(value)}"
    return None


def _choices(prop: dict[str, Any]) -> list[Any] | None:
    """The allowed values of an enum property (`enum`, or the titled `oneOf`/`anyOf` of `const`s), or None."""
    enum = prop.get("enum")
    if isinstance(enum, list):
        return enum
    options = prop.get("oneOf", prop.get("anyOf"))
    if isinstance(options, list):
        consts = [o["const"] for o in options if isinstance(o, dict) and "const" in o]
        return consts or None
    return None


# -- sampling and roots ------------------------------------------------------------------------------------------


def _sampling(answer: dict[str, Any]) -> str | None:
    role = answer.get("role")
    if role not in _ROLES:
        return f"role must be user or assistant, not {_show(role)}"
    content = answer.get("content")
    blocks = content if isinstance(content, list) else [content]
    if not blocks:
        return "content must not be an empty array"
    for i, block in enumerate(blocks):
        where = f"content[{i}]" if isinstance(content, list) else "content"
        if not isinstance(block, dict):
            return f"{where} must be a content object with a type, not {_kind(block)}"
        kind = block.get("type")
        if not isinstance(kind, str):
            return f"{where}.type must be a string, not {_show(kind)}"
        if kind == "text" and not isinstance(block.get("text"), str):
            return f"{where}.text must be a string for a text block"
        if kind in ("image", "audio"):
            for key in ("data", "mimeType"):
                if not isinstance(block.get(key), str):
                    return f"{where}.{key} must be a string for an {kind} block"
    model = answer.get("model")
    if model is not None and not isinstance(model, str):
        return f"model must be a string, not {_show(model)}"
    return None


def _roots(answer: dict[str, Any]) -> str | None:
    roots = answer.get("roots")
    if not isinstance(roots, list):
        return f"roots must be an array, not {_kind(roots)}"
    for i, root in enumerate(roots):
        if not isinstance(root, dict) or not isinstance(root.get("uri"), str):
            return f"roots[{i}] must be an object with a uri string"
    return None


# -- words -------------------------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _show(value: Any) -> str:
    """A value as the client wrote it, cut short: enough to recognise it in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
