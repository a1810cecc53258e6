"""The user-facing API: `App` and its tool, resource, prompt and completion decorators."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from bemcp import schema

if TYPE_CHECKING:
    from bemcp.protocol.notify import Notifier
    from bemcp.transports.http import HttpTransport

F = TypeVar("F", bound=Callable[..., Any])

# Whether a tool runs as a task (MCP's `execution.taskSupport`): never, when the client can take one, or always.
TaskSupport = Literal["forbidden", "optional", "required"]
TASK_SUPPORT: tuple[TaskSupport, ...] = ("forbidden", "optional", "required")

_HINTS = {
    "read_only": "readOnlyHint",
    "destructive": "destructiveHint",
    "idempotent": "idempotentHint",
    "open_world": "openWorldHint",
}


def _description(fn: Callable[..., Any], given: str | None) -> str | None:
    if given is not None:
        return given
    doc = inspect.getdoc(fn)
    return doc or None


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


@dataclass(slots=True)
class ToolDef:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    signature: schema.Signature
    output: schema.Output | None
    annotations: dict[str, Any]
    timeout: float | None
    wire: dict[str, Any]
    read_only: bool = False
    essential: bool = False  # skips shedding and admission: for health checks only
    task: TaskSupport = "forbidden"
    resume: bool = False  # a task of this tool is run again after a restart, instead of failing
    handoff: bool = False  # starts as a plain call; `ctx.run_as_task` turns the rest into a task
    # The x-mcp-header arguments, found at registration: the HTTP transport checks their Mcp-Param headers.
    param_headers: tuple[schema.ParamHeader, ...] = ()


@dataclass(slots=True)
class ResourceDef:
    uri: str
    fn: Callable[..., Any]
    is_async: bool
    signature: schema.Signature
    mime_type: str | None
    wire: dict[str, Any]
    pattern: re.Pattern[str] | None = None  # set for URI templates
    subscribable: bool = True


@dataclass(slots=True)
class PromptDef:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    signature: schema.Signature
    wire: dict[str, Any]


@dataclass(slots=True)
class CompletionRequest:
    """What `completion/complete` asks: which prompt or resource template, which argument."""

    ref_type: str  # "ref/prompt" or "ref/resource"
    ref: str  # prompt name or template URI
    argument: str
    value: str
    context: dict[str, str] = field(default_factory=dict)


CompletionHandler = Callable[[CompletionRequest], "Awaitable[list[str]] | list[str]"]

_TEMPLATE_VAR = re.compile(r"\{([A-Za-z0-9_]+)\}")


def _template_pattern(uri: str) -> re.Pattern[str]:
    parts: list[str] = []
    last = 0
    for m in _TEMPLATE_VAR.finditer(uri):
        parts.append(re.escape(uri[last : m.start()]))
        parts.append(f"(?P<{m.group(1)}>[^/]+)")
        last = m.end()
    parts.append(re.escape(uri[last:]))
    return re.compile("^" + "".join(parts) + "$")


Lifespan = Callable[["App"], AbstractAsyncContextManager[Any]]


class App:
    """A set of tools, resources and prompts served by BE-MCP.

    >>> app = App("demo", version="1.0")
    >>> @app.tool
    ... def add(a: int, b: int) -> int:
    ...     '''Add two numbers.'''
    ...     return a + b

    `lifespan` is an async context manager factory, entered once when the server starts and left when it
    stops (after a drain); what it yields reaches every tool as `ctx.state`. `tasks` is the task support of
    tools that do not set their own (`@app.tool(task=...)`).
    """

    def __init__(
        self,
        name: str,
        version: str = "0.0.0",
        *,
        instructions: str | None = None,
        title: str | None = None,
        lifespan: Lifespan | None = None,
        tasks: TaskSupport = "forbidden",
    ) -> None:
        if tasks not in TASK_SUPPORT:
            raise ValueError(f"tasks must be one of {', '.join(TASK_SUPPORT)}; got {tasks!r}")
        self.name = name
        self.tasks: TaskSupport = tasks
        self.version = version
        self.title = title
        self.instructions = instructions
        self.lifespan = lifespan
        # Notifiers of the servers serving this app now (see bemcp.protocol.notify); a tuple, read from any thread.
        self._notifiers: tuple[Notifier, ...] = ()
        self.tools: dict[str, ToolDef] = {}
        self.resources: dict[str, ResourceDef] = {}
        self.templates: dict[str, ResourceDef] = {}
        self.prompts: dict[str, PromptDef] = {}
        self.completion_handler: CompletionHandler | None = None

    # -- change notifications ------------------------------------------------

    def notify_resource_updated(self, uri: str) -> None:
        """Tell the clients subscribed to `uri` that it changed (`notifications/resources/updated`).

        Callable from any thread, and at once: delivery happens on the serving loop. A no-op while not serving.
        """
        for notifier in self._notifiers:
            notifier.resource_updated(uri)

    def _changed(self, kind: str) -> None:
        for notifier in self._notifiers:
            notifier.list_changed(kind)

    def attach(self, notifier: Notifier) -> None:
        """Report this app's changes to `notifier` (a server's, while it serves)."""
        if notifier not in self._notifiers:
            self._notifiers = (*self._notifiers, notifier)

    def detach(self, notifier: Notifier) -> None:
        self._notifiers = tuple(n for n in self._notifiers if n is not notifier)

    # -- serving -----------------------------------------------------------

    def run(self, transport: Literal["stdio", "http"] = "stdio", **options: Any) -> None:
        """Serve this app until stopped: stdio by default (`python server.py` as a client's command), or
        `transport="http"`. `options` are `bemcp serve`'s settings by name (`port=9000`, `max_concurrency=200`);
        `BEMCP_*` variables and a `config=` TOML file fill in the rest, as for `bemcp serve`."""
        from bemcp import config, serve
        from bemcp.loader import importing_target

        if importing_target():  # `bemcp serve` is importing this module and serves the app itself
            logging.getLogger("bemcp.serve").info("app.run() skipped: bemcp serve is loading the module")
            return
        config_file = options.pop("config", None)
        cfg = config.load({"transport": transport, **options}, config_file)
        if cfg.supervise:
            serve.supervise_script()
            return
        serve.run(cfg, self)

    def http_app(self, path: str = "/mcp", **options: Any) -> HttpTransport:
        """This app as an ASGI application, to mount in Starlette or FastAPI or to give to any ASGI server.

        Its lifespan starts and stops the runtime and the app's own lifespan. A parent app does not run a
        mounted app's lifespan, so pass it on: `Starlette(routes=[Mount("/tools", mcp)], lifespan=mcp.lifespan)`
        (or enter `mcp.lifespan(app)` inside the parent's own lifespan). The endpoint is `path` under the mount
        prefix, beside `/healthz`, `/readyz` and `/metrics`.
        """
        from bemcp import config, serve

        config_file = options.pop("config", None)
        cfg = config.load({"transport": "http", "path": path, **options}, config_file)
        server, _ = serve.build(cfg, self)
        return serve.http_transport(server, cfg)

    # -- tools -------------------------------------------------------------

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        read_only: bool | None = None,
        destructive: bool | None = None,
        idempotent: bool | None = None,
        open_world: bool | None = None,
        annotations: dict[str, Any] | None = None,
        timeout: float | None = None,
        meta: dict[str, Any] | None = None,
        task: TaskSupport | None = None,
        resume: bool = False,
        handoff: bool = False,
        input_schema: Mapping[str, Any] | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        read_only: bool | None = None,
        destructive: bool | None = None,
        idempotent: bool | None = None,
        open_world: bool | None = None,
        annotations: dict[str, Any] | None = None,
        timeout: float | None = None,
        meta: dict[str, Any] | None = None,
        task: TaskSupport | None = None,
        resume: bool = False,
        handoff: bool = False,
        input_schema: Mapping[str, Any] | None = None,
    ) -> Any:
        """Register a tool. Usable bare (`@app.tool`) or with options (`@app.tool(read_only=True)`).

        `task` says whether a call may run as an MCP task, answered at once with a task id that the client
        polls: "optional" (when the client supports tasks), "required", or "forbidden"; None takes the app's
        `tasks` default. `resume=True` runs a task of this tool again after a server restart, instead of
        failing it: only for tools that are safe to run twice. `handoff=True`: a call starts as a plain call
        (it can ask the client first) and becomes a task where the tool says so, with `ctx.run_as_task`.

        `input_schema` is the tool's own JSON Schema for its arguments, served as given and enforced by a JSON
        Schema validator instead of the signature's types (see `bemcp.rawschema` for how the function receives
        the arguments). A property with `"x-mcp-header": "Name"` (here or in a typed parameter's
        `Field(json_schema_extra=...)`) is mirrored by 2026-07-28 HTTP clients in an `Mcp-Param-Name` header,
        which the server checks against the argument.
        """

        def register(f: F) -> F:
            hints = dict(annotations or {})
            flags = {
                "read_only": read_only,
                "destructive": destructive,
                "idempotent": idempotent,
                "open_world": open_world,
            }
            for key, value in flags.items():
                if value is not None:
                    hints[_HINTS[key]] = value
            if title is not None:
                hints.setdefault("title", title)
            self.add_tool(
                f,
                name=name,
                title=title,
                description=description,
                annotations=hints,
                timeout=timeout,
                meta=meta,
                task=task,
                resume=resume,
                handoff=handoff,
                input_schema=input_schema,
            )
            return f

        return register(fn) if fn is not None else register

    def add_tool(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: dict[str, Any] | None = None,
        timeout: float | None = None,
        meta: dict[str, Any] | None = None,
        essential: bool = False,
        task: TaskSupport | None = None,
        resume: bool = False,
        handoff: bool = False,
        input_schema: Mapping[str, Any] | None = None,
    ) -> ToolDef:
        """Register `fn` as a tool; `essential` tools (health checks) skip load shedding and admission.
        `input_schema`: the arguments' own JSON Schema, as for `tool`."""
        tool_name = name or fn.__name__
        support = self.tasks if task is None else task
        if support not in TASK_SUPPORT:
            raise ValueError(f"task must be one of {', '.join(TASK_SUPPORT)}; got {support!r}")
        if (resume or handoff) and support == "forbidden":
            raise ValueError(f"tool {tool_name}: resume and handoff need task='optional' or 'required'")
        if resume and handoff:
            raise ValueError(f"tool {tool_name}: a handoff tool cannot resume (its task starts mid-call)")
        sig: schema.Signature
        if input_schema is None:
            sig = schema.analyse(fn, f"{tool_name}_arguments")
        else:
            from bemcp import rawschema  # imports jsonschema: paid for only by apps that declare a schema

            sig = rawschema.analyse(fn, input_schema, tool_name)
        param_headers = schema.param_headers(sig.input_schema, tool_name)
        output = schema.output_for(fn)
        wire: dict[str, Any] = {"name": tool_name, "inputSchema": sig.input_schema}
        if title:
            wire["title"] = title
        desc = _description(fn, description)
        if desc:
            wire["description"] = desc
        if output is not None:
            wire["outputSchema"] = output.schema
        if annotations:
            wire["annotations"] = dict(annotations)
        if meta:
            wire["_meta"] = meta
        if support != "forbidden":
            wire["execution"] = {"taskSupport": support}
        hints = dict(annotations or {})
        tool = ToolDef(
            tool_name,
            fn,
            _is_async(fn),
            sig,
            output,
            hints,
            timeout,
            wire,
            read_only=bool(hints.get("readOnlyHint")),
            essential=essential,
            task=support,
            resume=resume,
            handoff=handoff,
            param_headers=param_headers,
        )
        self.tools[tool_name] = tool
        self._changed("tools")
        return tool

    def remove_tool(self, name: str) -> None:
        """Stop offering a tool; clients that listen hear `tools/list_changed`. KeyError if there is none."""
        del self.tools[name]
        self._changed("tools")

    # -- resources ---------------------------------------------------------

    def resource(
        self,
        uri: str,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        mime_type: str | None = None,
        annotations: dict[str, Any] | None = None,
    ) -> Callable[[F], F]:
        """Register a resource; a URI with `{var}` parts is a template whose parts become arguments."""

        def register(fn: F) -> F:
            sig = schema.analyse(fn, f"{fn.__name__}_resource_arguments")
            wire: dict[str, Any] = {"name": name or fn.__name__}
            if title:
                wire["title"] = title
            desc = _description(fn, description)
            if desc:
                wire["description"] = desc
            if mime_type:
                wire["mimeType"] = mime_type
            if annotations:
                wire["annotations"] = annotations
            if _TEMPLATE_VAR.search(uri):
                wire["uriTemplate"] = uri
                self.templates[uri] = ResourceDef(uri, fn, _is_async(fn), sig, mime_type, wire, _template_pattern(uri))
            else:
                wire["uri"] = uri
                self.resources[uri] = ResourceDef(uri, fn, _is_async(fn), sig, mime_type, wire)
            self._changed("resources")
            return fn

        return register

    def remove_resource(self, uri: str) -> None:
        """Stop offering a resource or template (by its URI or URI template). KeyError if there is none."""
        if uri in self.resources:
            del self.resources[uri]
        else:
            del self.templates[uri]
        self._changed("resources")

    def find_resource(self, uri: str) -> tuple[ResourceDef, dict[str, str]] | None:
        res = self.resources.get(uri)
        if res is not None:
            return res, {}
        for tmpl in self.templates.values():
            assert tmpl.pattern is not None
            m = tmpl.pattern.match(uri)
            if m:
                return tmpl, m.groupdict()
        return None

    # -- prompts -----------------------------------------------------------

    def prompt(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
    ) -> Any:
        """Register a prompt; its parameters become the prompt's arguments."""

        def register(f: F) -> F:
            prompt_name = name or f.__name__
            sig = schema.analyse(f, f"{prompt_name}_prompt_arguments")
            required = set(sig.input_schema.get("required", ()))
            args = []
            for arg, prop in sig.input_schema.get("properties", {}).items():
                entry: dict[str, Any] = {"name": arg, "required": arg in required}
                if "description" in prop:
                    entry["description"] = prop["description"]
                args.append(entry)
            wire: dict[str, Any] = {"name": prompt_name, "arguments": args}
            if title:
                wire["title"] = title
            desc = _description(f, description)
            if desc:
                wire["description"] = desc
            self.prompts[prompt_name] = PromptDef(prompt_name, f, _is_async(f), sig, wire)
            self._changed("prompts")
            return f

        return register(fn) if fn is not None else register

    def remove_prompt(self, name: str) -> None:
        """Stop offering a prompt. KeyError if there is none."""
        del self.prompts[name]
        self._changed("prompts")

    # -- completion --------------------------------------------------------

    def completion(self, fn: CompletionHandler) -> CompletionHandler:
        """Register the handler for `completion/complete`; it returns candidate values."""
        self.completion_handler = fn
        return fn
