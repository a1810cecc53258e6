"""Argument generation: every generated value validates against its schema, reproducibly and modestly.

`jsonschema` is not installed, so `_errors` below is a small validator written independently of the generator,
one check per keyword the generator claims to support.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bemcp.stress.argsgen import LIMITS, SAMPLES, UnsupportedSchema, arguments_for, check, generate, samples
from bemcp.stress.boundedre import Budget

# -- an independent validator ----------------------------------------------------------------------------


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    raise AssertionError(f"unknown type {kind}")


def _errors(value: Any, schema: Any, root: Any, path: str = "$") -> list[str]:
    if schema is True or schema == {}:
        return []
    assert isinstance(schema, dict), schema
    out: list[str] = []
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].split("/")[1:]:
            node = node[part]
        out += _errors(value, node, root, path)
    for sub in schema.get("allOf", []):
        out += _errors(value, sub, root, path)
    if "anyOf" in schema and not any(not _errors(value, s, root, path) for s in schema["anyOf"]):
        out.append(f"{path}: matches no anyOf branch")
    if "oneOf" in schema and sum(not _errors(value, s, root, path) for s in schema["oneOf"]) != 1:
        out.append(f"{path}: does not match exactly one oneOf branch")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} != const {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in enum")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_type_ok(value, k) for k in kinds):
            return [*out, f"{path}: {value!r} is not of type {kind}"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: {value} > maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{path}: {value} <= exclusiveMinimum {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            out.append(f"{path}: {value} >= exclusiveMaximum {schema['exclusiveMaximum']}")
        if "multipleOf" in schema:
            q = value / schema["multipleOf"]
            if not math.isclose(q, round(q), rel_tol=1e-9, abs_tol=1e-9):
                out.append(f"{path}: {value} is not a multiple of {schema['multipleOf']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: shorter than minLength")
        if len(value) > schema.get("maxLength", math.inf):
            out.append(f"{path}: longer than maxLength")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
        fmt = schema.get("format")
        if fmt in _FORMAT_CHECKS and not _FORMAT_CHECKS[fmt](value):
            out.append(f"{path}: {value!r} is not a {fmt}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: fewer than minItems")
        if len(value) > schema.get("maxItems", math.inf):
            out.append(f"{path}: more than maxItems")
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            out.append(f"{path}: items are not unique")
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            out += _errors(item, sub, root, f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{path}: missing required {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                out += _errors(item, props[name], root, f"{path}.{name}")
            elif extra is False:
                out.append(f"{path}: {name!r} is not allowed")
            else:
                out += _errors(item, extra, root, f"{path}.{name}")
        if len(value) < schema.get("minProperties", 0):
            out.append(f"{path}: fewer than minProperties")
    return out


_FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "date-time": lambda v: re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v) is not None,
    "date": lambda v: re.fullmatch(r"\d{4}-\d\d-\d\d", v) is not None,
    "email": lambda v: re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", v) is not None,
    "uuid": lambda v: (
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", v) is not None
    ),
    "ipv4": lambda v: all(p.isdigit() and 0 <= int(p) <= 255 for p in v.split(".")) and v.count(".") == 3,
    "uri": lambda v: re.match(r"[a-z][a-z0-9+.-]*://", v) is not None,
}


def _assert_valid(schema: Any, seeds: range = range(60)) -> None:
    for seed in seeds:
        value = generate(schema, random.Random(seed))
        errors = _errors(value, schema, schema)
        assert not errors, (seed, value, errors)


# -- per feature ---------------------------------------------------------------------------------------------

FEATURES: dict[str, Any] = {
    "string bounds": {"type": "string", "minLength": 3, "maxLength": 5},
    "empty string only": {"type": "string", "maxLength": 0},
    "string enum": {"type": "string", "enum": ["a", "b", "c"]},
    "formats": {
        "type": "object",
        "properties": {f: {"type": "string", "format": f} for f in _FORMAT_CHECKS},
        "required": list(_FORMAT_CHECKS),
    },
    "pattern": {"type": "string", "pattern": "^[a-z]{3}-[0-9]{2}$"},
    "pattern and length": {"type": "string", "pattern": "^[A-Z]+$", "minLength": 4, "maxLength": 6},
    "long pattern": {"type": "string", "pattern": "^\\d{30}$"},
    "pattern alternatives": {"type": "string", "pattern": "^(get|put)_[a-z0-9_]{3,8}(\\.v\\d)?$", "minLength": 9},
    "pattern search": {"type": "string", "pattern": "[0-9]"},
    "integer bounds": {"type": "integer", "minimum": -3, "maximum": 3},
    "integer exclusive": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3},
    "integer multipleOf": {"type": "integer", "minimum": 7, "maximum": 100, "multipleOf": 5},
    "negative only": {"type": "integer", "maximum": -10},
    "number bounds": {"type": "number", "minimum": 0.5, "maximum": 0.75},
    "number exclusive": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.001},
    "number multipleOf": {"type": "number", "minimum": 0.05, "maximum": 1, "multipleOf": 0.1},
    "draft4 exclusive": {"type": "number", "minimum": 1, "exclusiveMinimum": True, "maximum": 2},
    "boolean and null": {
        "type": "array",
        "prefixItems": [{"type": "boolean"}, {"type": "null"}],
        "minItems": 2,
        "items": False,
    },
    "type list": {"type": ["integer", "string", "null"]},
    "array": {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": 1},
        "minItems": 2,
        "maxItems": 2,
        "uniqueItems": True,
    },
    "nested": {
        "type": "object",
        "properties": {
            "a": {
                "type": "object",
                "properties": {"b": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
                "required": ["b"],
                "additionalProperties": False,
            },
            "opt": {"type": "integer"},
        },
        "required": ["a"],
    },
    "anyOf": {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "integer", "minimum": 100}]},
    "oneOf": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    "allOf": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"properties": {"a": {"minimum": 5}, "b": {"const": 1}}, "required": ["b"]},
        ]
    },
    "const": {"const": {"x": [1, 2]}},
    "defaults": {"type": "object", "properties": {"n": {"type": "integer", "default": 4}}, "required": ["n"]},
    "ref": {
        "$defs": {"P": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}},
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/P"}, "q": {"$ref": "#/definitions/Q"}},
        "definitions": {"Q": {"enum": [1, 2]}},
        "required": ["p", "q"],
    },
    "recursive": {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "v": {"type": "integer"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "minItems": 1},
                },
                "required": ["v"],
            }
        },
        "$ref": "#/$defs/Node",
    },
    "additionalProperties schema": {
        "type": "object",
        "required": ["k"],
        "additionalProperties": {"type": "integer", "maximum": 0},
    },
    "minProperties": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "minProperties": 2,
    },
    "untyped": {"minLength": 2},
    "anything": {},
}


@pytest.mark.parametrize("schema", list(FEATURES.values()), ids=list(FEATURES))
def test_each_feature_generates_valid_values(schema: Any) -> None:
    _assert_valid(schema)


def test_bemcp_workload_schemas_are_modest() -> None:
    sleep = {
        "properties": {"seconds": {"maximum": 3600, "minimum": 0, "type": "number"}},
        "required": ["seconds"],
        "type": "object",
    }
    alloc = {
        "properties": {
            "megabytes": {"exclusiveMinimum": 0, "maximum": 1048576, "type": "number"},
            "hold_seconds": {"default": 0.0, "maximum": 600, "minimum": 0, "type": "number"},
        },
        "required": ["megabytes"],
        "type": "object",
    }
    for seed in range(100):
        rng = random.Random(seed)
        assert 0 <= arguments_for(sleep, rng)["seconds"] <= 1.0  # never an hour-long sleep
        args = arguments_for(alloc, rng)
        assert 0 < args["megabytes"] <= 1.0 and "hold_seconds" not in args  # optional with a default: left out


def test_seeded_and_reproducible() -> None:
    schema = FEATURES["nested"]
    first = [generate(schema, random.Random(s)) for s in range(20)]
    again = [generate(schema, random.Random(s)) for s in range(20)]
    assert first == again
    assert len({repr(v) for v in first}) > 1  # different seeds explore different values


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"$ref": "https://example.com/schema.json"}, "not local"),
        ({"$ref": "#/$defs/Missing"}, "does not resolve"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "maximum < minimum"),
        ({"type": "string", "minLength": 4, "maxLength": 2}, "maxLength < minLength"),
        ({"type": "string", "pattern": "^(?=\\d{40}$)"}, "pattern"),
        ({"type": "string", "pattern": "^a{5}$", "maxLength": 3}, "pattern"),
        ({"type": "object", "required": ["a"], "additionalProperties": False}, "additionalProperties"),
        ({"enum": []}, "empty enum"),
        (False, "accepts nothing"),
        (
            {
                "$defs": {"L": {"type": "object", "properties": {"n": {"$ref": "#/$defs/L"}}, "required": ["n"]}},
                "$ref": "#/$defs/L",
            },
            "too deeply",
        ),
    ],
)
def test_unsatisfiable_schemas_say_why(schema: Any, reason: str) -> None:
    with pytest.raises(UnsupportedSchema, match=re.escape(reason)):
        generate(schema, random.Random(0))
    if isinstance(schema, dict) and "$ref" not in schema:  # refs resolve at the document root: keep them there
        assert reason in (check({"type": "object", "properties": {"x": schema}, "required": ["x"]}) or "")


def test_arguments_for_tools() -> None:
    assert arguments_for(None, random.Random(0)) == {}
    assert arguments_for({"type": "object", "properties": {}}, random.Random(0)) == {}
    with pytest.raises(UnsupportedSchema):
        arguments_for({"type": "string"}, random.Random(0))


# -- property test: random satisfiable schemas -------------------------------------------------------------


def _scalar_schemas() -> st.SearchStrategy[dict[str, Any]]:
    ints = st.integers(-50, 50)

    @st.composite
    def integer(draw: st.DrawFn) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "integer"}
        lo = draw(st.none() | ints)
        if lo is not None:
            s["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = lo
        if draw(st.booleans()):
            gap = draw(st.integers(2, 40))
            s["maximum"] = (lo if lo is not None else 0) + gap
        if draw(st.booleans()):
            s["multipleOf"] = draw(st.integers(1, 3))
            if "maximum" in s:
                s["maximum"] += 6
        return s

    @st.composite
    def number(draw: st.DrawFn) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "number"}
        lo = draw(st.none() | st.floats(-100, 100, allow_nan=False))
        if lo is not None:
            s["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = lo
        if draw(st.booleans()):
            hi = (lo if lo is not None else 0.0) + draw(st.floats(0.01, 50))
            s["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = hi
        return s

    @st.composite
    def string(draw: st.DrawFn) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "string"}
        lo = draw(st.integers(0, 20))
        if draw(st.booleans()):
            s["minLength"] = lo
        if draw(st.booleans()):
            s["maxLength"] = lo + draw(st.integers(0, 10))
        if draw(st.booleans()):
            s["format"] = draw(st.sampled_from(sorted(_FORMAT_CHECKS)))
            s.pop("minLength", None)
            s.pop("maxLength", None)
        return s

    enum = st.lists(st.one_of(st.integers(), st.text(max_size=5), st.booleans()), min_size=1, max_size=4).map(
        lambda v: {"enum": v}
    )
    const = st.one_of(st.integers(), st.text(max_size=5)).map(lambda v: {"const": v})
    simple = st.sampled_from([{"type": "boolean"}, {"type": "null"}, {}])
    return st.one_of(integer(), number(), string(), enum, const, simple)


def _schemas() -> st.SearchStrategy[dict[str, Any]]:
    def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        @st.composite
        def obj(draw: st.DrawFn) -> dict[str, Any]:
            props = draw(st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), children, max_size=4))
            required = [k for k in props if draw(st.booleans())]
            s: dict[str, Any] = {"type": "object", "properties": props, "required": required}
            if draw(st.booleans()):
                s["additionalProperties"] = False
            return s

        @st.composite
        def arr(draw: st.DrawFn) -> dict[str, Any]:
            lo = draw(st.integers(0, 3))
            s: dict[str, Any] = {"type": "array", "items": draw(children), "minItems": lo}
            if draw(st.booleans()):
                s["maxItems"] = lo + draw(st.integers(0, 3))
            return s

        branches = st.lists(children, min_size=1, max_size=3)
        return st.one_of(
            obj(),
            arr(),
            branches.map(lambda b: {"anyOf": b}),
            children.map(lambda c: {"type": ["null", c["type"]]} if isinstance(c.get("type"), str) else c),
        )

    return st.recursive(_scalar_schemas(), extend, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_schemas(), seed=st.integers(0, 2**32))
def test_property_generated_values_validate(schema: dict[str, Any], seed: int) -> None:
    value = generate(schema, random.Random(seed))
    errors = _errors(value, schema, schema)
    assert not errors, (value, errors)


@settings(max_examples=100, deadline=None)
@given(schema=_schemas(), seed=st.integers(0, 2**32))
def test_property_refs_validate(schema: dict[str, Any], seed: int) -> None:
    wrapped = {"$defs": {"T": schema}, "type": "object", "properties": {"t": {"$ref": "#/$defs/T"}}, "required": ["t"]}
    value = arguments_for(wrapped, random.Random(seed))
    assert not _errors(value, wrapped, wrapped)


# -- hostile schemas: bounded work, a reason, never a hang ---------------------------------------------------
# Each limit is a count of steps or bytes, never a time, so these hold on any machine, however busy.


def _one(prop: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"x": prop}, "required": ["x"]}


@pytest.mark.parametrize(
    ("prop", "reason"),
    [
        # No string matches [^\s\S]: the bounded matcher says so in a few steps each, and nothing is found.
        ({"type": "string", "pattern": r"(a+)+[^\s\S]"}, "cannot find a string matching pattern '(a+)+"),
        # Anchors are not placed by the sampler, so it offers long runs of a's, on which (a+)+ backtracks
        # exponentially: `re` would run for hours; the budget stops it.
        ({"type": "string", "pattern": r"(a+)+\b\B"}, "ran out of its budget (more than 1,000,000 steps) checking"),
        ({"type": "string", "minLength": 10**9}, "over 262,144 bytes (a string of minLength 1,000,000,000)"),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 10**9}, "over 262,144 bytes"),
        ({"type": "string", "pattern": "x" * 20_000}, "over 10,000"),
        ({"type": "string", "pattern": "x(?<=a+)"}, "variable width"),
    ],
    ids=["never-matches", "catastrophic", "huge-string", "huge-array", "huge-pattern", "bad-lookbehind"],
)
def test_a_hostile_schema_is_unsupported_with_the_reason(prop: dict[str, Any], reason: str) -> None:
    why = check(_one(prop))
    assert why is not None and reason in why, why


def test_a_combinatorial_schema_runs_out_of_steps() -> None:
    """Twelve nested anyOfs of ten branches that all fail at the leaf: 10**12 tries without a budget."""
    schema: dict[str, Any] = {"type": "string", "minLength": 5, "maxLength": 1}
    for _ in range(11):
        schema = {"anyOf": [schema] * 10}
    why = check(_one(schema))
    assert why is not None and "ran out of its budget" in why, why


def test_a_schema_too_wide_for_the_size_limit() -> None:
    props = {f"p{i:05d}": {"type": "string"} for i in range(50_000)}
    why = check({"type": "object", "properties": props, "required": sorted(props)})
    assert why is not None and "over 262,144 bytes" in why, why


def test_the_budget_is_shared_across_a_runs_tools() -> None:
    shared = Budget(3 * LIMITS.steps)
    costly = _one({"type": "string", "pattern": r"(a+)+\b\B"})
    reasons = []
    for _ in range(4):
        try:
            samples(costly, random.Random(0), shared=shared)
        except UnsupportedSchema as e:
            reasons.append(str(e))
    assert len(reasons) == 4 and all("ran out of its budget" in r for r in reasons[:3])
    assert "the run's budget for generating arguments is spent" in reasons[3]
    with pytest.raises(UnsupportedSchema, match="spent"):  # even a cheap schema: nothing is left
        samples(_one({"type": "integer"}), random.Random(0), shared=shared)


def test_samples_are_a_reproducible_pool_of_valid_arguments() -> None:
    schema = _one({"type": "string", "pattern": "^[a-z]{3}-[0-9]{2}$"})
    pool = samples(schema, random.Random(5))
    assert len(pool) == SAMPLES and pool == samples(schema, random.Random(5))
    assert len({p["x"] for p in pool}) > 1
    assert all(re.fullmatch("[a-z]{3}-[0-9]{2}", p["x"]) for p in pool)
    assert samples(None, random.Random(0)) == [{}]
