"""A `tools/call` run as an MCP task: its durable creation, the task's own exchange, and a run again after a
restart. The tools family decides that a call is a task (`TaskMethods.as_task`) and hands it here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import pydantic

from bemcp.app import ToolDef
from bemcp.errors import McpError
from bemcp.protocol.calling import Calling, Result
from bemcp.protocol.exchange import Exchange, Peer
from bemcp.runtime.pipeline import CallSpec, Suspended
from bemcp.runtime.refusal import Refusal
from bemcp.tasks import wire
from bemcp.tasks.live import Handoff, LiveTask

if TYPE_CHECKING:
    from bemcp.tasks.methods import TaskMethods
    from bemcp.tasks.model import TaskRecord
    from bemcp.tasks.runner import Body

# What a tool's exception must not turn into a tool error: the protocol's and the runtime's own, and the
# Suspended of input rounds and handoffs.
PASS_THROUGH = (McpError, Refusal, asyncio.CancelledError, Suspended)

Invoke = Callable[[ToolDef, dict[str, Any]], Coroutine[Any, Any, Result]]


class ToolTasks:
    def __init__(
        self,
        calling: Calling,
        tasks: TaskMethods | None,
        task_timeout: float | None,
        *,
        find: Callable[[str], ToolDef | None],
        invoke: Invoke,
        failed: Callable[[ToolDef, Exception], Result],
        answer: Callable[[ToolDef, Any], Result],
    ) -> None:
        self._calling = calling
        self._tasks = tasks
        self._task_timeout = task_timeout
        self._find, self._invoke, self._failed, self._answer = find, invoke, failed, answer
        self._specs: dict[str, tuple[ToolDef, CallSpec]] = {}

    def spec(self, tool: ToolDef) -> CallSpec:
        """A task's deadline: the tool's own timeout, else `--task-timeout` (a call's timeout is for callers
        that wait on the line, which a task's do not)."""
        known = self._specs.get(tool.name)
        if known is not None and known[0] is tool:
            return known[1]
        timeout = tool.timeout if tool.timeout is not None else self._task_timeout
        spec = CallSpec("tools/call", tool.name, timeout, tool.read_only, tool.essential)
        self._specs[tool.name] = (tool, spec)
        return spec

    async def start(
        self, tool: ToolDef, kwargs: dict[str, Any], params: dict[str, Any], ex: Exchange, handoff: Handoff | None
    ) -> Result:
        """Create the task (durably) and start it; the answer is the task, not its result."""
        assert self._tasks is not None and self._tasks.runner is not None
        runner = self._tasks.runner
        refused = self._calling.shed(tool.read_only)
        if refused is not None:
            raise refused
        requested = params.get("task")
        ttl = requested.get("ttl") if isinstance(requested, dict) else None
        request = None
        if tool.resume:
            request = {
                "name": tool.name,
                "arguments": params.get("arguments") or {},
                "stateless": ex.stateless,
                "protocolVersion": ex.version,
                "clientCapabilities": ex.capabilities,
            }
        rec = await runner.create(
            self.spec(tool),
            "" if ex.stateless else ex.peer.owner,
            self._body(tool, kwargs, ex, handoff),
            request=request,
            resumable=tool.resume,
            ttl_ms=ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None,
        )
        return wire.created(rec) if ex.stateless else wire.created_v1(rec)

    def _body(self, tool: ToolDef, kwargs: dict[str, Any], ex: Exchange, handoff: Handoff | None) -> Body:
        context_param = tool.signature.context_param

        def body(live: LiveTask) -> Coroutine[Any, Any, Result]:
            # The task's own exchange: the request's revision and capabilities, no stream (a task's questions
            # go through the task), and the task for ctx.ask and ctx.progress to reach.
            tex = Exchange(
                ex.peer,
                live.request_id,
                "tools/call",
                None,
                can_request=False,
                stateless=ex.stateless,
                protocol_version=ex.protocol_version,
                client_capabilities=ex.client_capabilities,
                in_task=live,
            )
            tex.task = live.task
            if handoff is not None:
                ctx = kwargs.get(context_param) if context_param is not None else None
                if ctx is not None:
                    ctx.rebind(tex)  # the ctx the tool handed over now speaks for the task
                return self._handed_off(tool, handoff)
            kw = dict(kwargs)
            if context_param is not None:
                kw[context_param] = self._calling.context(tex)
            return self._invoke(tool, kw)

        return body

    async def _handed_off(self, tool: ToolDef, handoff: Handoff) -> Result:
        try:
            value = await handoff.fn(*handoff.args, **handoff.kwargs)
        except PASS_THROUGH:
            raise
        except Exception as e:
            return self._failed(tool, e)
        return self._answer(tool, value)

    def resume(self, rec: TaskRecord) -> tuple[CallSpec, Body] | None:
        """How a resumable tool's task, claimed after a restart, runs again (None: it cannot)."""
        req = rec.request or {}
        tool = self._find(rec.name)
        if tool is None or not tool.resume:
            return None
        try:
            kwargs = tool.signature.bind(req.get("arguments") or {})
        except pydantic.ValidationError:
            return None
        peer = Peer(req.get("protocolVersion"))
        peer.owner = rec.owner
        caps = req.get("clientCapabilities")
        peer.client_capabilities = caps if isinstance(caps, dict) else {}
        stateless = bool(req.get("stateless"))
        template = Exchange(
            peer,
            f"resume:{rec.task_id[:8]}",
            "tools/call",
            None,
            stateless=stateless,
            protocol_version=req.get("protocolVersion") if stateless else None,
            client_capabilities=peer.client_capabilities if stateless else None,
        )
        return self.spec(tool), self._body(tool, kwargs, template, None)
