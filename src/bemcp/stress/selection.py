"""What carries the load: `--tool NAME[=WEIGHT]` and `--args NAME=JSON`, else the ranking, else protocol methods.

`parse_tool` and `parse_args` check the flags' syntax before anything starts; `plan_load` checks them against what
the target lists and builds the `LoadPlan` the load phases draw their calls from. A mistake is a `SelectionError`
(a `TargetError`: one line, exit 2) that says what is wrong and, when a flag would help, which one.

- With `--tool`: exactly the tools named, weighted (shares of calls). A built-in such as `server_health` may be
  named: the user asked for it.
- Without: the best-ranked of the target's own tools (`Discovery.ranked`).
- With no tool that may be called: the protocol methods the detected revision has (`ping` and `tools/list` on the
  handshake era; `ping` is gone from 2026-07-28, so `tools/list` and `server/discover` there). The plan says why,
  and which flag would let tools be called.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from bemcp.stress.client import is_stateless
from bemcp.stress.discovery import Call, Discovery, Tool, is_builtin, method_call, skip_reason
from bemcp.stress.mix import Mix, MixEntry
from bemcp.stress.targets import TargetError

Source = Literal["ranked", "--tool", "protocol"]
_ARGS_REASON = "cannot generate arguments"
_SHOWN = 10


class SelectionError(TargetError):
    """`--tool` or `--args` cannot be used as given."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    weight: float = 1.0


def parse_tool(value: str) -> ToolSpec:
    """`NAME` or `NAME=WEIGHT`, the weight a positive number."""
    name, eq, weight = value.partition("=")
    name = name.strip()
    if not name:
        raise SelectionError(f"--tool {value!r}: give a tool name, as NAME or NAME=WEIGHT")
    if not eq:
        return ToolSpec(name)
    try:
        w = float(weight)
    except ValueError:
        raise SelectionError(f"--tool {value}: the weight {weight!r} is not a number") from None
    if not (w > 0 and math.isfinite(w)):
        raise SelectionError(f"--tool {value}: the weight must be a positive number")
    return ToolSpec(name, w)


def parse_args(value: str) -> tuple[str, dict[str, Any]]:
    """`NAME=JSON`, the JSON an object of the tool's arguments."""
    name, eq, text = value.partition("=")
    name = name.strip()
    if not name or not eq:
        raise SelectionError(f'--args {value!r}: write it as NAME=JSON, e.g. search=\'{{"q": "x"}}\'')
    try:
        arguments = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise SelectionError(f"--args {name}: not valid JSON ({e})") from None
    if not isinstance(arguments, dict):
        raise SelectionError(f"--args {name}: the arguments must be a JSON object, not {type(arguments).__name__}")
    return name, arguments


def parse_flags(tools: Sequence[str], args: Sequence[str]) -> tuple[list[ToolSpec], dict[str, dict[str, Any]]]:
    """Every `--tool` and `--args` value, parsed; a tool named twice in either is an error."""
    specs = [parse_tool(v) for v in tools]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise SelectionError(f"--tool {spec.name}: given twice (give one weight)")
        seen.add(spec.name)
    fixed: dict[str, dict[str, Any]] = {}
    for value in args:
        name, arguments = parse_args(value)
        if name in fixed:
            raise SelectionError(f"--args {name}: given twice")
        fixed[name] = arguments
    return specs, fixed


@dataclass(slots=True)
class LoadPlan:
    """The mix the load phases call, where it came from, and (protocol methods) why no tool could be called."""

    source: Source
    mix: Mix
    note: str  # one line: what carries the load and why
    hint: str | None = None  # the flags that would let tools be called (protocol methods only)

    def section(self, kinds: Mapping[str, int]) -> dict[str, Any]:
        """report.json's `load`, given the calls the run made by operation kind (`Recorder.totals()`)."""
        tools = {k: n for k, n in kinds.items() if not k.startswith(("chaos:", "rpc:"))}
        methods = {k.removeprefix("rpc:"): n for k, n in kinds.items() if k.startswith("rpc:")}
        period = self.mix.period
        return {
            "source": self.source,
            "note": self.note,
            "hint": self.hint,
            "mix": [
                {"name": e.name, "kind": e.kind, "weight": e.weight, "share": n / period, "arguments": e.arguments}
                for e, n in zip(self.mix.entries, self.mix.slots, strict=True)
            ],
            "tool_calls": sum(tools.values()),
            "tools": _shares(tools),
            "method_calls": sum(methods.values()),
            "methods": _shares(methods),
        }


def _shares(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    total = sum(counts.values())
    return [
        {"name": name, "calls": n, "share": n / total if total else 0.0}
        for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def plan_load(
    discovery: Discovery,
    *,
    tools: Sequence[ToolSpec] = (),
    args: Mapping[str, dict[str, Any]] | None = None,
    allow_writes: bool = False,
    revision: str | None = None,
) -> LoadPlan:
    """Check `--tool`/`--args` against the target's tools and choose the load's mix. Raises SelectionError.

    `--args` fixes the arguments of the tools it names (in `discovery`, so every phase uses them); a tool skipped
    only because its arguments could not be generated becomes callable with them.
    """
    fixed = dict(args or {})
    chosen = {spec.name for spec in tools}
    for name, arguments in fixed.items():
        tool = _policy_checked(discovery, name, "--args", allow_writes=allow_writes, has_args=True)
        if chosen and name not in chosen:
            raise SelectionError(f"--args {name}: {name} is not among the --tool tools ({', '.join(sorted(chosen))})")
        missing = [r for r in tool.required() if r not in arguments]
        if missing:
            raise SelectionError(f"--args {name}: missing required argument(s) {', '.join(missing)}")
        discovery.fix_arguments(tool, arguments)
    if tools:
        entries = []
        for spec in tools:
            tool = _policy_checked(
                discovery, spec.name, "--tool", allow_writes=allow_writes, has_args=spec.name in fixed
            )
            entries.append(_entry(discovery, tool, spec.weight))
        mix = Mix(entries)
        named = ", ".join(f"{e.name} (weight {e.weight:g})" for e in entries)
        return LoadPlan("--tool", mix, f"{named}, as --tool asked")
    ranked = discovery.ranked()
    if ranked:
        top = ranked[0]
        others = len(ranked) - 1
        why = (
            f"the cheapest-looking of the target's {len(ranked)} callable tools (--tool picks others, or a mix)"
            if others
            else "the target's only callable tool of its own"
        )
        return LoadPlan("ranked", Mix([_entry(discovery, top, 1.0)]), f"{top.name}, {why}")
    methods = (
        ("tools/list", "server/discover") if revision is not None and is_stateless(revision) else ("ping", "tools/list")
    )
    mix = Mix([MixEntry(m, 1.0, _constant(m), kind="method", arguments="none") for m in methods])
    reason, hint = _why_no_tool(discovery)
    note = f"the protocol methods {' and '.join(methods)}: no tool may be called ({reason})"
    return LoadPlan("protocol", mix, note, hint)


def _constant(method: str) -> Callable[[random.Random], Call]:
    call = method_call(method)
    return lambda rng: call


def _entry(discovery: Discovery, tool: Tool, weight: float) -> MixEntry:
    fixed = tool.name in discovery.fixed
    return MixEntry(tool.name, weight, discovery.maker(tool), arguments="fixed" if fixed else "generated")


def _policy_checked(discovery: Discovery, name: str, flag: str, *, allow_writes: bool, has_args: bool) -> Tool:
    """The listed tool `name`, if the safety policy lets the tester call it (with `--args`, when given)."""
    tool = discovery.listed(name)
    if tool is None:
        names = [t.name for t in discovery.tools]
        listed = ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
        raise SelectionError(f"{flag} {name}: the target has no tool named {name!r} (it lists: {listed or 'none'})")
    if tool.destructive:
        raise SelectionError(
            f"{flag} {name}: the target marks it destructiveHint, and destructive tools are never called"
        )
    if not tool.read_only and not allow_writes:
        raise SelectionError(f"{flag} {name}: it is not marked readOnlyHint; add --allow-writes to call it")
    reason = skip_reason(tool, allow_writes=allow_writes)
    if reason is not None and not (has_args and reason.startswith(_ARGS_REASON)):
        if reason.startswith(_ARGS_REASON):
            raise SelectionError(f"{flag} {name}: {reason}; give them with --args {name}=JSON")
        raise SelectionError(f"{flag} {name}: it {reason}, which the stress tester does not do")
    return tool


def _short(reason: str) -> str:
    """A skip reason without its advice (the hint gives the flags)."""
    for prefix in ("not marked readOnlyHint", "destructiveHint"):
        if reason.startswith(prefix):
            return prefix
    return reason


def _why_no_tool(discovery: Discovery) -> tuple[str, str | None]:
    """Why none of the target's own tools may be called, and the flags that would change that."""
    if not discovery.tools:
        return "the target lists no tools", None
    builtins = [t.name for t in discovery.callable if is_builtin(t)]
    writes = [n for n, why in discovery.skipped.items() if "readOnlyHint" in why]
    no_args = [n for n, why in discovery.skipped.items() if why.startswith(_ARGS_REASON)]
    parts = [f"{n}: {_short(why)}" for n, why in list(discovery.skipped.items())[:_SHOWN]]
    if len(discovery.skipped) > _SHOWN:
        parts.append(f"{len(discovery.skipped) - _SHOWN} more")
    parts += [f"{n}: BE-MCP's built-in, exempt from admission control" for n in builtins]
    hints = []
    if writes:
        hints.append(f"--allow-writes would call {', '.join(writes[:_SHOWN])}")
    if no_args:
        hints.append(f"--args NAME=JSON would call {', '.join(no_args[:_SHOWN])}")
    if builtins:
        hints.append(f"--tool {builtins[0]} would load the built-in anyway")
    return "; ".join(parts), "; ".join(hints) or None
