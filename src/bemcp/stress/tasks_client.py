"""The MCP tasks protocol as the stress tester speaks it, in both revisions, raw like the rest of the client.

2026-07-28 (the `io.modelcontextprotocol/tasks` extension, SEP-2663): every request declares the extension (and
elicitation) in its `_meta` client capabilities; a `tools/call` of a task-capable tool may answer a flat
`CreateTaskResult` (`resultType: "task"`, `taskId`, `status`, `ttlMs`, `pollIntervalMs`); `tasks/get` gives the
task with what its status carries inlined (`inputRequests` while input_required, `result` once completed, `error`
once failed); `tasks/update` answers input requests by key; `tasks/cancel` acknowledges. An unknown or expired
id is JSON-RPC -32602.

2025-11-25: a `tools/call` with `params.task: {"ttl": ms}` answers `{"task": {...}}` (`ttl`, `pollInterval`);
`tasks/get` gives the flat task; `tasks/result` blocks until the task ends and returns its CallToolResult (or the
task's error), and while it waits the server relays the task's questions as requests on that answer's SSE stream:
`on_request` sees them, `respond` answers (HTTP only: over stdio the client's reader refuses server requests);
`tasks/cancel` returns the task, or -32602 when it is already terminal.

Nothing here validates with pydantic: one orjson call each way and a few dict lookups per answer, so polling ten
thousand tasks costs the tester what the calls of any other phase cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bemcp.protocol import codes
from bemcp.stress.client import TASKS_EXTENSION, ClientError, HttpSession, classify, failure
from bemcp.stress.model import Outcome
from bemcp.stress.stdio_client import StdioSession

TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})
UNKNOWN_TASK: Final = codes.INVALID_PARAMS  # -32602: unknown, expired, or not the requester's
RELATED_TASK: Final = "io.modelcontextprotocol/related-task"

__all__ = [
    "RELATED_TASK",
    "TASKS_EXTENSION",
    "TERMINAL",
    "UNKNOWN_TASK",
    "TaskAnswer",
    "TaskClient",
    "TaskState",
    "offers_tasks",
    "parse_task",
]


@dataclass(slots=True)
class TaskAnswer:
    """One request of the tasks protocol: its outcome and detail (as `client.classify` says), the whole JSON-RPC
    message (None when nothing usable came back) and its monotonic send and answer times."""

    outcome: Outcome
    detail: str | None
    message: dict[str, Any] | None
    start: float
    end: float

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def result(self) -> dict[str, Any] | None:
        r = self.message.get("result") if self.message is not None else None
        return r if isinstance(r, dict) else None

    @property
    def error(self) -> dict[str, Any] | None:
        e = self.message.get("error") if self.message is not None else None
        return e if isinstance(e, dict) else None

    @property
    def error_code(self) -> Any:
        e = self.error
        return e.get("code") if e is not None else None

    @property
    def error_message(self) -> str:
        e = self.error
        return str(e.get("message", "")) if e is not None else ""

    def retry_after(self) -> float | None:
        """An overload refusal's `data.retry_after_ms`, in seconds."""
        e = self.error
        data = e.get("data") if e is not None else None
        ms = data.get("retry_after_ms") if isinstance(data, dict) else None
        return ms / 1000 if isinstance(ms, int | float) and not isinstance(ms, bool) and ms >= 0 else None


@dataclass(slots=True)
class TaskState:
    """A task as a creation or `tasks/get` showed it, in either revision's words."""

    task_id: str
    status: str
    poll_s: float | None  # pollIntervalMs (2026-07-28) or pollInterval (2025-11-25), in seconds
    ttl_s: float | None  # ttlMs or ttl, in seconds
    input_requests: dict[str, Any] | None = None  # 2026-07-28, input_required: {key: {method, params}}
    result: dict[str, Any] | None = None  # 2026-07-28, completed: the CallToolResult
    error: dict[str, Any] | None = None  # 2026-07-28, failed: the JSON-RPC error
    message: str | None = None  # statusMessage

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def failure_text(self) -> str:
        """What a failed task says of its failure: its error's message, else its status message."""
        if self.error is not None and isinstance(self.error.get("message"), str):
            return str(self.error["message"])
        return self.message or ""


def _ms(value: Any) -> float | None:
    return value / 1000 if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else None


def parse_task(obj: Any) -> TaskState | None:
    """The task in a creation's or `tasks/get`'s result (either revision's field names); None if it is none."""
    if not isinstance(obj, dict):
        return None
    task_id, status = obj.get("taskId"), obj.get("status")
    if not isinstance(task_id, str) or not task_id or not isinstance(status, str):
        return None
    requests, result, error, message = (
        obj.get("inputRequests"),
        obj.get("result"),
        obj.get("error"),
        obj.get("statusMessage"),
    )
    return TaskState(
        task_id,
        status,
        _ms(obj.get("pollIntervalMs", obj.get("pollInterval"))),
        _ms(obj.get("ttlMs", obj.get("ttl"))),
        requests if isinstance(requests, dict) else None,
        result if isinstance(result, dict) else None,
        error if isinstance(error, dict) else None,
        message if isinstance(message, str) else None,
    )


def offers_tasks(capabilities: Any, *, modern: bool) -> bool:
    """Whether a server's capabilities offer tasks for `tools/call`: the extension (2026-07-28, in
    `server/discover`), or `tasks.requests.tools.call` (2025-11-25, in `initialize`)."""
    if not isinstance(capabilities, dict):
        return False
    if modern:
        extensions = capabilities.get("extensions")
        return isinstance(extensions, dict) and TASKS_EXTENSION in extensions
    tasks = capabilities.get("tasks")
    requests = tasks.get("requests") if isinstance(tasks, dict) else None
    tools = requests.get("tools") if isinstance(requests, dict) else None
    return isinstance(tools, dict) and "call" in tools


class TaskClient:
    """The tasks protocol over one session (HTTP or stdio) in one revision (`modern`: 2026-07-28).

    Every method answers a `TaskAnswer` (and the task, when the answer shows one); none raises for what a server
    does. `ttl_ms` is what a 2025-11-25 creation asks for (2026-07-28: the server decides).
    """

    def __init__(self, session: HttpSession | StdioSession, *, modern: bool, timeout: float, ttl_ms: int) -> None:
        self.session = session
        self.modern = modern
        self.timeout = timeout
        self.ttl_ms = ttl_ms

    @property
    def can_answer_streams(self) -> bool:
        """Whether the server's requests on a 2025-11-25 `tasks/result` stream can be answered (HTTP only)."""
        return isinstance(self.session, HttpSession)

    async def send(
        self,
        method: str,
        params: dict[str, Any],
        *,
        timeout: float | None = None,
        on_request: Callable[[dict[str, Any]], None] | None = None,
    ) -> TaskAnswer:
        start = time.monotonic()
        wait = self.timeout if timeout is None else timeout
        session = self.session
        outcome: Outcome
        detail: str | None
        try:
            if isinstance(session, HttpSession):
                outcome, detail, msg = await session.task_request(method, params, timeout=wait, on_request=on_request)
            else:
                msg = await session.task_request(method, params, timeout=wait)
                outcome, detail = classify(msg, 200, None)
        except ClientError as e:
            outcome, detail = failure(e)
            return TaskAnswer(outcome, detail, None, start, time.monotonic())
        return TaskAnswer(outcome, detail, msg if isinstance(msg, dict) else None, start, time.monotonic())

    async def create(self, name: str, arguments: dict[str, Any]) -> tuple[TaskAnswer, TaskState | None]:
        """`tools/call` as a task. The task when one was made; else the answer is a refusal, an error, or a plain
        CallToolResult (the server ran the call at once)."""
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if not self.modern:
            params["task"] = {"ttl": self.ttl_ms}
        answer = await self.send("tools/call", params)
        result = answer.result
        if result is None:
            return answer, None
        if self.modern:
            return answer, parse_task(result) if result.get("resultType") == "task" else None
        return answer, parse_task(result.get("task"))

    async def get(self, task_id: str) -> tuple[TaskAnswer, TaskState | None]:
        answer = await self.send("tasks/get", {"taskId": task_id})
        return answer, parse_task(answer.result)

    async def update(self, task_id: str, responses: dict[str, Any]) -> TaskAnswer:
        """2026-07-28: answers to the task's input requests, by key."""
        return await self.send("tasks/update", {"taskId": task_id, "inputResponses": responses})

    async def cancel(self, task_id: str) -> tuple[TaskAnswer, TaskState | None]:
        """2026-07-28: an ack; 2025-11-25: the task (cancelled), or -32602 when it had already ended."""
        answer = await self.send("tasks/cancel", {"taskId": task_id})
        return answer, None if self.modern else parse_task(answer.result)

    async def result(
        self, task_id: str, *, on_request: Callable[[dict[str, Any]], None] | None = None, timeout: float | None = None
    ) -> TaskAnswer:
        """2025-11-25: `tasks/result`, which answers once the task has ended: its CallToolResult, or its error."""
        return await self.send("tasks/result", {"taskId": task_id}, timeout=timeout, on_request=on_request)

    async def respond(self, req_id: Any, result: dict[str, Any]) -> bool:
        """Answer a request the server sent on a stream (2025-11-25, HTTP); whether the server took it."""
        session = self.session
        if not isinstance(session, HttpSession):
            return False
        try:
            status = await session.respond(req_id, result, timeout=self.timeout)
        except ClientError:
            return False
        return 200 <= status < 300
