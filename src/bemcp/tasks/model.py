"""A task as the stores keep it: its status machine, its owner and its retention."""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    WORKING = "working"
    INPUT_REQUIRED = "input_required"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


def new_task_id() -> str:
    """128 random bits, URL-safe: a task id is a capability, so it must not be guessable."""
    return secrets.token_urlsafe(16)


class TaskIds:
    """`new_task_id` for a busy event loop: the same 128 bits from the OS's CSPRNG, read `batch` ids at a time.

    Each read is a system call that releases the GIL, and a thread waiting for it (the SQLite writer) may then
    keep the loop waiting for the GIL back; one read per `batch` tasks instead of one per task avoids that.
    """

    def __init__(self, batch: int = 256) -> None:
        self._batch = batch
        self._pool = b""
        self._at = 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool, at = os.urandom(16 * self._batch), 0
        self._at = at + 16
        return base64.urlsafe_b64encode(self._pool[at : at + 16]).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    owner: str  # who may see it (a session, a client, later an authenticated subject); others get "unknown"
    worker: str  # the process that runs it: a restart fails (or resumes) its own working tasks
    method: str
    name: str
    status: TaskStatus
    created_at: float  # seconds since the epoch: stores are shared between processes and hosts
    updated_at: float
    ttl_ms: int  # kept this long after creation, then swept
    poll_interval_ms: int
    status_message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    # Pending client requests while input_required, by key (what tasks/get shows as inputRequests).
    input_requests: dict[str, dict[str, Any]] | None = None
    # What was called ({"name", "arguments", ...}): kept so that a resumable task can be run again after a restart.
    request: dict[str, Any] | None = None

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl_ms / 1000

    def expired(self, now: float) -> bool:
        return now >= self.expires_at
