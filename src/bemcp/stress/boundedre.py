"""A regular-expression matcher whose work is bounded: `compile(pattern).search(text, budget)`.

Python's `re` backtracks, and some patterns take exponential time on some strings (`(a+)+[^\\s\\S]` on thirty
`a`s runs for hours); it holds the GIL while it does, and nothing can interrupt it from another thread. A tool
schema is written by the server under test, so the stress tester checks candidate strings with this matcher
instead: the same parse (`re._parser`, the parser `re` itself runs), the same priority order, but a small
backtracking machine with an explicit stack that counts every step it takes against a `Budget` and stops with
`BudgetExceeded` when that runs out. It uses no recursion on the input either, so a long string cannot overflow
the stack; only lookarounds and atomic groups run a nested machine, as deep as the pattern nests them.

Counted repeats keep a counter (`x{1,5000}` is a handful of instructions, not 5,000 copies), and an iteration that
consumed nothing ends its loop, as in `re`. Everything the parser produces is supported: literals, classes,
categories (Unicode, or ASCII under `(?a)`), `.`, anchors, groups, alternation, greedy, lazy and possessive
repeats, atomic groups, back-references, conditionals and lookarounds, with the i, m, s and a flags. A pattern
`re` refuses, or that compiles to more than `MAX_PROGRAM` instructions, raises `PatternError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

MAX_PROGRAM: Final = 20_000  # instructions: a pattern past this is refused, not matched
_I, _M, _S, _A = 2, 8, 16, 256  # re.IGNORECASE, MULTILINE, DOTALL, ASCII

_parser: Any = importlib.import_module("re._parser")  # private, but it is the parser `re` itself runs


class PatternError(ValueError):
    """The pattern cannot be checked: `re` refuses it, or it is too large."""


class BudgetExceeded(Exception):
    """The budget ran out before the matcher could say yes or no."""


class Budget:
    """Steps left for the matcher (and whoever else spends from it: see `argsgen`)."""

    __slots__ = ("left", "total")

    def __init__(self, steps: int) -> None:
        self.total = steps
        self.left = steps

    def spend(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise BudgetExceeded(f"more than {self.total:,} steps")


# -- the program ------------------------------------------------------------------------------------------
# Instructions are tuples whose first item is the opcode. Thread state: the position and a tuple of slots
# (2 per group for its span, then 2 per counted repeat: its count and where its last iteration started).

CHAR, SPLIT, JMP, SAVE, AT, REF, COND, LOOK, ATOMIC, REP_INIT, REP_TEST, REP_INC, MATCH = range(13)


class _Compiler:
    def __init__(self, groups: int) -> None:
        self.groups = groups
        self.repeats = 0
        self.size = 0

    def program(self, items: Any, flags: int) -> list[tuple[Any, ...]]:
        return self._sub(items, flags)

    def _add(self, code: list[tuple[Any, ...]], op: tuple[Any, ...]) -> int:
        self.size += 1
        if self.size > MAX_PROGRAM:
            raise PatternError(f"the pattern compiles to more than {MAX_PROGRAM:,} instructions")
        code.append(op)
        return len(code) - 1

    def emit(self, code: list[tuple[Any, ...]], items: Any, flags: int) -> None:
        for op, arg in items:
            name = str(op)
            if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
                self._add(code, (CHAR, _predicate(name, arg, flags)))
            elif name == "BRANCH":
                self._branch(code, arg[1], flags)
            elif name == "SUBPATTERN":
                group, add, remove, body = arg
                inner = (flags | add) & ~remove
                if group is not None:
                    self._add(code, (SAVE, 2 * group))
                self.emit(code, body, inner)
                if group is not None:
                    self._add(code, (SAVE, 2 * group + 1))
            elif name in ("MAX_REPEAT", "MIN_REPEAT"):
                self._repeat(code, arg, flags, greedy=name == "MAX_REPEAT")
            elif name == "POSSESSIVE_REPEAT":
                self._add(code, (ATOMIC, self._sub([(_parser.MAX_REPEAT, arg)], flags)))
            elif name == "ATOMIC_GROUP":
                self._add(code, (ATOMIC, self._sub(arg, flags)))
            elif name == "AT":
                self._add(code, (AT, str(arg), flags))
            elif name == "GROUPREF":
                self._add(code, (REF, arg, flags))
            elif name == "GROUPREF_EXISTS":
                group, yes, no = arg
                at = self._add(code, (COND, group, 0))
                self.emit(code, yes, flags)
                jump = self._add(code, (JMP, 0))
                code[at] = (COND, group, len(code))
                if no is not None:
                    self.emit(code, no, flags)
                code[jump] = (JMP, len(code))
            elif name in ("ASSERT", "ASSERT_NOT"):
                direction, body = arg
                width = None
                if direction < 0:
                    lo, hi = body.getwidth()
                    if lo != hi:
                        raise PatternError("a lookbehind of variable width")
                    width = lo
                self._add(code, (LOOK, self._sub(body, flags), width, name == "ASSERT"))
            else:
                raise PatternError(f"a construct the checker does not know: {name}")

    def _sub(self, items: Any, flags: int) -> list[tuple[Any, ...]]:
        code: list[tuple[Any, ...]] = []
        self.emit(code, items, flags)
        self._add(code, (MATCH,))
        return code

    def _branch(self, code: list[tuple[Any, ...]], alternatives: Any, flags: int) -> None:
        jumps: list[int] = []
        for i, alternative in enumerate(alternatives):
            split = self._add(code, (SPLIT, 0, 0)) if i < len(alternatives) - 1 else None
            start = len(code)
            self.emit(code, alternative, flags)
            if split is not None:
                jumps.append(self._add(code, (JMP, 0)))
                code[split] = (SPLIT, start, len(code))
        for j in jumps:
            code[j] = (JMP, len(code))

    def _repeat(self, code: list[tuple[Any, ...]], arg: Any, flags: int, *, greedy: bool) -> None:
        low, high, body = arg
        top = None if str(high) == "MAXREPEAT" else int(high)
        k = 2 * self.groups + 2 * self.repeats  # the counter's slot; k + 1: where the last iteration began
        self.repeats += 1
        self._add(code, (REP_INIT, k))
        test = self._add(code, (REP_TEST, k, low, top, greedy, 0))
        self.emit(code, body, flags)
        self._add(code, (REP_INC, k, low, test))
        code[test] = (REP_TEST, k, low, top, greedy, len(code))


def _predicate(name: str, arg: Any, flags: int) -> Callable[[str], bool]:
    fold = bool(flags & _I)
    if name == "ANY":
        return (lambda c: True) if flags & _S else (lambda c: c != "\n")
    if name in ("LITERAL", "NOT_LITERAL"):
        lit = chr(arg)
        if fold:
            low = lit.lower()
            same: Callable[[str], bool] = lambda c: c == lit or c.lower() == low  # noqa: E731
        else:
            same = lambda c: c == lit  # noqa: E731
        return same if name == "LITERAL" else (lambda c: not same(c))
    tests: list[Callable[[str], bool]] = []
    negate = False
    for op, item in arg:
        kind = str(op)
        if kind == "NEGATE":
            negate = True
        elif kind == "LITERAL":
            tests.append(_predicate("LITERAL", item, flags))
        elif kind == "RANGE":
            lo, hi = chr(item[0]), chr(item[1])
            tests.append(_in_range(lo, hi, fold))
        elif kind == "CATEGORY":
            tests.append(_category(str(item), ascii_only=bool(flags & _A)))
        else:
            raise PatternError(f"a class item the checker does not know: {kind}")
    if negate:
        return lambda c: not any(t(c) for t in tests)
    return lambda c: any(t(c) for t in tests)


def _in_range(lo: str, hi: str, fold: bool) -> Callable[[str], bool]:
    if fold:
        return lambda c: any(lo <= x <= hi for x in (c, c.lower(), c.upper()))
    return lambda c: lo <= c <= hi


def _is_word(c: str, ascii_only: bool = False) -> bool:
    return (c.isalnum() or c == "_") and (c.isascii() or not ascii_only)


def _category(code: str, *, ascii_only: bool) -> Callable[[str], bool]:
    tests: dict[str, Callable[[str], bool]] = {
        "CATEGORY_DIGIT": lambda c: c.isdecimal() and (c.isascii() or not ascii_only),
        "CATEGORY_SPACE": lambda c: c.isspace() and (c.isascii() or not ascii_only),
        "CATEGORY_WORD": lambda c: _is_word(c, ascii_only),
    }
    base = tests.get(code.replace("_NOT", ""))
    if base is None:
        raise PatternError(f"a category the checker does not know: {code}")
    return (lambda c: not base(c)) if "_NOT_" in code else base


def _at(kind: str, flags: int, text: str, pos: int) -> bool:
    n = len(text)
    if kind == "AT_BEGINNING":
        return pos == 0 or (bool(flags & _M) and text[pos - 1] == "\n")
    if kind == "AT_BEGINNING_STRING":
        return pos == 0
    if kind == "AT_END":
        if flags & _M:
            return pos == n or text[pos] == "\n"
        return pos == n or (pos == n - 1 and text[pos] == "\n")
    if kind == "AT_END_STRING":
        return pos == n
    if kind in ("AT_BOUNDARY", "AT_NON_BOUNDARY"):
        if n == 0:
            return False  # as in re: neither \\b nor \\B matches in an empty string
        ascii_only = bool(flags & _A)
        before = pos > 0 and _is_word(text[pos - 1], ascii_only)
        after = pos < n and _is_word(text[pos], ascii_only)
        return (before != after) == (kind == "AT_BOUNDARY")
    raise PatternError(f"an anchor the checker does not know: {kind}")


def _same(a: str, b: str, fold: bool) -> bool:
    return a == b or (fold and a.lower() == b.lower())


def _run(
    code: list[tuple[Any, ...]], text: str, pos: int, slots: tuple[Any, ...], budget: Budget
) -> tuple[int, tuple[Any, ...]] | None:
    """The first match (in `re`'s priority order) of `code` starting exactly at `pos`: (end, slots), or None."""
    n = len(text)
    stack: list[tuple[int, int, tuple[Any, ...]]] = [(0, pos, slots)]
    while stack:
        pc, pos, slots = stack.pop()
        while True:
            budget.spend()
            op = code[pc]
            kind = op[0]
            if kind == CHAR:
                if pos < n and op[1](text[pos]):
                    pos += 1
                    pc += 1
                    continue
                break
            if kind == SPLIT:
                stack.append((op[2], pos, slots))
                pc = op[1]
            elif kind == JMP:
                pc = op[1]
            elif kind == SAVE:
                slots = (*slots[: op[1]], pos, *slots[op[1] + 1 :])
                pc += 1
            elif kind == MATCH:
                return pos, slots
            elif kind == AT:
                if not _at(op[1], op[2], text, pos):
                    break
                pc += 1
            elif kind == REF:
                start, end = slots[2 * op[1]], slots[2 * op[1] + 1]
                if start is None or end is None:
                    break
                size = end - start
                budget.spend(size)
                if pos + size > n or not all(
                    _same(text[start + i], text[pos + i], bool(op[2] & _I)) for i in range(size)
                ):
                    break
                pos += size
                pc += 1
            elif kind == COND:
                group = op[1]
                pc = pc + 1 if slots[2 * group + 1] is not None else op[2]
            elif kind == LOOK:
                sub, width, positive = op[1], op[2], op[3]
                begin = pos if width is None else pos - width
                found = None
                if begin >= 0:
                    found = _run(sub, text, begin, slots, budget)
                    if found is not None and width is not None and found[0] != pos:
                        found = None
                if (found is not None) != positive:
                    break
                if found is not None:
                    slots = found[1]  # a positive lookaround keeps its captures, as in re
                pc += 1
            elif kind == ATOMIC:
                found = _run(op[1], text, pos, slots, budget)
                if found is None:
                    break
                pos, slots = found
                pc += 1
            elif kind == REP_INIT:
                k = op[1]
                slots = (*slots[:k], 0, -1, *slots[k + 2 :])
                pc += 1
            elif kind == REP_TEST:
                _, k, low, top, greedy, out = op
                count = slots[k]
                if count < low:
                    slots = (*slots[: k + 1], pos, *slots[k + 2 :])
                    pc += 1
                elif top is not None and count >= top:
                    pc = out
                else:
                    inside = (*slots[: k + 1], pos, *slots[k + 2 :])
                    if greedy:
                        stack.append((out, pos, slots))
                        pc, slots = pc + 1, inside
                    else:
                        stack.append((pc + 1, pos, inside))
                        pc = out
            else:  # REP_INC
                _, k, low, test = op
                count = slots[k] + 1
                slots = (*slots[:k], count, *slots[k + 1 :])
                # An iteration that consumed nothing cannot help: past the minimum, the loop ends (as in re).
                pc = code[test][5] if pos == slots[k + 1] and count >= low else test
    return None


@dataclass(frozen=True, slots=True)
class Pattern:
    pattern: str
    _code: list[tuple[Any, ...]]
    _slots: int

    def search(self, text: str, budget: Budget) -> bool:
        """Whether the pattern matches anywhere in `text` (as `re.search`); raises BudgetExceeded."""
        empty = (None,) * self._slots
        return any(_run(self._code, text, start, empty, budget) is not None for start in range(len(text) + 1))


def compile(pattern: str) -> Pattern:
    """Parse and compile `pattern`; raises PatternError when it cannot be checked."""
    try:
        tree = _parser.parse(pattern)
    except Exception as e:  # re.error, RecursionError, OverflowError on absurd counts, ...
        raise PatternError(f"not a regular expression Python understands: {e}") from None
    compiler = _Compiler(tree.state.groups)
    try:
        code = compiler.program(tree, tree.state.flags)
    except RecursionError:
        raise PatternError("the pattern nests too deeply") from None
    return Pattern(pattern, code, 2 * compiler.groups + 2 * compiler.repeats)
