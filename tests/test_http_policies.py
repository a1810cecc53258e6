"""The HTTP header policies: a `Checks` chain answers exactly what its policies, run one by one, would answer,
whether its verdict is remembered or not, and it remembers only a bounded number of header values."""

from __future__ import annotations

import itertools

from bemcp.transports.http.headers import McpHeaders
from bemcp.transports.http.options import HttpOptions
from bemcp.transports.http.policies import VERDICTS_KEPT, first_rejection, guards, post_checks

HOSTS = [None, b"127.0.0.1:8000", b"localhost", b"[::1]:9", b"evil.example", b"api.example:443", b"LOCALHOST:1"]
ORIGINS = [None, b"http://localhost:3000", b"https://evil.example", b"https://app.example", b"null"]
TYPES = [None, b"application/json", b"Application/JSON; charset=utf-8", b"text/plain", b""]
ACCEPTS = [None, b"application/json, text/event-stream", b"*/*", b"application/json", b"text/event-stream"]


def test_a_remembered_verdict_is_the_policies_own() -> None:
    g = guards(HttpOptions(allowed_hosts=("api.example",), allowed_origins=("https://app.example",)))
    assert g is not None
    c = post_checks()
    cases = [McpHeaders(host=h, origin=o) for h, o in itertools.product(HOSTS, ORIGINS)]
    cases += [McpHeaders(content_type=t, accept=a) for t, a in itertools.product(TYPES, ACCEPTS)]
    for _ in range(2):  # the first pass judges and remembers; the second reads what it remembered
        for h in cases:
            assert g(h) == first_rejection(g.policies, h), h
            assert c(h) == first_rejection(c.policies, h), h
    statuses = {r.status if r else 200 for r in map(g, cases)} | {r.status if r else 200 for r in map(c, cases)}
    assert statuses == {200, 403, 406, 415, 421}


def test_varied_values_are_judged_but_not_all_remembered() -> None:
    g = guards(HttpOptions())
    assert g is not None
    for i in range(VERDICTS_KEPT * 4):
        rejection = g(McpHeaders(host=b"h%d.evil.example" % i))
        assert rejection is not None and rejection.status == 421
    assert len(g._verdicts) == VERDICTS_KEPT


def test_protection_off_has_no_guards() -> None:
    assert guards(HttpOptions(dns_rebinding_protection=False)) is None
