"""The tasks method family, for both revisions, and the rule for when a `tools/call` becomes a task.

2026-07-28 (`io.modelcontextprotocol/tasks`): the client declares the extension per request and the server
decides; `tasks/get`, `tasks/update` and `tasks/cancel` need the declaration (-32021 without it), and
`tasks/result` and `tasks/list` do not exist (-32601, answered by the dispatcher). 2025-11-25: the client asks
for a task with `params.task`, per the tool's `execution.taskSupport`; `tasks/result` blocks until the task ends
and relays the task's questions to the client on its own stream; `tasks/list` pages the requester's tasks.

Either way a task is bound to who created it: the session on 2025-11-25, and on 2026-07-28 (which has no
sessions) nobody, so the 128-bit task id is the capability. Another requester's task is "unknown", never shown.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bemcp.app import ToolDef
from bemcp.errors import ClientError, InvalidParams, McpError, MethodNotFound, NoBackChannel
from bemcp.protocol import codes, inputrequests
from bemcp.protocol.exchange import Exchange
from bemcp.tasks import wire
from bemcp.tasks.model import TaskRecord, TaskStatus

if TYPE_CHECKING:
    from bemcp.tasks.runner import TaskRunner

Result = dict[str, Any]
LIST_PAGE = 50
MAX_RESPONSES = 1000  # keys in one tasks/update: far more than any task asks at once
_REQUIRED: dict[str, Any] = {"requiredCapabilities": {"extensions": {wire.EXTENSION: {}}}}


def owner_of(ex: Exchange) -> str:
    """Whose task a request may see: its 2025-11-25 session (or connection); no one in particular on 2026-07-28."""
    return "" if ex.stateless else ex.peer.owner


def declares_extension(ex: Exchange) -> bool:
    extensions = ex.capabilities.get("extensions")
    return isinstance(extensions, dict) and wire.EXTENSION in extensions


def _task_id(params: dict[str, Any]) -> str:
    task_id = params.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise InvalidParams("params.taskId must be a non-empty string")
    return task_id


def _unknown(task_id: str) -> InvalidParams:
    return InvalidParams(
        "Failed to retrieve task: Task not found (unknown, expired, or not yours)", {"taskId": task_id}
    )


class TaskMethods:
    """Serves `tasks/*` from a runner (None: this server runs no tasks, so every task id is unknown)."""

    def __init__(self, runner: TaskRunner | None) -> None:
        self.runner = runner

    def handlers(self) -> dict[str, Any]:
        return {
            "tasks/get": self.get,
            "tasks/update": self.update,
            "tasks/cancel": self.cancel,
            "tasks/result": self.result,
            "tasks/list": self.list,
        }

    # -- which calls become tasks ------------------------------------------------------------------------------

    def as_task(self, tool: ToolDef, params: dict[str, Any], ex: Exchange) -> bool:
        """Whether this call of `tool` runs as a task; raises when it must be one and cannot."""
        support = tool.task
        if ex.stateless:
            if not declares_extension(ex):
                if support == "required":
                    raise McpError(
                        codes.MISSING_REQUIRED_CLIENT_CAPABILITY,
                        f"Missing required client capability: tool {tool.name} runs only as a task, and this "
                        f"request does not declare the {wire.EXTENSION} extension",
                        _REQUIRED,
                    )
                return False
            # Server-directed. A legacy `task` param is ignored: it neither makes nor unmakes a task.
            return support != "forbidden" and self.runner is not None and self.runner.running
        wanted = params.get("task")
        if wanted is None:
            if support == "required":
                raise McpError(
                    codes.METHOD_NOT_FOUND,
                    f"tool {tool.name} must be called as a task (params.task), per its execution.taskSupport",
                )
            return False
        if not isinstance(wanted, dict):
            raise InvalidParams("params.task must be an object")
        if support == "forbidden" or self.runner is None or not self.runner.running:
            raise McpError(codes.METHOD_NOT_FOUND, f"tool {tool.name} does not run as a task")
        return True

    # -- the methods -------------------------------------------------------------------------------------------

    def _runner(self, ex: Exchange) -> TaskRunner:
        runner = self.runner
        if runner is None or not runner.running:  # a server that runs no tasks does not have these methods
            raise MethodNotFound(ex.method)
        if ex.stateless and not declares_extension(ex):
            raise McpError(
                codes.MISSING_REQUIRED_CLIENT_CAPABILITY,
                f"Missing required client capability: tasks/* need the {wire.EXTENSION} extension declared "
                "in this request's client capabilities",
                _REQUIRED,
            )
        return runner

    async def _record(self, params: dict[str, Any], ex: Exchange) -> tuple[str, TaskRecord]:
        runner = self._runner(ex)
        task_id = _task_id(params)
        rec = await runner.get(task_id, owner_of(ex))
        if rec is None:
            raise _unknown(task_id)
        return task_id, rec

    async def get(self, params: dict[str, Any], ex: Exchange) -> Result:
        _, rec = await self._record(params, ex)
        return wire.detailed(rec) if ex.stateless else wire.task_v1(rec)

    async def update(self, params: dict[str, Any], ex: Exchange) -> Result:
        """2026-07-28: answers to a task's input requests. Each answer to a pending request is checked against
        what was asked, and one bad answer refuses the whole update (nothing is recorded); keys that are not
        pending are ignored, as the spec asks."""
        if not ex.stateless:
            raise MethodNotFound("tasks/update")
        responses = params.get("inputResponses")
        if not isinstance(responses, dict):
            raise InvalidParams("params.inputResponses must be an object")
        if len(responses) > MAX_RESPONSES:
            raise InvalidParams(f"params.inputResponses has {len(responses)} keys; at most {MAX_RESPONSES}")
        task_id, rec = await self._record(params, ex)
        pending = rec.input_requests or {}
        checked = {k: inputrequests.check_answer(k, pending[k], v) for k, v in responses.items() if k in pending}
        if checked and self.runner is not None:
            await self.runner.answer(task_id, owner_of(ex), checked)
        return {}

    async def cancel(self, params: dict[str, Any], ex: Exchange) -> Result:
        task_id, rec = await self._record(params, ex)
        if not ex.stateless and rec.status.terminal:
            raise InvalidParams(f"Cannot cancel task: already in terminal status {str(rec.status)!r}")
        assert self.runner is not None  # _record found the task
        after = await self.runner.cancel(task_id, owner_of(ex))
        if after is None:
            raise _unknown(task_id)
        return {} if ex.stateless else wire.task_v1(after)

    async def list(self, params: dict[str, Any], ex: Exchange) -> Result:
        """2025-11-25: the requester's tasks, oldest first, a page at a time."""
        cursor = params.get("cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidParams("params.cursor must be a string")
        runner = self._runner(ex)
        page, after = await runner.list(owner_of(ex), cursor, LIST_PAGE)
        out: Result = {"tasks": [wire.task_v1(r) for r in page]}
        if after is not None:
            out["nextCursor"] = after
        return out

    async def result(self, params: dict[str, Any], ex: Exchange) -> Result:
        """2025-11-25: what the call would have answered, once the task ends. While it waits, the task's questions
        go to the client on this request's stream (with the related-task `_meta`), and the answers back."""
        task_id, rec = await self._record(params, ex)
        assert self.runner is not None
        owner = owner_of(ex)
        relayed: set[str] = set()
        while not rec.status.terminal:
            fresh = {k: r for k, r in (rec.input_requests or {}).items() if k not in relayed}
            if rec.status is TaskStatus.INPUT_REQUIRED and fresh and ex.send is not None and ex.can_request:
                relayed.update(fresh)
                answers = await self._relay(task_id, fresh, ex)
                if answers:
                    await self.runner.answer(task_id, owner, answers)
            else:
                await self.runner.changed(task_id)
            got = await self.runner.get(task_id, owner)
            if got is None:
                raise _unknown(task_id)
            rec = got
        if rec.status is TaskStatus.COMPLETED:
            out = dict(rec.result or {"content": []})
            out["_meta"] = {**(out.get("_meta") or {}), **wire.related(task_id)}
            return out
        if rec.status is TaskStatus.FAILED:
            err = rec.error or {"code": codes.INTERNAL_ERROR, "message": rec.status_message or "the task failed"}
            raise McpError(err.get("code", codes.INTERNAL_ERROR), err.get("message", ""), err.get("data"))
        raise McpError(codes.INTERNAL_ERROR, "the task was cancelled", {"taskId": task_id, "status": "cancelled"})

    async def _relay(self, task_id: str, requests: dict[str, dict[str, Any]], ex: Exchange) -> dict[str, Any]:
        """Ask the client, on this stream, what the task asks; the checked answers by key (a refusal or a bad
        answer is left out: the task keeps waiting for it, and its own timeout applies)."""

        async def one(key: str, req: dict[str, Any]) -> tuple[str, Any]:
            params = {**(req.get("params") or {}), "_meta": wire.related(task_id)}
            try:
                answer = await ex.client_request(req["method"], params, None)
                return key, inputrequests.check_answer(key, req, answer)
            except (ClientError, NoBackChannel, McpError):
                return key, None

        got = await asyncio.gather(*(one(k, r) for k, r in requests.items()))
        return {k: v for k, v in got if v is not None}
