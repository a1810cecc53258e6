"""The tools family: `tools/list` and `tools/call`.

A call's arguments are validated against the tool's signature (bad ones are a
tool error the model can correct, as the spec asks), then the tool runs
through `Runtime.run_call`. Whatever the tool raises becomes a tool error
result, except what the protocol or the runtime must answer itself.
"""

from __future__ import annotations

import functools
import logging
import traceback
from typing import TYPE_CHECKING, Any

import pydantic

from bemcp import content
from bemcp.app import App, ToolDef
from bemcp.errors import InvalidParams, ToolError
from bemcp.protocol.calling import Calling, Result, describe_validation
from bemcp.protocol.exchange import Exchange
from bemcp.protocol.tooltasks import PASS_THROUGH, ToolTasks
from bemcp.runtime.pipeline import CallSpec
from bemcp.tasks.live import Handoff

if TYPE_CHECKING:
    from bemcp.tasks.methods import TaskMethods

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
        # Each tool's CallSpec, made on its first call; remade when the name is bound to another tool.
        self._specs: dict[str, tuple[ToolDef, CallSpec]] = {}
        self.as_tasks = ToolTasks(
            calling, tasks, task_timeout, find=self.find, invoke=self._invoke, failed=self.failed, answer=answer
        )

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
                    return await self.as_tasks.start(tool, kwargs, params, ex, None)
                ex.hand_off = True
            try:
                return await self._run_call(spec, functools.partial(self._invoke, tool, kwargs), ex)
            except Handoff as handoff:
                return await self.as_tasks.start(tool, kwargs, params, ex, handoff)
        return await self._run_call(spec, functools.partial(self._invoke, tool, kwargs), ex)

    # -- plain calls --------------------------------------------------------------------------------------------

    def find(self, name: str) -> ToolDef | None:
        return self.app.tools.get(name) or self.extra.get(name)

    def failed(self, tool: ToolDef, e: Exception) -> Result:
        """What a tool's exception answers: a tool error (with the traceback only under --debug)."""
        if isinstance(e, ToolError):
            return _tool_error(str(e))
        debug = self._calling.debug
        log.info("tool %s raised %s", tool.name, type(e).__name__, exc_info=debug)
        text = f"Tool {tool.name} failed: {type(e).__name__}: {e}"
        if debug:
            text += "\n" + traceback.format_exc()
        return _tool_error(text)

    def _spec(self, tool: ToolDef) -> CallSpec:
        timeout = tool.timeout if tool.timeout is not None else self._calling.call_timeout
        spec = CallSpec("tools/call", tool.name, timeout, tool.read_only, tool.essential)
        self._specs[tool.name] = (tool, spec)
        return spec

    async def _invoke(self, tool: ToolDef, kwargs: dict[str, Any]) -> Result:
        try:
            if tool.is_async:
                value = await tool.fn(**kwargs)
            else:
                value = await self._calling.run_sync(tool.fn, kwargs)
        except PASS_THROUGH:
            raise
        except Exception as e:
            return self.failed(tool, e)
        try:  # `answer`, inlined: this is the hot path
            return _result(tool, value)
        except TypeError as e:  # orjson.JSONEncodeError: e.g. an int past 64 bits
            return _tool_error(f"Tool {tool.name} returned a value that cannot be sent as JSON: {e}")


def answer(tool: ToolDef, value: Any) -> Result:
    """The tool's return value as its result, or a tool error when it cannot be sent."""
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
