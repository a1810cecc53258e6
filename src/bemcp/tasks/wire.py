"""A stored task as each revision shows it.

2026-07-28 (the `io.modelcontextprotocol/tasks` extension): a flat `CreateTaskResult` (`resultType: "task"`),
and `tasks/get`'s detailed task, which inlines `inputRequests`, `result` or `error` by status; durations are
`ttlMs` and `pollIntervalMs`. 2025-11-25: the `Task` object under `task` (creation) or flat (`tasks/get`,
`tasks/cancel`, `tasks/list`), with `ttl` and `pollInterval`, and results fetched with `tasks/result`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bemcp.tasks.model import TaskRecord, TaskStatus

EXTENSION = "io.modelcontextprotocol/tasks"
RELATED_TASK = "io.modelcontextprotocol/related-task"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _base(rec: TaskRecord) -> dict[str, Any]:
    status = rec.status
    if status is TaskStatus.INPUT_REQUIRED and not rec.input_requests:
        status = TaskStatus.WORKING  # every question is answered: the task is resuming
    out: dict[str, Any] = {
        "taskId": rec.task_id,
        "status": str(status),
        "createdAt": iso(rec.created_at),
        "lastUpdatedAt": iso(rec.updated_at),
    }
    if rec.status_message:
        out["statusMessage"] = rec.status_message
    return out


# -- 2026-07-28 -------------------------------------------------------------------


def created(rec: TaskRecord) -> dict[str, Any]:
    """The flat CreateTaskResult: the task's seed state, nothing of its outcome."""
    return {"resultType": "task", **_base(rec), "ttlMs": rec.ttl_ms, "pollIntervalMs": rec.poll_interval_ms}


def detailed(rec: TaskRecord) -> dict[str, Any]:
    """`tasks/get`'s DetailedTask: what the status carries, inlined."""
    out = {**_base(rec), "ttlMs": rec.ttl_ms, "pollIntervalMs": rec.poll_interval_ms}
    status = rec.status
    if status is TaskStatus.INPUT_REQUIRED and rec.input_requests:
        out["inputRequests"] = rec.input_requests
    elif status is TaskStatus.COMPLETED and rec.result is not None:
        # What the call would have answered on this revision: a CallToolResult carries its resultType.
        out["result"] = {**rec.result, "resultType": "complete"}
    elif status is TaskStatus.FAILED and rec.error is not None:
        out["error"] = rec.error
    return out


# -- 2025-11-25 -------------------------------------------------------------------


def task_v1(rec: TaskRecord) -> dict[str, Any]:
    out = {**_base(rec), "ttl": rec.ttl_ms, "pollInterval": rec.poll_interval_ms}
    if rec.status is TaskStatus.COMPLETED and rec.result is not None and rec.result.get("isError"):
        out["status"] = "failed"  # 2025-11-25 counts a tool error as a failed task (2026-07-28: completed)
    return out


def created_v1(rec: TaskRecord) -> dict[str, Any]:
    return {"task": task_v1(rec)}


def related(task_id: str) -> dict[str, Any]:
    return {RELATED_TASK: {"taskId": task_id}}
