"""The bounded matcher (`bemcp.stress.boundedre`) says what Python's `re.search` says, and never works unboundedly.

The differential test draws patterns from a grammar of every construct the parser produces (classes, categories,
anchors, groups, alternation, greedy/lazy/possessive repeats, atomic groups, back-references, conditionals,
lookarounds, inline flags) and strings from a small alphabet, and compares the two on each. Pairs on which `re`
itself would need long are kept out by construction: the strings are short and the repeats bounded.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bemcp.stress import boundedre
from bemcp.stress.boundedre import Budget, BudgetExceeded, PatternError

ALPHABET = "ab1 _-\nA.é"
ATOMS = ["a", "b", "1", ".", r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", "[ab]", "[^a]", "[a-c1]", r"[^\s\S]", "é", r"\."]
ANCHORS = ["^", "$", r"\A", r"\Z", r"\b", r"\B"]


def _pattern(depth: int = 3) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(ATOMS + ANCHORS)
    if depth == 0:
        return leaf
    sub = _pattern(depth - 1)
    quant = st.sampled_from(["*", "+", "?", "{2}", "{0,2}", "{1,3}", "*?", "+?", "??", "{1,2}?", "*+", "++"])
    return st.one_of(
        leaf,
        st.tuples(sub, sub).map("".join),
        st.tuples(sub, sub).map(lambda t: f"{t[0]}|{t[1]}"),
        st.tuples(sub, quant).map(lambda t: f"(?:{t[0]}){t[1]}"),
        sub.map(lambda s: f"({s})"),
        sub.map(lambda s: f"(?>{s})"),
        sub.map(lambda s: f"(?={s})"),
        sub.map(lambda s: f"(?!{s})"),
        st.sampled_from(["a", "ab", r"\d"]).map(lambda s: f"(?<={s})"),
        st.sampled_from(["a", "ab"]).map(lambda s: f"(?<!{s})"),
        sub.map(lambda s: f"(?i:{s})"),
        sub.map(lambda s: f"(?s:{s})"),
        sub.map(lambda s: f"({s})\\1"),
        sub.map(lambda s: f"(a)?(?(1){s}|b)"),
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pattern(), st.lists(st.text(ALPHABET, max_size=8), min_size=1, max_size=6), st.sampled_from(["", "(?m)"]))
def test_it_agrees_with_re(pattern: str, texts: list[str], flags: str) -> None:
    pattern = flags + pattern
    try:
        expected = re.compile(pattern)
    except re.error:
        with pytest.raises(PatternError):
            boundedre.compile(pattern)
        return
    compiled = boundedre.compile(pattern)
    for text in texts:
        try:
            got = compiled.search(text, Budget(200_000))
        except BudgetExceeded:
            continue  # allowed to give up; never to disagree
        assert got == (expected.search(text) is not None), (pattern, text)


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        (r"^[a-z0-9_-]{3,16}$", "user_1", "ab"),
        (r"\d{4}-\d{2}-\d{2}", "on 2024-01-02", "2024-1-2"),
        (r"^(foo|bar)+$", "foobarfoo", "foob"),
        (r"^(\w+) \1$", "abc abc", "abc abd"),
        (r"(?i)^HELLO$", "hello", "help"),
        (r"^(?=.*\d)(?=.*[A-Z]).{8,}$", "Passw0rdX", "password1"),
        (r"^.{1,5000}$", "x" * 5000, "x" * 5001),  # a counter, not 5,000 copies of the body
        (r"^(a|b)*?c$", "ababc", "abab"),
        (r"(?a)^\w+$", "abc", "é"),
        (r"^\w+$", "é", " "),
    ],
)
def test_common_tool_schema_patterns(pattern: str, yes: str, no: str) -> None:
    compiled = boundedre.compile(pattern)
    assert compiled.search(yes, Budget(1_000_000)) and re.search(pattern, yes)
    assert not compiled.search(no, Budget(1_000_000)) and not re.search(pattern, no)


def test_a_catastrophic_pattern_runs_out_of_its_budget_not_forever() -> None:
    """`re` needs about 2**n steps for `(a+)+[^\\s\\S]` on n a's (hours for n = 40); the budget ends it."""
    compiled = boundedre.compile(r"(a+)+[^\s\S]")
    budget = Budget(100_000)
    with pytest.raises(BudgetExceeded):
        compiled.search("a" * 40, budget)
    assert budget.left < 0  # it stopped at the first step past the budget
    assert compiled.search("a" * 10, Budget(1_000_000)) is False  # small enough to settle: no match


def test_a_long_input_does_not_overflow_the_stack() -> None:
    assert boundedre.compile(r"^(?:ab)*c$").search("ab" * 20_000 + "c", Budget(10_000_000))


@pytest.mark.parametrize(
    ("pattern", "why"),
    [("(", "not a regular expression"), ("(?<=a+)b", "variable width"), ("a" * 25_000, "more than 20,000")],
)
def test_patterns_it_refuses(pattern: str, why: str) -> None:
    with pytest.raises(PatternError, match=why):
        boundedre.compile(pattern)


def test_counted_repeats_are_counters_not_copies() -> None:
    compiled = boundedre.compile(r"^(?:x{1000}){1000}$")  # a million characters' worth, in a few instructions
    assert compiled.search("x" * 3000, Budget(1_000_000)) is False
