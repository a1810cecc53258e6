"""The report.json schema (version 1): the validator, the JSON Schema and the field reference of the docs, all from
the models in `bemcp.stress.report.models`, so the three cannot drift apart (tests check the docs are current).

`python -m bemcp.stress.report.schema` prints the field table of docs/report-schema.md; `--json-schema` prints
docs/report.schema.json.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import MISSING, BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from .models import RESULT_FIELDS, SCHEMA_VERSION, Report
from .models_phases import ErrorKind, Phase, PhaseName, Phases

PHASE_NAMES: tuple[str, ...] = get_args(PhaseName)
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)

__all__ = ["ERROR_KINDS", "PHASE_NAMES", "SCHEMA_VERSION", "json_schema", "render_field_table", "validate"]


def _got(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_EXPECTED = {
    "int_type": "integer",
    "int_from_float": "integer",
    "int_parsing": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "string_type": "string",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
}


def _reason(error: ErrorDetails) -> str:
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_got(value)}"
    if kind == "greater_than_equal":
        return f"{value} is below the minimum {ctx['ge']:g}"
    if kind == "less_than_equal":
        return f"{value} is above the maximum {ctx['le']:g}"
    if kind == "finite_number":
        return f"{value} is not a finite number"
    if kind == "literal_error":
        if error["loc"][-1:] == ("[key]",):
            return f"unknown key {value!r} (expected one of {ctx['expected']})"
        return f"{value!r} is not one of {ctx['expected']}"
    return error["msg"]


def _where(error: ErrorDetails, report: Any) -> tuple[str, bool]:
    """The error's place in the report as `a.b[0].c`, and whether pydantic named a union member on the way.

    pydantic's location mixes the report's keys with the names of the union members it tried; walking the report
    along it tells them apart (a member's name is never a key of the scalar it was tried on)."""
    path, node, in_union = "", report, False
    for key in error["loc"]:
        if key == "[key]":
            path = path.rsplit(".", 1)[0]  # a bad key is the map's problem
        elif isinstance(key, int) and isinstance(node, list):
            path, node = f"{path}[{key}]", node[key] if 0 <= key < len(node) else None
        elif isinstance(key, str) and isinstance(node, dict):
            path, node = f"{path}.{key}" if path else key, node.get(key)
        else:
            in_union = True
    if error["type"] == "field_rule":
        field = str((error.get("ctx") or {})["field"])
        path = f"{path}.{field}" if path else field
    return path, in_union


def _join(reasons: list[str]) -> str:
    """One reason for a value that matched no member of a union, as `expected A or B, got C` when it can be."""
    if len(reasons) == 1:
        return reasons[0]
    got = {r.rsplit(", got ", 1)[-1] for r in reasons}
    if all(r.startswith("expected ") and ", got " in r for r in reasons) and len(got) == 1:
        expected = " or ".join(r[len("expected ") :].rsplit(", got ", 1)[0] for r in reasons)
        return f"expected {expected}, got {got.pop()}"
    return "; ".join(reasons)


def _problems(errors: Sequence[ErrorDetails], report: Any) -> list[str]:
    grouped: dict[str, list[str]] = {}
    plain: list[tuple[str, str]] = []
    for error in errors:
        path, in_union = _where(error, report)
        if in_union:
            if path not in grouped:
                plain.append((path, ""))  # keeps the union's place in the order
                grouped[path] = []
            grouped[path].append(_reason(error))
        else:
            plain.append((path, _reason(error)))
    return [f"{path}: {reason or _join(grouped[path])}" for path, reason in plain]


def validate(report: Any, *, require_results: bool = True) -> list[str]:
    """Problems with `report` against schema version 1, as `path: reason`; an empty list means it is valid.

    `require_results=False` accepts a report that does not have its consistency and verdict yet (the checks
    themselves validate the report before those exist).
    """
    if not isinstance(report, dict):
        return [f"the report must be an object, got {_got(report)}"]
    version = report.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        return [f"schema_version: {version} is not supported (this tester reads version {SCHEMA_VERSION})"]
    try:
        Report.model_validate(report)
    except ValidationError as e:
        errors = e.errors(include_url=False)
    else:
        return []
    if not require_results:
        unfinished = {(name,) for name in RESULT_FIELDS}
        errors = [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"]) in unfinished)]
    return _problems(errors, report)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of report.json (published as docs/report.schema.json)."""
    schema = Report.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# ----------------------------------------------------------------------------------------------------------------
# The field reference for docs/report-schema.md, walked from the models' fields and descriptions


@dataclass(frozen=True, slots=True)
class _Row:
    path: str
    type: str
    required: bool
    meaning: str


def _union_args(annotation: Any) -> tuple[Any, ...]:
    return get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)


def _unwrap(annotation: Any) -> tuple[Any, list[Any], str]:
    """A type without Annotated, the constraints Annotated gave it, and its description."""
    if get_origin(annotation) is not Annotated:
        return annotation, [], ""
    inner, *extras = get_args(annotation)
    constraints: list[Any] = []
    description = ""
    for extra in extras:
        if isinstance(extra, FieldInfo):
            constraints.extend(extra.metadata)
            description = extra.description or description
    return inner, constraints, description


def _bound(constraints: list[Any], kind: type[annotated_types.Ge | annotated_types.Le]) -> float | None:
    for c in constraints:
        if isinstance(c, kind):
            bound: Any = c.ge if isinstance(c, annotated_types.Ge) else c.le
            return float(bound)
    return None


def _type_name(annotation: Any, constraints: list[Any]) -> str:
    inner, more, _ = _unwrap(annotation)
    constraints = constraints + more
    low, high = _bound(constraints, annotated_types.Ge), _bound(constraints, annotated_types.Le)
    if inner is bool:
        return "boolean"
    if inner is int:
        return "integer" if low is None else f"integer ≥ {low:g}"
    if inner is float:
        if low is not None and high is not None:
            return f"number in [{low:g}, {high:g}]"
        return "number" if low is None else f"number ≥ {low:g}"
    if inner is str:
        return "string"
    if inner is Any:
        return "any"
    if get_origin(inner) is Literal:
        return " \\| ".join(f'`"{v}"`' for v in get_args(inner))
    if get_origin(inner) is list:
        return "array"
    return "object"  # a model or a map


def _field_type(annotation: Any, constraints: list[Any]) -> str:
    args = _union_args(annotation)
    members = [a for a in args if a is not MISSING and a is not type(None)]
    names = [_type_name(m, constraints) for m in members]
    if type(None) in args:
        names.append("null")
    return " \\| ".join(names)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    args = _union_args(annotation)
    for a in args:
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _container(annotation: Any) -> Any:
    args = _union_args(annotation)
    return next((a for a in args if get_origin(a) in (list, dict)), None)


def _model_rows(model: type[BaseModel], prefix: str, skip: tuple[str, ...] = ()) -> Iterator[_Row]:
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        path = f"{prefix}.{name}" if prefix else name
        yield _Row(path, _field_type(info.annotation, list(info.metadata)), info.is_required(), info.description or "")
        yield from _children(info.annotation, path)


def _children(annotation: Any, path: str) -> Iterator[_Row]:
    model = _model_of(annotation)
    if model is not None:
        if model is not Phases:  # documented once as phases.<phase>, then each phase's results
            yield from _model_rows(model, path)
        return
    container = _container(annotation)
    if container is None:
        return
    if get_origin(container) is list:
        (item,) = get_args(container)
        yield from _item_rows(item, f"{path}[]")
    else:
        key, value = get_args(container)
        yield from _item_rows(value, f"{path}.<{_unwrap(key)[2] or 'name'}>")


def _item_rows(item: Any, path: str) -> Iterator[_Row]:
    inner, constraints, description = _unwrap(item)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        yield _Row(path, "object", True, inner.__doc__ or "")
        yield from _model_rows(inner, path)
    else:
        yield _Row(path, _type_name(inner, constraints), True, description)


def _phase_rows() -> Iterator[_Row]:
    yield _Row("phases.<phase>", "object", False, Phase.__doc__ or "")
    yield from _model_rows(Phase, "phases.<phase>", skip=("results",))
    for name, info in Phases.model_fields.items():
        phase = _model_of(info.annotation)
        assert phase is not None
        results = _model_of(phase.model_fields["results"].annotation)
        assert results is not None
        yield _Row(f"phases.{name}.results", "object", True, results.__doc__ or "")
        yield from _model_rows(results, f"phases.{name}.results")


def _rows() -> Iterator[_Row]:
    for row in _model_rows(Report, ""):
        yield row
        if row.path == "phases":
            yield from _phase_rows()


def render_field_table() -> str:
    """The markdown table of every field (embedded verbatim in docs/report-schema.md)."""
    lines = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for r in _rows():
        lines.append(f"| `{r.path}` | {r.type} | {'yes' if r.required else 'no'} | {r.meaning} |")
    return "\n".join(lines) + "\n"


def render_json_schema() -> str:
    """docs/report.schema.json: the JSON Schema, pretty-printed."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # regenerate the field table of docs/report-schema.md, or docs/report.schema.json
    print(render_json_schema() if "--json-schema" in sys.argv[1:] else render_field_table(), end="")
