"""Discovery, the "agentic" part: what tools the target has, which may be called, and with what arguments.

Safety policy (tool annotations are hints, but they are the only word the server gives us):
- a tool marked `destructiveHint: true` is never called;
- a tool not marked `readOnlyHint: true` is called only with `allow_writes=True` (`--allow-writes`);
- a tool whose `inputSchema` we cannot satisfy (within the budget of `argsgen.Limits`: a hostile pattern or
  size cannot hang the tester), or that requires task-augmented execution, is skipped.
Every skipped tool is kept with its reason for the report. A target with nothing callable raises
`NoCallableTools`, a `TargetError` with a message saying why each tool was left out.

On a BE-MCP target started with `--stress-tools`, `Discovery.workload` offers the workload tools with argument
factories the phases use (`workload.sleep(0.05)`, `workload.allocate_memory(64, hold_seconds=0.5)`, ...).

Task-capable tools (`execution.taskSupport` optional or required) are what the tasks phase calls
(`Discovery.task_tools`): the same safety policy applies, except that requiring a task is no reason to skip one.

Load goes to the target's *own* tools (`Discovery.ranked`): never to BE-MCP's built-in `server_health`, which
skips admission control and would measure what no other call gets (`is_builtin`), and, on a server with tools of
its own, not to the workload set either. `--tool` may still name a built-in (see `selection`).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from bemcp.stress import argsgen
from bemcp.stress.boundedre import Budget
from bemcp.stress.client import ClientError
from bemcp.stress.model import Session
from bemcp.stress.targets import TargetError

WORKLOAD_TOOLS: Final = (
    "echo",
    "sleep",
    "task_job",
    "cpu_burn",
    "allocate_memory",
    "io_write",
    "block_event_loop",
    "hang",
    "recursive_fanout",
    "fail",
    "server_health",
)
# Tools whose presence (with these argument names) marks BE-MCP's workload set.
_WORKLOAD_SIGNATURE: Final = {
    "echo": "text",
    "sleep": "seconds",
    "cpu_burn": "milliseconds",
    "allocate_memory": "megabytes",
    "hang": None,
    "fail": None,
}
# Names that suggest a cheap call, for ranking the tools of plain load on a server we know nothing about.
_CHEAP = re.compile(r"(^|[_.-])(echo|ping|noop|health|status|version|time|now|hello)($|[_.-])", re.IGNORECASE)
# Among those, echo-like tools come first: a health or status tool may be special-cased by its server.
_ECHO = re.compile(r"(^|[_.-])(echo|ping|noop)($|[_.-])", re.IGNORECASE)
BUILTIN_TOOLS: Final = frozenset({"server_health"})
_MAX_PAGES = 100
MAX_TOOLS: Final = 10_000  # a listing past this is cut there: a hostile server cannot list without end
LIST_DEADLINE_S: Final = 60.0  # the whole listing, every page
# Argument generation over every tool of a run: a server listing thousands of costly schemas is bounded too.
RUN_ARGUMENT_STEPS: Final = 20 * argsgen.LIMITS.steps


TASK_REQUIRED: Final = "requires task-augmented execution"


class NoCallableTools(TargetError):
    """The target has no tool the tester may call."""


@dataclass(frozen=True, slots=True)
class Call:
    """One request of the load: a tools/call of tool `name`, or (with `method`) a protocol method such as
    `ping`, whose params are `arguments`."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    method: str | None = None  # None: tools/call

    @property
    def kind(self) -> str:
        """What the recorder files the call under: the tool's name, or `rpc:<method>`."""
        return self.name if self.method is None else f"rpc:{self.method}"


def method_call(method: str) -> Call:
    return Call(method, {}, method)


@dataclass(slots=True)
class Tool:
    """A tool as `tools/list` described it."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    pool: list[dict[str, Any]] | None = None  # argument sets made once (`prepare`); each call draws one

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Tool:
        schema = wire.get("inputSchema")
        annotations = wire.get("annotations")
        description = wire.get("description")
        return cls(
            name=str(wire.get("name")),
            description=description if isinstance(description, str) else "",
            input_schema=schema if isinstance(schema, dict) else {},
            annotations=annotations if isinstance(annotations, dict) else {},
            raw=wire,
        )

    @property
    def read_only(self) -> bool:
        return self.annotations.get("readOnlyHint") is True

    @property
    def destructive(self) -> bool:
        return self.annotations.get("destructiveHint") is True

    def required(self) -> list[str]:
        req = self.input_schema.get("required")
        return [r for r in req if isinstance(r, str)] if isinstance(req, list) else []

    def prepare(self, rng: random.Random, *, shared: Budget | None = None) -> str | None:
        """Make the pool of arguments the load draws from, under the tool's budget (and `shared`, the run's);
        why it cannot be made, or None. Once made, the pool is kept."""
        if self.pool is None:
            try:
                self.pool = argsgen.samples(self.input_schema, rng, shared=shared)
            except argsgen.UnsupportedSchema as e:
                return str(e)
        return None

    def arguments(self, rng: random.Random) -> dict[str, Any]:
        """Valid arguments, drawn from the pool (raises argsgen.UnsupportedSchema when there are none)."""
        if self.pool is None:
            why = self.prepare(random.Random(0))
            if why is not None:
                raise argsgen.UnsupportedSchema(why)
        assert self.pool is not None
        return rng.choice(self.pool)

    def call(self, rng: random.Random) -> Call:
        return Call(self.name, self.arguments(rng))


def is_builtin(tool: Tool) -> bool:
    """BE-MCP's always-on `server_health`, known by its name and its shape: no arguments, read-only, closed-world.

    A tool of another server that only shares a cheap-sounding name (`health`, `status`) is that server's own.
    """
    return (
        tool.name in BUILTIN_TOOLS
        and not tool.required()
        and not (tool.input_schema.get("properties") or {})
        and tool.read_only
        and tool.annotations.get("openWorldHint") is False
    )


def rank_key(tool: Tool) -> tuple[bool, bool, int, int, str]:
    """Cheapest first: echo-like names, then other cheap names, then the fewest required and declared arguments."""
    props = tool.input_schema.get("properties")
    return (
        not _ECHO.search(tool.name),
        not _CHEAP.search(tool.name),
        len(tool.required()),
        len(props) if isinstance(props, dict) else 0,
        tool.name,
    )


def task_support(tool: Tool) -> str | None:
    """The tool's `execution.taskSupport` (optional, required, forbidden), or None when it says nothing."""
    execution = tool.raw.get("execution")
    support = execution.get("taskSupport") if isinstance(execution, dict) else None
    return support if isinstance(support, str) else None


def skip_reason(tool: Tool, *, allow_writes: bool, shared: Budget | None = None, as_task: bool = False) -> str | None:
    """Why the tester must not call this tool, or None when it may (making its arguments' pool, when needed,
    under its own budget and `shared`). `as_task`: called as a task (the tasks phase), so a tool that requires
    task-augmented execution may be."""
    if tool.destructive:
        return "destructiveHint: never called"
    if not tool.read_only and not allow_writes:
        return "not marked readOnlyHint: called only with --allow-writes"
    if not as_task and task_support(tool) == "required":
        return TASK_REQUIRED
    unsupported = tool.prepare(random.Random(0), shared=shared)
    if unsupported is not None:
        return f"cannot generate arguments: {unsupported}"
    return None


class Workload:
    """BE-MCP's workload tools (`--stress-tools`), as argument factories. Only callable tools are offered."""

    def __init__(self, available: frozenset[str], skipped: dict[str, str] | None = None) -> None:
        self.available = available
        self._skipped = skipped or {}

    def has(self, name: str) -> bool:
        return name in self.available

    def _call(self, name: str, **arguments: Any) -> Call:
        if name not in self.available:
            why = self._skipped.get(name, "not offered by the target")
            raise LookupError(f"workload tool {name} cannot be called: {why}")
        return Call(name, arguments)

    def echo(self, text: str = "ping") -> Call:
        return self._call("echo", text=text)

    def sleep(self, seconds: float) -> Call:
        return self._call("sleep", seconds=seconds)

    def task_job(self, seconds: float, token: str, ask: bool = False) -> Call:
        """A task that sleeps, asks `{"go": boolean}` when `ask`, and returns `token` (`token:<go>` when asked)."""
        return self._call("task_job", seconds=seconds, token=token, ask=ask)

    def cpu_burn(self, milliseconds: int) -> Call:
        return self._call("cpu_burn", milliseconds=milliseconds)

    def allocate_memory(self, megabytes: float, hold_seconds: float = 0.0) -> Call:
        return self._call("allocate_memory", megabytes=megabytes, hold_seconds=hold_seconds)

    def io_write(self, kilobytes: int, files: int = 1) -> Call:
        return self._call("io_write", kilobytes=kilobytes, files=files)

    def block_event_loop(self, milliseconds: int) -> Call:
        return self._call("block_event_loop", milliseconds=milliseconds)

    def hang(self) -> Call:
        return self._call("hang")

    def recursive_fanout(self, depth: int, breadth: int) -> Call:
        return self._call("recursive_fanout", depth=depth, breadth=breadth)

    def fail(self, mode: str = "is_error") -> Call:
        """mode: "raise" (an unexpected exception), "tool_error" or "is_error": all answer isError."""
        return self._call("fail", mode=mode)

    def server_health(self) -> Call:
        return self._call("server_health")


@dataclass(slots=True)
class Discovery:
    """What the target offers and what the tester may do with it."""

    tools: list[Tool]
    callable: list[Tool]
    skipped: dict[str, str]
    workload: Workload | None = None
    fixed: dict[str, dict[str, Any]] = field(default_factory=dict)  # --args: arguments given, not generated

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.callable if t.name == name), None)

    def listed(self, name: str) -> Tool | None:
        """Any tool tools/list returned, callable or not."""
        return next((t for t in self.tools if t.name == name), None)

    def fix_arguments(self, tool: Tool, arguments: dict[str, Any]) -> None:
        """Call `tool` with these arguments from now on; a tool skipped only for want of arguments becomes
        callable (the caller has checked the rest of the safety policy)."""
        self.fixed[tool.name] = arguments
        if tool.name in self.skipped:
            del self.skipped[tool.name]
            self.callable.append(tool)

    def maker(self, tool: Tool) -> Callable[[random.Random], Call]:
        """How to make calls to `tool`: its fixed arguments, else fresh generated ones per call."""
        fixed = self.fixed.get(tool.name)
        if fixed is None:
            return tool.call
        call = Call(tool.name, fixed)
        return lambda rng: call

    def own(self) -> list[Tool]:
        """The callable tools that are the target's own: not BE-MCP's built-ins, and not the workload set when
        the server has tools besides it."""
        own = [t for t in self.callable if not is_builtin(t)]
        if self.workload is not None:
            mine = [t for t in own if t.name not in WORKLOAD_TOOLS]
            return mine or own
        return own

    def ranked(self) -> list[Tool]:
        """The target's own callable tools, the cheapest-looking first (`rank_key`): on a server with only
        BE-MCP's tools, the workload's echo (the workload set is only recognised with its echo)."""
        return sorted(self.own(), key=rank_key)

    def load_tool(self) -> Tool | None:
        """The tool for plain load: the best-ranked of the target's own tools; None when it has none."""
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def task_tools(self) -> list[Tool]:
        """The tools that may run as tasks (`execution.taskSupport` optional or required) and that the safety
        policy lets the tester call (requiring a task is no reason to skip one here), the target's own first (not
        BE-MCP's workload set), then the cheapest-looking."""
        capable = [t for t in self.tools if task_support(t) in ("optional", "required") and not is_builtin(t)]

        def allowed(t: Tool) -> bool:
            if t in self.callable:
                return True
            if self.skipped.get(t.name) != TASK_REQUIRED:
                return False  # destructive, not read-only without --allow-writes, or no arguments
            return t.name in self.fixed or t.prepare(random.Random(0)) is None

        ok = [t for t in capable if allowed(t)]
        return sorted(ok, key=lambda t: (t.name in WORKLOAD_TOOLS and self.workload is not None, rank_key(t)))

    def random_call(self, rng: random.Random, *, exclude: frozenset[str] = frozenset()) -> Call:
        """A seeded random call to one of the target's own tools (minus `exclude`), with fresh valid arguments.
        Raises LookupError when it has none."""
        own = self.own()
        pool = [t for t in own if t.name not in exclude] or own
        if not pool:
            raise LookupError("the target has no tool of its own that may be called")
        return self.maker(rng.choice(pool))(rng)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tools_discovered": [t.name for t in self.tools],
            "tools_callable": [t.name for t in self.callable],
            "skipped_tools": dict(self.skipped),
            "workload": sorted(self.workload.available) if self.workload is not None else None,
            "fixed_arguments": sorted(self.fixed),
        }


async def list_tools(session: Session, *, timeout: float, deadline_s: float = LIST_DEADLINE_S) -> list[dict[str, Any]]:
    """Every tool of `tools/list`, following `nextCursor`: at most `_MAX_PAGES` pages, MAX_TOOLS tools and
    `deadline_s` seconds in all (what was listed by then is used). Raises TargetError when the listing fails."""
    tools: list[dict[str, Any]] = []
    cursor: Any = None
    seen: set[str] = set()
    names: set[str] = set()  # a tool listed twice is one tool (the first listing wins)
    end = time.monotonic() + deadline_s
    for page_number in range(_MAX_PAGES):
        left = end - time.monotonic()
        if page_number and left <= 0:
            return tools
        params = {"cursor": cursor} if cursor is not None else None
        msg = await session.request("tools/list", params, timeout=min(timeout, max(left, 0.1)))
        result = msg.get("result")
        if not isinstance(result, dict):
            error = msg.get("error")
            error = error if isinstance(error, dict) else {}
            raise TargetError(f"tools/list failed: error {error.get('code')}: {str(error.get('message'))[:200]}")
        page = result.get("tools")
        if not isinstance(page, list):
            raise TargetError("tools/list answered without a tools array")
        for tool in page:
            if isinstance(tool, dict) and isinstance(tool.get("name"), str) and tool["name"] not in names:
                names.add(tool["name"])
                tools.append(tool)
                if len(tools) >= MAX_TOOLS:
                    return tools
        cursor = result.get("nextCursor")
        if not isinstance(cursor, str) or not cursor or cursor in seen:
            return tools
        seen.add(cursor)
    return tools


async def discover(
    session: Session, *, allow_writes: bool = False, timeout: float = 10.0, require_callable: bool = True
) -> Discovery:
    """List the tools, apply the safety policy, and recognise BE-MCP's workload set.

    Raises TargetError when tools/list fails, and NoCallableTools when nothing may be called (unless
    `require_callable` is False).
    """
    try:
        wire = await list_tools(session, timeout=timeout)
    except ClientError as e:
        raise TargetError(f"tools/list got no answer: {e}") from None
    tools = [Tool.from_wire(w) for w in wire]
    callable_: list[Tool] = []
    skipped: dict[str, str] = {}
    shared = Budget(RUN_ARGUMENT_STEPS)
    for tool in tools:
        reason = skip_reason(tool, allow_writes=allow_writes, shared=shared)
        if reason is None:
            callable_.append(tool)
        else:
            skipped[tool.name] = reason
    found = Discovery(tools, callable_, skipped, _workload(tools, callable_, skipped))
    if require_callable and not callable_:
        raise NoCallableTools(_nothing_callable(tools, skipped))
    return found


def _workload(tools: list[Tool], callable_: list[Tool], skipped: dict[str, str]) -> Workload | None:
    by_name = {t.name: t for t in tools}
    for name, arg in _WORKLOAD_SIGNATURE.items():
        tool = by_name.get(name)
        if tool is None:
            return None
        if arg is not None and arg not in (tool.input_schema.get("properties") or {}):
            return None
    names = {t.name for t in callable_} & set(WORKLOAD_TOOLS)
    return Workload(frozenset(names), {k: v for k, v in skipped.items() if k in WORKLOAD_TOOLS})


def _nothing_callable(tools: list[Tool], skipped: dict[str, str]) -> str:
    if not tools:
        return "the target lists no tools, so there is nothing to call"
    shown = "; ".join(f"{name} ({why})" for name, why in list(skipped.items())[:8])
    more = f"; and {len(skipped) - 8} more" if len(skipped) > 8 else ""
    return f"none of the target's {len(tools)} tools may be called: {shown}{more}"
