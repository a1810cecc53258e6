"""The checks a request passes before its body is read, each a small policy with one job.

A policy looks at the parsed headers and returns None (pass) or the
`Rejection` to answer. They run in order, and the first rejection is the
answer: the guards every method shares (Host, then Origin: DNS-rebinding
protection), then POST's own (media type, Accept, declared body size).

`Checks` runs an ordered list as one. Its policies' verdicts depend only on
the header fields it names, and a server sees a handful of distinct values
of those, so the list's verdict is remembered per value: on the hot path
the whole list costs one lookup, not a call per policy and a parse each.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bemcp.transports.http.headers import McpHeaders
from bemcp.transports.http.options import HttpOptions

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True, slots=True)
class Rejection:
    status: int
    message: str


class Policy(Protocol):
    def __call__(self, headers: McpHeaders) -> Rejection | None: ...


def host_name(value: str) -> str:
    """The host of a Host header value, without its port (an IPv6 literal keeps its brackets)."""
    if value.startswith("["):
        return value[: value.find("]") + 1]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def origin_host(origin: str) -> str:
    rest = origin.split("://", 1)[-1]
    return host_name(rest.split("/", 1)[0])


class TrustedHost:
    """Host must be a loopback name or listed in --allowed-hosts (a request without Host passes: HTTP/1.0 has
    nothing for a rebinding attack to ride on)."""

    __slots__ = ("_allowed",)
    REJECTION = Rejection(
        421, "Misdirected Request: Host header not allowed (DNS-rebinding protection; see --allowed-hosts)"
    )

    def __init__(self, allowed: tuple[str, ...] | None) -> None:
        self._allowed = allowed

    def __call__(self, headers: McpHeaders) -> Rejection | None:
        host = headers.host
        if host is None:
            return None
        name = host_name(host.decode("latin-1")).lower()
        if name in LOOPBACK:  # loopback names always stay allowed; --allowed-hosts adds to them
            return None
        allowed = self._allowed
        if allowed is not None and ("*" in allowed or name in allowed):
            return None
        return self.REJECTION


class TrustedOrigin:
    """Origin, when sent (a browser), must be a loopback origin or listed in --allowed-origins."""

    __slots__ = ("_allowed",)
    REJECTION = Rejection(403, "Forbidden: Origin not allowed (DNS-rebinding protection; see --allowed-origins)")

    def __init__(self, allowed: tuple[str, ...] | None) -> None:
        self._allowed = allowed

    def __call__(self, headers: McpHeaders) -> Rejection | None:
        origin = headers.origin
        if origin is None:
            return None
        value = origin.decode("latin-1").lower()
        if origin_host(value) in LOOPBACK:
            return None
        allowed = self._allowed
        if allowed is not None and ("*" in allowed or value in allowed):
            return None
        return self.REJECTION


def json_body(headers: McpHeaders) -> Rejection | None:
    """A POST carries one JSON-RPC message as application/json."""
    ctype = headers.content_type
    if ctype is None or ctype.split(b";", 1)[0].strip().lower() != b"application/json":
        return Rejection(415, "Unsupported Media Type: Content-Type must be application/json")
    return None


def accepts_both(headers: McpHeaders) -> Rejection | None:
    """The spec: a POST's Accept lists both answers the server may choose, JSON and an SSE stream."""
    if not (headers.sse_ok and headers.json_ok):
        return Rejection(406, "Not Acceptable: Accept must list application/json and text/event-stream")
    return None


class BodySize:
    """A declared Content-Length past --max-body-bytes is refused before a byte of the body is read."""

    __slots__ = ("_limit", "_rejection")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._rejection = Rejection(413, f"Payload Too Large: the limit is {limit} bytes")

    def __call__(self, headers: McpHeaders) -> Rejection | None:
        return self._rejection if headers.content_length > self._limit else None


# Distinct header values whose verdict is kept: varied values from a hostile client are still judged, only not
# remembered past this.
VERDICTS_KEPT = 64
_UNSEEN = Rejection(0, "")  # a sentinel: None is a verdict (pass)


class Checks:
    """`policies` in order, as one policy; each must judge only the `reads` fields of the headers."""

    __slots__ = ("_key", "_verdicts", "policies")

    def __init__(self, policies: tuple[Policy, ...], reads: tuple[str, ...]) -> None:
        self.policies = policies
        self._key: Callable[[McpHeaders], object] = operator.attrgetter(*reads)
        self._verdicts: dict[object, Rejection | None] = {}

    def __call__(self, headers: McpHeaders) -> Rejection | None:
        key = self._key(headers)
        verdict = self._verdicts.get(key, _UNSEEN)
        if verdict is _UNSEEN:
            verdict = first_rejection(self.policies, headers)
            if len(self._verdicts) < VERDICTS_KEPT:
                self._verdicts[key] = verdict
        return verdict


def guards(options: HttpOptions) -> Checks | None:
    """What every method on the MCP path passes first; None when DNS-rebinding protection is off."""
    if not options.dns_rebinding_protection:
        return None
    return Checks((TrustedHost(options.allowed_hosts), TrustedOrigin(options.allowed_origins)), ("host", "origin"))


def post_checks() -> Checks:
    """What a POST passes next, in the order its answers are documented (then `BodySize`, which reads a number
    that differs per request)."""
    return Checks((json_body, accepts_both), ("content_type", "accept"))


def first_rejection(policies: Sequence[Policy], headers: McpHeaders) -> Rejection | None:
    for policy in policies:
        rejection = policy(headers)
        if rejection is not None:
            return rejection
    return None
