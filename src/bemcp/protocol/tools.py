"""The tools family: `tools/list` and `tools/call`.

A call's arguments are validated against the tool's signature (bad ones are a
tool error the model can correct, as the spec asks), then the tool runs
through `Runtime.run_call`. Whatever the tool raises becomes a tool error
result, except what the protocol or the runtime must answer itself.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import pydantic

from bemcp import content
from bemcp.app import App, ToolDef
from bemcp.errors import InvalidParams, McpError, ToolError
from bemcp.protocol.calling import Calling, Result, describe_validation
from bemcp.protocol.exchange import Exchange, Peer
from bemcp.runtime.pipeline import CallSpec, Suspended
from bemcp.runtime.refusal import Refusal
from bemcp.tasks import wire
from bemcp.tasks.live import Handoff, LiveTask

if TYPE_CHECKING:
    from bemcp.tasks.methods import TaskMethods
    from bemcp.tasks.model import TaskRecord
    from bemcp.tasks.runner import Body

log = logging.getLogger("bemcp.protocol")


def _tool_error(text: str) -> Result:
    return {"content": [{"type": "text", "text": text}], "isError": True}


class Tools:
    """Lists and calls the app's tools and the server's own (`extra`: the app's win a name clash)."""

    def __init__(
        self,
        app: App,
        extra: dict[str, ToolDef],
        calling: Calling,
        tasks: TaskMethods | None = None,
        task_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.extra = extra
        self._calling = calling
        self._run_call = calling.run_call
        self._tasks = tasks
        self._task_timeout = task_timeout
        # Each tool's CallSpec, made on its first call; remade when the name is bound to another tool.
        self._specs: dict[str, tuple[ToolDef, CallSpec]] = {}
        self._task_specs: dict[str, tuple[ToolDef, CallSpec]] = {}

    def handlers(self) -> dict[str, Any]:
        return {"tools/list": self.list, "tools/call": self.call}

    async def list(self, params: dict[str, Any], ex: Exchange) -> Result:
        return {"tools": [t.wire for t in (*self.app.tools.values(), *self.extra.values())]}

    async def call(self, params: dict[str, Any], ex: Exchange) -> Result:
        name = params.get("name")
        if not isinstance(name, str):
            raise InvalidParams("tools/call needs params.name (string)")
        tool = self.app.tools.get(name) or self.extra.get(name)
        if tool is None:
            raise InvalidParams(f"Unknown tool: {name}", {"name": name})
        args = params.get("arguments")
        if args is None:
            args = {}
        elif not isinstance(args, dict):
            raise InvalidParams("tools/call params.arguments must be an object")
        try:
            kwargs = tool.signature.bind(args)
        except pydantic.ValidationError as e:
            # The spec (2025-11-25): bad arguments are a tool error the model can correct.
            return _tool_error(f"Invalid arguments for tool {name}: {describe_validation(e)}")
        if tool.signature.context_param is not None:
            kwargs[tool.signature.context_param] = self._calling.context(ex)
        known = self._specs.get(name)
        spec = known[1] if known is not None and known[0] is tool else self._spec(tool)
        if tool.task != "forbidden" or "task" in params:
            tasks = self._tasks
            if tasks is not None and tasks.as_task(tool, params, ex):
                if not tool.handoff:
                    return await self._start_task(tool, kwargs, params, ex, None)
                ex.hand_off = True
            try:
                return await self._run_call(spec, functools.partial(self._invoke, tool, kwargs), ex)
            except Handoff as handoff:
                return await self._start_task(tool, kwargs, params, ex, handoff)
        return await self._run_call(spec, functools.partial(self._invoke, tool, kwargs), ex)

    # -- tasks ------------------------------------------------------------------------------------------------

    def _task_spec(self, tool: ToolDef) -> CallSpec:
        """A task's deadline: the tool's own timeout, else `--task-timeout` (a call's timeout is for callers
        that wait on the line, which a task's do not)."""
        known = self._task_specs.get(tool.name)
        if known is not None and known[0] is tool:
            return known[1]
        timeout = tool.timeout if tool.timeout is not None else self._task_timeout
        spec = CallSpec("tools/call", tool.name, timeout, tool.read_only, tool.essential)
        self._task_specs[tool.name] = (tool, spec)
        return spec

    async def _start_task(
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
        body = self._task_body(tool, kwargs, ex, handoff)
        rec = await runner.create(
            self._task_spec(tool),
            "" if ex.stateless else ex.peer.owner,
            body,
            request=request,
            resumable=tool.resume,
            ttl_ms=ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None,
        )
        return wire.created(rec) if ex.stateless else wire.created_v1(rec)

    def _task_body(self, tool: ToolDef, kwargs: dict[str, Any], ex: Exchange, handoff: Handoff | None) -> Body:
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
                return self._invoke_handoff(tool, handoff)
            kw = dict(kwargs)
            if context_param is not None:
                kw[context_param] = self._calling.context(tex)
            return self._invoke(tool, kw)

        return body

    async def _invoke_handoff(self, tool: ToolDef, handoff: Handoff) -> Result:
        try:
            value = await handoff.fn(*handoff.args, **handoff.kwargs)
        except (McpError, Refusal, asyncio.CancelledError, Suspended):  # Suspended: input rounds, handoffs
            raise
        except Exception as e:
            return self._failed(tool, e)
        try:
            return _result(tool, value)
        except TypeError as e:
            return _tool_error(f"Tool {tool.name} returned a value that cannot be sent as JSON: {e}")

    def resume(self, rec: TaskRecord) -> tuple[CallSpec, Body] | None:
        """How a resumable tool's task, claimed after a restart, runs again (None: it cannot)."""
        req = rec.request or {}
        tool = self.app.tools.get(rec.name) or self.extra.get(rec.name)
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
        return self._task_spec(tool), self._task_body(tool, kwargs, template, None)

    def _failed(self, tool: ToolDef, e: Exception) -> Result:
        debug = self._calling.debug
        if isinstance(e, ToolError):
            return _tool_error(str(e))
        log.info("tool %s raised %s", tool.name, type(e).__name__, exc_info=debug)
        text = f"Tool {tool.name} failed: {type(e).__name__}: {e}"
        if debug:
            text += "\n" + traceback.format_exc()
        return _tool_error(text)

    # -- plain calls --------------------------------------------------------------------------------------------

    def _spec(self, tool: ToolDef) -> CallSpec:
        timeout = tool.timeout if tool.timeout is not None else self._calling.call_timeout
        spec = CallSpec("tools/call", tool.name, timeout, tool.read_only, tool.essential)
        self._specs[tool.name] = (tool, spec)
        return spec

    async def _invoke(self, tool: ToolDef, kwargs: dict[str, Any]) -> Result:
        debug = self._calling.debug
        try:
            if tool.is_async:
                value = await tool.fn(**kwargs)
            else:
                value = await self._calling.run_sync(tool.fn, kwargs)
        except (McpError, Refusal, asyncio.CancelledError, Suspended):  # Suspended: input rounds, handoffs
            raise
        except ToolError as e:
            return _tool_error(str(e))
        except Exception as e:
            log.info("tool %s raised %s", tool.name, type(e).__name__, exc_info=debug)
            text = f"Tool {tool.name} failed: {type(e).__name__}: {e}"
            if debug:
                text += "\n" + traceback.format_exc()
            return _tool_error(text)
        try:
            return _result(tool, value)
        except TypeError as e:  # orjson.JSONEncodeError: e.g. an int past 64 bits
            return _tool_error(f"Tool {tool.name} returned a value that cannot be sent as JSON: {e}")


def _result(tool: ToolDef, value: Any) -> Result:
    """The tool's return value as a CallToolResult: structured when the tool declares an output schema."""
    if isinstance(value, content.ToolResult):
        return value.to_wire()
    out = tool.output
    if out is None:
        return {"content": content.content_list(value)}
    if out.wrapped and type(value) is str:  # the common case, without pydantic
        return {"content": [{"type": "text", "text": value}], "structuredContent": {"result": value}}
    try:
        structured = out.structure(value)
    except pydantic.ValidationError as e:
        return _tool_error(
            f"Tool {tool.name} returned a value that does not match its output schema: {describe_validation(e)}"
        )
    shown = structured["result"] if out.wrapped else structured
    return {"content": content.json_text(shown), "structuredContent": structured}
