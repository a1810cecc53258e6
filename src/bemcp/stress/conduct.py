"""Findings on how the server behaved as a peer: answers that were wrong, astray or missing, dropped connections.

`conduct_findings` reads the report's steps (`details`, `violations`) and what the clients tallied outside any
step, and says what a well-behaved server never does:

- answers no call could carry (a duplicate, an id never sent, a response with no request outstanding): critical;
- answers with another request's id, or a result of the wrong kind for the method: critical;
- requests the server stopped reading (timeouts with the request unread): critical;
- lines on stdout that are not JSON-RPC: warning;
- connections closed with a call in flight, answers that could not be read, calls never answered within the
  timeout: warning (they also count against the error budget, which judges them in the verdict).

The chaos phase is left out of the last group: it sends malformed and oversized messages and drops connections on
purpose, and has its own finding for what went unanswered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bemcp.stress.model import Finding

_ASTRAY = {
    "unknown_id": "to ids never sent",
    "duplicate": "duplicates",
    "unsolicited": "with no request outstanding",
}
_WRONG = {"wrong_id": "another request's id", "wrong_result": "a result of the wrong kind for the method"}
_CLOSED = frozenset({"connection_closed", "connection_reset", "broken_pipe"})
_UNREADABLE = frozenset({"malformed_http", "answer_too_large", "bad_answer"})


def _count(phases: Mapping[str, Any], wanted: str, *, skip_chaos: bool) -> tuple[int, dict[str, int]]:
    """Calls whose `details` key is `wanted` ("outcome:detail"), in all and by phase."""
    by_phase: dict[str, int] = {}
    for name, phase in phases.items():
        if skip_chaos and name == "chaos":
            continue
        n = sum(int(step.get("details", {}).get(wanted, 0)) for step in phase.get("steps", []))
        if n:
            by_phase[name] = n
    return sum(by_phase.values()), by_phase


def _where(by_phase: Mapping[str, int]) -> str:
    return ", ".join(f"{name}: {n:,}" for name, n in by_phase.items())


def conduct_findings(phases: Mapping[str, Any], outside: Mapping[str, int], *, call_timeout_s: float) -> list[Finding]:
    """The findings, worst first; `outside` is the tally of what arrived outside every step (discovery)."""
    findings: list[Finding] = []
    astray: dict[str, int] = dict(outside)
    for phase in phases.values():
        for step in phase.get("steps", []):
            for kind, n in (step.get("violations") or {}).items():
                astray[kind] = astray.get(kind, 0) + int(n)
    lost = {k: astray[k] for k in _ASTRAY if astray.get(k)}
    if lost:
        parts = ", ".join(f"{n:,} {_ASTRAY[k]}" for k, n in lost.items())
        findings.append(
            Finding(
                "critical",
                "run",
                f"The server sent {sum(lost.values()):,} answers that belong to no request in flight ({parts}); "
                "none was counted as a call's answer, and the calls they were meant for got none.",
                lost,
            )
        )
    wrong: dict[str, Any] = {}
    for detail in _WRONG:
        n, by_phase = _count(phases, f"protocol_error:{detail}", skip_chaos=False)
        if n:
            wrong[detail] = n
            wrong[f"{detail}_by_phase"] = by_phase
    if wrong:
        parts = ", ".join(f"{wrong[d]:,} with {what}" for d, what in _WRONG.items() if d in wrong)
        findings.append(
            Finding(
                "critical",
                "run",
                f"The server answered {sum(wrong[d] for d in _WRONG if d in wrong):,} calls wrongly ({parts}); "
                "each is counted as a protocol error, never as a success.",
                wrong,
            )
        )
    unread, by_phase = _count(phases, "timeout:unread", skip_chaos=False)
    if unread:
        findings.append(
            Finding(
                "critical",
                "run",
                f"The server stopped reading: {unread:,} calls timed out with their request still unread "
                f"({_where(by_phase)}).",
                {"calls": unread, "by_phase": by_phase},
            )
        )
    if astray.get("stray_output"):
        findings.append(
            Finding(
                "warning",
                "run",
                f"The server wrote {astray['stray_output']:,} lines on stdout that are not JSON-RPC messages.",
                {"lines": astray["stray_output"]},
            )
        )
    closed: dict[str, int] = {}
    for detail in sorted(_CLOSED):
        _, per = _count(phases, f"transport_error:{detail}", skip_chaos=True)
        for name, n in per.items():
            closed[name] = closed.get(name, 0) + n
    if closed:
        findings.append(
            Finding(
                "warning",
                "run",
                f"The server closed {sum(closed.values()):,} connections with a call in flight ({_where(closed)}); "
                "an overloaded server should answer (HTTP 503 or an overload error), not hang up.",
                {"calls": sum(closed.values()), "by_phase": closed},
            )
        )
    garbled: dict[str, int] = {}
    for name, phase in phases.items():
        if name == "chaos":
            continue
        for step in phase.get("steps", []):
            for key, n in step.get("details", {}).items():
                outcome, _, detail = key.partition(":")
                if outcome == "transport_error" and (detail in _UNREADABLE or detail.startswith("no_answer")):
                    garbled[name] = garbled.get(name, 0) + int(n)
    if garbled:
        findings.append(
            Finding(
                "warning",
                "run",
                f"{sum(garbled.values()):,} answers could not be read as JSON-RPC (malformed HTTP, no answer in the "
                f"body, or over the size limit) ({_where(garbled)}).",
                {"calls": sum(garbled.values()), "by_phase": garbled},
            )
        )
    timeouts: dict[str, int] = {}
    for name, phase in phases.items():
        if name == "chaos":
            continue
        n = sum(int(s["outcomes"].get("timeout", 0)) for s in phase.get("steps", [])) - int(
            sum(int(s.get("details", {}).get("timeout:unread", 0)) for s in phase.get("steps", []))
        )
        if n > 0:
            timeouts[name] = n
    if timeouts:
        findings.append(
            Finding(
                "warning",
                "run",
                f"{sum(timeouts.values()):,} calls got no answer within the {call_timeout_s:g} s call timeout "
                f"({_where(timeouts)}).",
                {"calls": sum(timeouts.values()), "by_phase": timeouts},
            )
        )
    return findings
