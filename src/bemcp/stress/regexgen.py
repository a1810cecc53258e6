"""Strings that match a regular expression (a JSON Schema `pattern`), drawn from a seeded `random.Random`.

It walks the parse tree of Python's own regex parser: literals, classes, categories, alternation, groups,
back-references and repeats. Lookarounds and other rare constructs are not generated; `sample` returns None for
them and the caller falls back to trial and error. Patterns are ECMA 262 in JSON Schema, but the constructs tool
schemas use (`^[a-z0-9_-]{3,16}$`, `\\d{4}-\\d{2}`, `(foo|bar)`) mean the same in both.
"""

from __future__ import annotations

import importlib
import random
import string
from typing import Any

_PRINTABLE = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
_CATEGORIES = {
    "CATEGORY_DIGIT": string.digits,
    "CATEGORY_NOT_DIGIT": string.ascii_letters + "_-",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": string.ascii_letters + string.digits,
    "CATEGORY_WORD": string.ascii_letters + string.digits + "_",
    "CATEGORY_NOT_WORD": " -.,:;!/@",
}


class _Unsupported(Exception):
    pass


def sample(pattern: str, rng: random.Random, *, extra: int = 3) -> str | None:
    """A string the pattern matches (as `re.search` would), or None when the pattern is beyond this sampler.

    Unbounded repeats take their minimum plus up to `extra` more: raise it to reach a larger minLength.
    """
    parser: Any = importlib.import_module("re._parser")  # private, but it is the parser `re` itself runs
    try:
        tree = parser.parse(pattern)
    except Exception:
        return None
    groups: dict[int, str] = {}
    try:
        return _emit(tree, rng, extra, groups)
    except _Unsupported:
        return None


def _emit(items: Any, rng: random.Random, extra: int, groups: dict[int, str]) -> str:
    out: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append(_pick(rng, [c for c in _PRINTABLE if ord(c) != arg]))
        elif name == "ANY":
            out.append(_pick(rng, string.ascii_letters + string.digits))
        elif name == "IN":
            out.append(_from_class(arg, rng))
        elif name == "BRANCH":
            out.append(_emit(rng.choice(arg[1]), rng, extra, groups))
        elif name == "SUBPATTERN":
            group, _, _, body = arg
            text = _emit(body, rng, extra, groups)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = arg
            top = low + extra if str(high) == "MAXREPEAT" else min(int(high), low + extra)
            out.extend(_emit(body, rng, extra, groups) for _ in range(rng.randint(low, top)))
        elif name == "GROUPREF":
            out.append(groups.get(arg, ""))
        elif name == "AT":
            continue  # anchors: the text we build is the whole match
        elif name == "ATOMIC_GROUP":
            out.append(_emit(arg, rng, extra, groups))
        else:  # lookarounds, conditionals, ...
            raise _Unsupported(name)
    return "".join(out)


def _from_class(items: Any, rng: random.Random) -> str:
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
