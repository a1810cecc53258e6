"""Valid tool arguments from a JSON Schema (a tool's `inputSchema`), reproducibly, from a seeded `random.Random`.

Values are valid but deliberately modest: numbers sit near their lower bound, strings and arrays are short, and
optional properties are mostly left out (or given their default). A stress tester that called an unknown
`wait(seconds)` tool with 3000 or an `export(rows)` tool with 10**9 would measure its own arguments, not the
server.

Supported: `type` (one or a list), object (`properties`, `required`, `additionalProperties`, `minProperties`),
string (`minLength`, `maxLength`, `enum`, `format`, `pattern` by trial), integer and number (`minimum`,
`maximum`, `exclusiveMinimum`/`exclusiveMaximum` in both the 2020-12 and draft-4 forms, `multipleOf`), boolean,
null, array (`items`, `prefixItems`, `minItems`, `maxItems`, `uniqueItems`), `enum`, `const`, `default`,
`anyOf`/`oneOf` (one branch), `allOf` (merged), and local `$ref` (`#/$defs/...`, `#/definitions/...`; a `$ref`
to anywhere else is never followed, as the spec requires). A schema these cannot satisfy raises
`UnsupportedSchema`, and the tool is skipped with that reason. Other keywords (`not`, `if`/`then`/`else`,
`dependentRequired`, `patternProperties`, `contains`, ...) are ignored: a value that breaks one of them is
refused by the server, which the report shows as tool errors of that tool.

The schema is written by the server under test, so generation runs under a `Limits` budget: steps (schema nodes
visited, characters made, and every step of the pattern checks, which use `boundedre` because Python's `re` can
backtrack for hours and cannot be interrupted), a size for one set of arguments, and a wall-clock backstop. A
schema that needs more, such as the pattern `(a+)+[^\\s\\S]` (no string matches it, and `re` takes exponential time
to find that out) or a `minLength` of 10**9, raises `UnsupportedSchema` with the reason, and the tool is skipped
while the run goes on. `samples` makes a tool's pool of argument sets once, under one budget, so the load draws
from it at no cost per call.
"""

from __future__ import annotations

import contextlib
import math
import random
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bemcp.stress import boundedre, regexgen

_MAX_DEPTH = 12
_SPAN_INT = 10  # integers are drawn from [low, low + _SPAN_INT]
_SPAN_NUM = 1.0  # numbers from [low, low + _SPAN_NUM]
_SPAN_LEN = 12  # strings get up to this many characters past minLength
_SPAN_ITEMS = 2  # arrays up to this many items past minItems
_P_OPTIONAL = 0.3  # chance an optional property without a default is included
_PATTERN_TRIES = 200
_NO_LIMIT = 1 << 30
_ALPHABET = string.ascii_letters + string.digits
_MAX_PATTERN = 10_000  # characters: a longer pattern is not worth parsing
SAMPLES: Final = 32  # argument sets per tool in its pool


@dataclass(frozen=True, slots=True)
class Limits:
    """The budget of argument generation for one tool (every sample of its pool together)."""

    steps: int = 1_000_000  # schema nodes, characters made, pattern-check steps: about a second at most
    bytes: int = 256 * 1024  # the size of one set of arguments, as JSON would roughly take it
    seconds: float = 5.0  # a backstop only: the step count is what bounds the work


LIMITS: Final = Limits()


class UnsupportedSchema(ValueError):
    """The schema uses something this generator cannot satisfy (the tool is then skipped, with this reason)."""


class _OverBudget(Exception):
    """Generation must stop (not try another branch): the budget or the size limit ran out."""


class _Budget(boundedre.Budget):
    """`boundedre.Budget` plus a wall-clock backstop, looked at every 4,096 steps."""

    __slots__ = ("_deadline",)

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits.steps)
        self._deadline = time.monotonic() + limits.seconds

    def spend(self, steps: int = 1) -> None:
        before = self.left
        self.left -= steps
        if self.left < 0:
            raise boundedre.BudgetExceeded(f"more than {self.total:,} steps")
        if (before ^ self.left) >> 12 and time.monotonic() > self._deadline:
            raise boundedre.BudgetExceeded(f"more than {self.total:,} steps' worth of time")


def generate(schema: Any, rng: random.Random, *, root: Any = None, limits: Limits = LIMITS) -> Any:
    """One value valid against `schema`. `root` is the document `$ref`s resolve in (default: `schema`)."""
    gen = _Gen(rng, schema if root is None else root, _Budget(limits), limits.bytes)
    return gen.top(schema)


def arguments_for(input_schema: Any, rng: random.Random, *, limits: Limits = LIMITS) -> dict[str, Any]:
    """Tool arguments: an object valid against the tool's `inputSchema` (a missing schema means no arguments)."""
    return samples(input_schema, rng, count=1, limits=limits)[0]


def samples(
    input_schema: Any,
    rng: random.Random,
    *,
    count: int = SAMPLES,
    limits: Limits = LIMITS,
    shared: boundedre.Budget | None = None,
) -> list[dict[str, Any]]:
    """Up to `count` argument sets for a tool, made under one budget: a tool's pool, which the load draws from.

    Raises UnsupportedSchema when not even one can be made; when the budget runs out later, the pool is
    what was made by then. `shared`, when given, is a budget across tools (discovery's, for the whole run):
    this tool's steps come out of it too, and none are left for it once it is spent.
    """
    if input_schema is None or input_schema == {}:
        return [{}]
    steps = limits.steps if shared is None else min(limits.steps, shared.left)
    if steps <= 0:
        raise UnsupportedSchema("the run's budget for generating arguments is spent (a schema of another tool)")
    budget = _Budget(Limits(steps, limits.bytes, limits.seconds))
    gen = _Gen(rng, input_schema, budget, limits.bytes)
    pool: list[dict[str, Any]] = []
    try:
        for _ in range(count):
            try:
                value = gen.top(input_schema)
            except UnsupportedSchema:
                if not pool:
                    raise
                break
            if not isinstance(value, dict):
                raise UnsupportedSchema("the inputSchema does not describe an object")
            pool.append(value)
    finally:
        if shared is not None:
            shared.left -= budget.total - max(budget.left, 0)
    return pool


def check(input_schema: Any, rng: random.Random | None = None, *, limits: Limits = LIMITS) -> str | None:
    """Why no arguments can be generated for this schema, or None when they can."""
    try:
        arguments_for(input_schema, rng or random.Random(0), limits=limits)
    except UnsupportedSchema as e:
        return str(e)
    return None


class _Gen:
    def __init__(self, rng: random.Random, root: Any, budget: _Budget, max_bytes: int) -> None:
        self.rng = rng
        self.root = root
        self.budget = budget
        self.max_bytes = max_bytes
        self.size = 0  # of the value being made
        self._patterns: dict[str, boundedre.Pattern | str] = {}  # compiled, or why not

    def top(self, schema: Any) -> Any:
        """One value, with the budget's and the size limit's failures turned into UnsupportedSchema."""
        self.size = 0
        try:
            return self.value(schema, 0)
        except boundedre.BudgetExceeded as e:
            raise UnsupportedSchema(f"argument generation ran out of its budget ({e}){self._culprit()}") from None
        except _OverBudget as e:
            raise UnsupportedSchema(str(e)) from None

    def _culprit(self) -> str:
        costly = [p for p, c in self._patterns.items() if isinstance(c, boundedre.Pattern)]
        return f" checking pattern {costly[-1][:200]!r}" if costly else ""

    def grow(self, size: int, what: str) -> None:
        """Count `size` bytes into the value being made; past the limit generation stops."""
        self.size += size
        if self.size > self.max_bytes:
            raise _OverBudget(f"the arguments would be over {self.max_bytes:,} bytes ({what})")
        self.budget.spend(1 + size // 64)

    def value(self, schema: Any, depth: int) -> Any:
        self.budget.spend()
        if depth > _MAX_DEPTH:
            raise UnsupportedSchema("the schema nests too deeply (or recurses without an end)")
        if schema is True or schema == {}:
            return self._anything()
        if schema is False:
            raise UnsupportedSchema("a schema that accepts nothing (false)")
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"not a schema: {schema!r}")
        if "$ref" in schema:
            target = self._resolve(schema["$ref"])
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return self.value(_merge(target, rest) if rest else target, depth + 1)
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            parts = schema["allOf"] if isinstance(schema["allOf"], list) else []
            for part in parts:
                part = self._deref(part, depth)
                self.budget.spend(1 + (len(part) if isinstance(part, dict) else 0))
                merged = _merge(merged, part)
            return self.value(merged, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self._branch(schema, key, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            options = schema["enum"]
            if not isinstance(options, list) or not options:
                raise UnsupportedSchema("an empty enum")
            return self.rng.choice(options)
        kind = self._type(schema)
        make = _MAKERS.get(kind)
        if make is None:
            raise UnsupportedSchema(f"unknown type {kind!r}")
        return make(self, schema, depth)

    # -- composition --------------------------------------------------------------------------------

    def _resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UnsupportedSchema(f"$ref {ref!r} is not local to the schema (never followed)")
        node = self.root
        parts = ref[1:].split("/")[1:] if ref != "#" else []
        self.budget.spend(1 + len(parts))
        for part in parts:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise UnsupportedSchema(f"$ref {ref!r} does not resolve")
        return node

    def _deref(self, schema: Any, depth: int) -> Any:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < _MAX_DEPTH:
            self.budget.spend(len(schema))
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            target = self._resolve(schema["$ref"])
            schema = _merge(target, rest) if rest else target
            seen += 1
        return schema

    def _branch(self, schema: dict[str, Any], key: str, depth: int) -> Any:
        branches = schema[key]
        if not isinstance(branches, list) or not branches:
            raise UnsupportedSchema(f"an empty {key}")
        base = {k: v for k, v in schema.items() if k != key}
        order = list(branches)
        self.rng.shuffle(order)
        # Deep in a recursive schema, prefer branches that end: no $ref, and not objects or arrays.
        if depth > _MAX_DEPTH // 2:
            order.sort(key=_weight)
        last: UnsupportedSchema | None = None
        for branch in order:
            try:
                return self.value(_merge(base, branch) if base else branch, depth + 1)
            except UnsupportedSchema as e:
                last = e
        raise last or UnsupportedSchema(f"no {key} branch can be satisfied")

    # -- types --------------------------------------------------------------------------------------

    def _type(self, schema: dict[str, Any]) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            usable = [k for k in kind if isinstance(k, str)]
            if not usable:
                raise UnsupportedSchema("an empty type list")
            # Prefer a real value over null, so optional parameters still get exercised.
            non_null = [k for k in usable if k != "null"]
            return self.rng.choice(non_null or usable)
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema or "minItems" in schema:
            return "array"
        if any(k in schema for k in ("minLength", "maxLength", "pattern", "format")):
            return "string"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
            return "number"
        if "default" in schema:
            return _json_type(schema["default"])
        return "string"

    def _anything(self) -> Any:
        self.grow(7, "a value")
        return "x" + "".join(self.rng.choices(_ALPHABET, k=4))

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties") or {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        if not isinstance(props, dict):
            raise UnsupportedSchema("properties is not an object")
        out: dict[str, Any] = {}
        self.grow(2, "an object")
        for name, sub in props.items():
            self.grow(len(name) + 4, f"property {name[:40]!r}")
            if name in required:
                out[name] = self._property(sub, depth)
            elif depth <= _MAX_DEPTH // 2 and not _has_default(sub) and self.rng.random() < _P_OPTIONAL:
                with contextlib.suppress(UnsupportedSchema):  # optional: leaving it out is always valid
                    out[name] = self.value(sub, depth + 1)
        extra = schema.get("additionalProperties", True)
        for name in required:
            if name not in out:
                if extra is False:
                    raise UnsupportedSchema(f"required property {name!r} is not allowed by additionalProperties")
                out[name] = self.value(extra if isinstance(extra, dict) else {"type": "string"}, depth + 1)
        wanted = schema.get("minProperties", 0)
        if isinstance(wanted, int) and len(out) < wanted:
            for name, sub in props.items():
                if len(out) >= wanted:
                    break
                if name not in out:
                    out[name] = self._property(sub, depth)
            i = 0
            while len(out) < wanted:
                self.grow(10, "minProperties")
                if extra is False:
                    raise UnsupportedSchema("minProperties cannot be met")
                out[f"extra{i}"] = self.value(extra if isinstance(extra, dict) else {"type": "string"}, depth + 1)
                i += 1
        return out

    def _property(self, sub: Any, depth: int) -> Any:
        if isinstance(sub, dict) and "default" in sub and self.rng.random() < 0.5:
            return sub["default"]
        return self.value(sub, depth + 1)

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        low = _int(schema.get("minItems"), 0)
        high = _int(schema.get("maxItems"), low + _SPAN_ITEMS)
        if high < low:
            raise UnsupportedSchema("maxItems < minItems")
        if depth > _MAX_DEPTH // 2:
            high = low
        count = self.rng.randint(low, min(high, low + _SPAN_ITEMS))
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):  # draft-4 tuple form
            prefix, items = items, schema.get("additionalItems", True)
        out: list[Any] = []
        prefix = prefix if isinstance(prefix, list) else []
        unique = schema.get("uniqueItems") is True
        self.grow(2, "an array")
        for i in range(count):
            self.grow(2, "minItems")
            sub = prefix[i] if i < len(prefix) else items
            if sub is False:
                if len(out) < low:
                    raise UnsupportedSchema("minItems needs more items than the schema allows")
                break
            for _ in range(20 if unique else 1):
                value = self.value(sub, depth + 1)
                if not unique or value not in out:
                    break
            else:
                if len(out) >= low:
                    break
                raise UnsupportedSchema("cannot make enough unique items")
            out.append(value)
        return out

    def _string(self, schema: dict[str, Any], depth: int) -> str:
        low = _int(schema.get("minLength"), 0)
        high = _int(schema.get("maxLength"), _NO_LIMIT)  # the limit of what is valid; we make short ones
        if high < low:
            raise UnsupportedSchema("maxLength < minLength")
        pattern = schema.get("pattern")
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            text = _FORMATS[fmt](self.rng)
            if low <= len(text) <= high and (not isinstance(pattern, str) or self._search(pattern, text)):
                self.grow(len(text) + 2, "a string")
                return text
        length = self.rng.randint(max(low, min(1, high)), min(high, low + _SPAN_LEN))
        self.grow(length + 2, f"a string of minLength {low:,}")
        text = "".join(self.rng.choices(_ALPHABET, k=length))
        if not isinstance(pattern, str):
            return text
        return self._pattern(pattern, low, high, text)

    def _compiled(self, pattern: str) -> boundedre.Pattern:
        known = self._patterns.get(pattern)
        if known is None:
            if len(pattern) > _MAX_PATTERN:
                known = f"pattern of {len(pattern):,} characters (over {_MAX_PATTERN:,})"
            else:
                self.budget.spend(len(pattern))
                try:
                    known = boundedre.compile(pattern)
                except boundedre.PatternError as e:
                    known = f"pattern {pattern[:200]!r}: {e}"
            self._patterns[pattern] = known
        if isinstance(known, str):
            raise UnsupportedSchema(known)
        return known

    def _search(self, pattern: str, text: str) -> bool:
        """Whether `pattern` matches in `text`, checked within the budget (never with `re`: see boundedre)."""
        return self._compiled(pattern).search(text, self.budget)

    def _pattern(self, pattern: str, low: int, high: int, first: str) -> str:
        regex = self._compiled(pattern)
        for text in (first, *_PATTERN_SEEDS):
            if low <= len(text) <= high and regex.search(text, self.budget):
                return text
        # Build from the pattern itself, growing unbounded repeats until minLength is reached.
        for extra in (3, 3, 3, 8, 8, 24, 64, 256):
            sampled = regexgen.sample(pattern, self.rng, extra=extra, budget=self.budget, limit=self.max_bytes)
            if sampled is None:
                break
            if low <= len(sampled) <= high and regex.search(sampled, self.budget):
                self.grow(len(sampled), f"a string for pattern {pattern[:40]!r}")
                return sampled
        pools = (_ALPHABET, string.digits, string.ascii_lowercase, string.ascii_uppercase, "abc-_.@/:")
        for _ in range(_PATTERN_TRIES):
            length = self.rng.randint(max(low, 1 if high else 0), max(low, min(high, low + 8)))
            self.budget.spend(length)
            text = "".join(self.rng.choices(self.rng.choice(pools), k=length))
            if regex.search(text, self.budget):
                self.grow(len(text), f"a string for pattern {pattern[:40]!r}")
                return text
        raise UnsupportedSchema(f"cannot find a string matching pattern {pattern[:200]!r}")

    def _integer(self, schema: dict[str, Any], depth: int) -> int:
        self.grow(8, "an integer")
        low, high = _bounds(schema, integer=True)
        step = schema.get("multipleOf")
        if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
            if float(step).is_integer():
                step = int(step)
                k_low = -((-int(low)) // step) if low is not None else 0
                k_high = int(high) // step if high is not None else k_low + _SPAN_INT
                if low is None and high is not None:
                    k_low = min(0, k_high)
                if k_high < k_low:
                    raise UnsupportedSchema("no multiple of multipleOf within the bounds")
                return int(self.rng.randint(k_low, min(k_high, k_low + _SPAN_INT)) * step)
            raise UnsupportedSchema("an integer with a fractional multipleOf")
        lo = int(low) if low is not None else (0 if high is None or high >= 0 else int(high) - _SPAN_INT)
        hi = int(high) if high is not None else lo + _SPAN_INT
        if hi < lo:
            raise UnsupportedSchema("maximum < minimum")
        return self.rng.randint(lo, min(hi, lo + _SPAN_INT))

    def _number(self, schema: dict[str, Any], depth: int) -> float | int:
        self.grow(8, "a number")
        step = schema.get("multipleOf")
        if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
            low, high = _bounds(schema, integer=False)
            excl_low, excl_high = _exclusive(schema)
            k_low = _ceil_div(low, step) if low is not None else 0
            k_high = _floor_div(high, step) if high is not None else k_low + _SPAN_INT
            if low is not None and excl_low and k_low * step <= low:
                k_low += 1
            if high is not None and excl_high and k_high * step >= high:
                k_high -= 1
            if low is None and high is not None:
                k_low = min(0, k_high)
            if k_high < k_low:
                raise UnsupportedSchema("no multiple of multipleOf within the bounds")
            k = self.rng.randint(k_low, min(k_high, k_low + _SPAN_INT))
            # An integer multiple stays exact; a float one is rounded to the step's own precision.
            return k * step if isinstance(step, int) else round(k * step, _decimals(step))
        low, high = _bounds(schema, integer=False)
        excl_low, excl_high = _exclusive(schema)
        lo = low if low is not None else (0.0 if high is None or high >= 0 else high - _SPAN_NUM)
        hi = high if high is not None else lo + _SPAN_NUM
        if hi < lo or (hi == lo and (excl_low or excl_high)):
            raise UnsupportedSchema("maximum < minimum")
        hi = min(hi, lo + _SPAN_NUM)
        for _ in range(10):
            value = round(self.rng.uniform(lo, hi), 3)
            if (value > lo if excl_low else value >= lo) and (value < hi if excl_high and hi == high else value <= hi):
                return value
        mid = (lo + hi) / 2
        if (mid > lo or not excl_low) and (mid < hi or not excl_high):
            return mid
        raise UnsupportedSchema("no number fits the exclusive bounds")

    def _boolean(self, schema: dict[str, Any], depth: int) -> bool:
        self.grow(5, "a boolean")
        return self.rng.random() < 0.5

    def _null(self, schema: dict[str, Any], depth: int) -> None:
        self.grow(4, "null")
        return None


_MAKERS: dict[str, Callable[[_Gen, dict[str, Any], int], Any]] = {
    "object": _Gen._object,
    "array": _Gen._array,
    "string": _Gen._string,
    "integer": _Gen._integer,
    "number": _Gen._number,
    "boolean": _Gen._boolean,
    "null": _Gen._null,
}

_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "date-time": lambda r: f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:00:00Z",
    "date": lambda r: f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00Z",
    "duration": lambda r: f"PT{r.randint(1, 59)}S",
    "email": lambda r: f"user{r.randint(1, 999)}@example.com",
    "idn-email": lambda r: f"user{r.randint(1, 999)}@example.com",
    "hostname": lambda r: f"host{r.randint(1, 999)}.example.com",
    "idn-hostname": lambda r: f"host{r.randint(1, 999)}.example.com",
    "ipv4": lambda r: f"192.0.2.{r.randint(1, 254)}",
    "ipv6": lambda r: f"2001:db8::{r.randint(1, 0xFFFF):x}",
    "uri": lambda r: f"https://example.com/item/{r.randint(1, 999)}",
    "url": lambda r: f"https://example.com/item/{r.randint(1, 999)}",
    "iri": lambda r: f"https://example.com/item/{r.randint(1, 999)}",
    "uri-reference": lambda r: f"/item/{r.randint(1, 999)}",
    "iri-reference": lambda r: f"/item/{r.randint(1, 999)}",
    "uri-template": lambda r: "https://example.com/item/{id}",
    "uuid": lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)),
    "json-pointer": lambda r: f"/a/{r.randint(0, 9)}",
    "relative-json-pointer": lambda r: f"{r.randint(0, 3)}/a",
    "regex": lambda r: "^[a-z]+$",
}
_PATTERN_SEEDS = ("a", "abc", "test", "0", "123", "abc123", "A1", "x_y", "a-b", "user@example.com", "2024-01-02")


def _weight(branch: Any) -> int:
    if not isinstance(branch, dict):
        return 1
    if "$ref" in branch:
        return 3
    kind = branch.get("type")
    return 2 if kind in ("object", "array") or "properties" in branch or "items" in branch else 0


def _has_default(schema: Any) -> bool:
    return isinstance(schema, dict) and "default" in schema


def _merge(a: Any, b: Any) -> dict[str, Any]:
    """A schema satisfying both (as far as this generator's keywords go): used for allOf and $ref siblings."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        if a is False or b is False:
            raise UnsupportedSchema("allOf with false")
        return dict(a if isinstance(a, dict) else b if isinstance(b, dict) else {})
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
        elif key == "properties":
            props = dict(out[key])
            for name, sub in value.items():
                props[name] = _merge(props[name], sub) if name in props else sub
            out[key] = props
        elif key == "required":
            out[key] = list(dict.fromkeys([*out[key], *value]))
        elif key in ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"):
            out[key] = max(out[key], value) if not isinstance(value, bool) else value
        elif key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"):
            out[key] = min(out[key], value) if not isinstance(value, bool) else value
        elif key == "enum":
            out[key] = [v for v in out[key] if v in value]
        elif key == "type":
            mine = out[key] if isinstance(out[key], list) else [out[key]]
            theirs = value if isinstance(value, list) else [value]
            both = [t for t in mine if t in theirs or (t == "integer" and "number" in theirs)]
            both += [t for t in theirs if t == "integer" and "number" in mine and t not in both]
            if not both:
                raise UnsupportedSchema("allOf with incompatible types")
            out[key] = both if len(both) > 1 else both[0]
        else:
            out[key] = value
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    return "string"


def _int(value: Any, fallback: int) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else fallback


def _exclusive(schema: dict[str, Any]) -> tuple[bool, bool]:
    """Whether the effective lower/upper bounds are exclusive."""
    lo, hi = _bounds_raw(schema)
    return lo[1], hi[1]


def _bounds_raw(schema: dict[str, Any]) -> tuple[tuple[float | None, bool], tuple[float | None, bool]]:
    def num(key: str) -> float | None:
        v = schema.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    low, high = num("minimum"), num("maximum")
    low_x = high_x = False
    ex_lo, ex_hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if ex_lo is True:  # draft 4: a flag on minimum
        low_x = low is not None
    elif (v := num("exclusiveMinimum")) is not None and (low is None or v >= low):
        low, low_x = v, True
    if ex_hi is True:
        high_x = high is not None
    elif (v := num("exclusiveMaximum")) is not None and (high is None or v <= high):
        high, high_x = v, True
    return (low, low_x), (high, high_x)


def _bounds(schema: dict[str, Any], *, integer: bool) -> tuple[float | None, float | None]:
    """Inclusive bounds; for integers an exclusive bound moves to the next integer inside."""
    (low, low_x), (high, high_x) = _bounds_raw(schema)
    if not integer:
        return low, high
    if low is not None:
        low = math.floor(low) + 1 if low_x and float(low).is_integer() else math.ceil(low)
    if high is not None:
        high = math.ceil(high) - 1 if high_x and float(high).is_integer() else math.floor(high)
    return low, high


def _ceil_div(value: float, step: float) -> int:
    return math.ceil(value / step - 1e-9)


def _floor_div(value: float, step: float) -> int:
    return math.floor(value / step + 1e-9)


def _decimals(step: float) -> int:
    text = repr(float(step))
    if "e-" in text:
        return int(text.split("e-")[1]) + 2
    return len(text.split(".")[1]) if "." in text else 0
