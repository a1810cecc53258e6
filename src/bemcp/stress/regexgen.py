"""Strings that match a regular expression (a JSON Schema `pattern`), drawn from a seeded `random.Random`.

It walks the parse tree of Python's own regex parser: literals, classes, categories, alternation, groups,
back-references and repeats. Lookarounds and other rare constructs are not generated; `sample` returns None for
them and the caller falls back to trial and error. Patterns are ECMA 262 in JSON Schema, but the constructs tool
schemas use (`^[a-z0-9_-]{3,16}$`, `\\d{4}-\\d{2}`, `(foo|bar)`) mean the same in both.

A sample is a candidate, not a proof (a class is drawn from printable ASCII, an anchor is not placed): the caller
checks it (`argsgen` with `boundedre`). The work is bounded: each character costs a step of the caller's
`boundedre.Budget`, and a sample longer than `limit` is abandoned.
"""

from __future__ import annotations

import importlib
import random
import string
from typing import Any

from bemcp.stress.boundedre import Budget

_PRINTABLE = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
# Each category exactly, within the printable characters drawn from, so a negated class is drawn right too.
_WORD = frozenset(string.ascii_letters + string.digits + "_")
_CATEGORIES = {
    "CATEGORY_DIGIT": "".join(c for c in _PRINTABLE if c.isdigit()),
    "CATEGORY_NOT_DIGIT": "".join(c for c in _PRINTABLE if not c.isdigit()),
    "CATEGORY_SPACE": "".join(c for c in _PRINTABLE if c.isspace()),
    "CATEGORY_NOT_SPACE": "".join(c for c in _PRINTABLE if not c.isspace()),
    "CATEGORY_WORD": "".join(c for c in _PRINTABLE if c in _WORD),
    "CATEGORY_NOT_WORD": "".join(c for c in _PRINTABLE if c not in _WORD),
}


class _Unsupported(Exception):
    pass


class _Emitter:
    """One sample's state: the budget it spends from and the characters made so far."""

    def __init__(self, rng: random.Random, extra: int, budget: Budget | None, limit: int) -> None:
        self.rng = rng
        self.extra = extra
        self.budget = budget
        self.limit = limit
        self.made = 0
        self.groups: dict[int, str] = {}

    def spend(self, chars: int) -> None:
        self.made += chars
        if self.made > self.limit:
            raise _Unsupported("too long")
        if self.budget is not None:
            self.budget.spend(1 + chars)


def sample(
    pattern: str, rng: random.Random, *, extra: int = 3, budget: Budget | None = None, limit: int = 1 << 20
) -> str | None:
    """A string the pattern probably matches (as `re.search` would), or None when the pattern is beyond this
    sampler or the sample would pass `limit` characters. Raises `BudgetExceeded` when `budget` runs out.

    Unbounded repeats take their minimum plus up to `extra` more: raise it to reach a larger minLength.
    """
    parser: Any = importlib.import_module("re._parser")  # private, but it is the parser `re` itself runs
    if budget is not None:
        budget.spend(len(pattern))
    try:
        tree = parser.parse(pattern)
    except Exception:
        return None
    try:
        return _emit(tree, _Emitter(rng, extra, budget, limit))
    except (_Unsupported, RecursionError):
        return None


def _emit(items: Any, e: _Emitter) -> str:
    rng, extra, groups = e.rng, e.extra, e.groups
    out: list[str] = []
    for op, arg in items:
        name = str(op)
        e.spend(0)
        if name == "LITERAL":
            e.spend(1)
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            e.spend(1)
            out.append(_pick(rng, [c for c in _PRINTABLE if ord(c) != arg]))
        elif name == "ANY":
            e.spend(1)
            out.append(_pick(rng, string.ascii_letters + string.digits))
        elif name == "IN":
            e.spend(1)
            out.append(_from_class(arg, e))
        elif name == "BRANCH":
            out.append(_emit(rng.choice(arg[1]), e))
        elif name == "SUBPATTERN":
            group, _, _, body = arg
            text = _emit(body, e)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = arg
            top = low + extra if str(high) == "MAXREPEAT" else min(int(high), low + extra)
            out.extend(_emit(body, e) for _ in range(rng.randint(low, top)))
        elif name == "GROUPREF":
            text = groups.get(arg, "")
            e.spend(len(text))
            out.append(text)
        elif name == "AT":
            continue  # anchors: the text we build is the whole match
        elif name == "ATOMIC_GROUP":
            out.append(_emit(arg, e))
        else:  # lookarounds, conditionals, ...
            raise _Unsupported(name)
    return "".join(out)


def _from_class(items: Any, e: _Emitter) -> str:
    rng = e.rng
    allowed: set[str] = set()
    negate = False
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            allowed.add(chr(arg))
        elif name == "RANGE":
            lo, hi = arg
            if negate:  # only the printable characters matter to what is drawn
                allowed.update(c for c in _PRINTABLE if lo <= ord(c) <= hi)
            else:
                e.spend(min(hi, lo + 512) - lo)
                allowed.update(chr(c) for c in range(lo, min(hi, lo + 512) + 1))
        elif name == "CATEGORY":
            allowed.update(_CATEGORIES.get(str(arg), ""))
        else:
            raise _Unsupported(name)
    if negate:
        return _pick(rng, [c for c in _PRINTABLE if c not in allowed])
    return _pick(rng, sorted(allowed))


def _pick(rng: random.Random, chars: Any) -> str:
    if not chars:
        raise _Unsupported("an empty character class")
    return str(rng.choice(chars))
