"""Why a call was cancelled, and `CutOff`: the server ended a call and answers it.

Every cancellation of a call records one `CancelReason` before it cancels the
call's task, so whoever catches the `CancelledError` knows whose it is: a
cancellation with no reason is not the call's (the server's loop is ending).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class CancelReason(StrEnum):
    CLIENT = "client"  # notifications/cancelled: the spec says no response
    DISCONNECT = "disconnect"  # the client went away: nobody to answer
    DEADLINE = "deadline"  # the call's own timeout
    WATCHDOG = "watchdog"  # past its deadline's grace, its work having ignored the cancellation
    DRAIN_TIMEOUT = "drain_timeout"  # shutting down, and the drain's time ran out
    SESSION_ENDED = "session_ended"  # its 2025-11-25 session was deleted or expired

    @property
    def silent(self) -> bool:
        """True when the call gets no answer: the client cancelled it, or nobody is left to read one."""
        return self is CancelReason.CLIENT or self is CancelReason.DISCONNECT


class CutOff(Exception):
    """The server ended a call before its work did (`deadline`, `watchdog`, `drain_timeout`).

    `abandoned`: the work ignored its cancellation and still runs, keeping
    the call's slot until it ends.
    """

    def __init__(self, reason: CancelReason, message: str, timeout: float | None, abandoned: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.timeout = timeout
        self.abandoned = abandoned

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": str(self.reason)}
        if self.timeout is not None and self.reason is not CancelReason.DRAIN_TIMEOUT:
            out["timeout_s"] = self.timeout
        if self.abandoned:
            out["abandoned"] = True
        return out
