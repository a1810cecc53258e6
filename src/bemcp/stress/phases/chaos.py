"""Chaos: a seeded random mix of hostile and heavy operations. Did the server survive and answer everything?"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import orjson

from bemcp.stress.discovery import Call
from bemcp.stress.model import CallResult, Finding, Session
from bemcp.stress.phases.base import PhaseContext, PhaseOutcome

Op = Callable[[Session, random.Random, float], Awaitable[CallResult]]
_OVERSIZED_MB = 5  # past BE-MCP's default 4 MiB body limit
# Answers these kinds are owed; an intentional disconnect is owed none.
_UNOWED = frozenset({"chaos:disconnect"})


def _raw_id(rng: random.Random) -> str:
    # A string: the load's ids are integers, so a raw message's answer can never be taken for a call's.
    return f"chaos-{rng.randrange(1 << 30)}"


def _malformed(rng: random.Random, tool: str) -> bytes:
    good = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": _raw_id(rng),
            "method": "tools/call",
            "params": {"name": tool, "arguments": {"text": "x"}},
        }
    )
    choice = rng.randrange(4)
    if choice == 0:
        return good[: rng.randrange(1, len(good))]  # truncated
    if choice == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))  # noise
    if choice == 2:
        return b'{"jsonrpc": "1.0", "id": [1], "method": 42}'  # well-formed JSON, invalid JSON-RPC
    return b"[" + good + b"," + good + b"]"  # a batch


def _ops(ctx: PhaseContext) -> dict[str, tuple[int, Op]]:
    """Operation name -> (weight, how to run it).

    BE-MCP's workload tools give the heavy and hanging operations; with `--tool`, or on another server, the tool
    calls are the load's own tools (or its protocol methods, when no tool may be called).
    """
    timeout = ctx.profile.call_timeout_s
    plan = ctx.plan
    w = ctx.discovery.workload if plan.source != "--tool" else None
    tools = plan.mix.tools
    # Malformed and oversized messages name a tool of the load: if a server did run them, no other tool ran.
    named = (tools[0].name if tools else "echo").encode()

    async def call(session: Session, name: str, args: dict[str, object]) -> CallResult:
        return await session.call_tool(name, dict(args), timeout=timeout)

    ops: dict[str, tuple[int, Op]] = {
        "malformed": (
            2,
            lambda s, r, t: s.send_raw(_malformed(r, named.decode()), kind="chaos:malformed", timeout=timeout),
        ),
        "oversized": (
            1,
            lambda s, r, t: s.send_raw(
                b'{"jsonrpc":"2.0","id":"' + _raw_id(r).encode() + b'","method":"tools/call","params":'
                b'{"name":"' + named + b'","arguments":{"text":"' + b"x" * (_OVERSIZED_MB << 20) + b'"}}}',
                kind="chaos:oversized",
                timeout=timeout,
            ),
        ),
    }
    if w is not None:
        avail = w.has
        if avail("cpu_burn"):
            ops["cpu"] = (3, lambda s, r, t: call(s, "cpu_burn", {"milliseconds": r.randint(5, 30)}))
        if avail("allocate_memory"):
            ops["memory"] = (
                2,
                lambda s, r, t: call(
                    s,
                    "allocate_memory",
                    {"megabytes": r.choice((4, 8, 16, 32)), "hold_seconds": round(r.uniform(0, 0.1), 3)},
                ),
            )
        if avail("io_write"):
            ops["io"] = (
                2,
                lambda s, r, t: call(s, "io_write", {"kilobytes": r.choice((4, 16, 64)), "files": r.randint(1, 3)}),
            )
        if avail("sleep"):
            ops["sleep"] = (3, lambda s, r, t: call(s, "sleep", {"seconds": round(r.uniform(0, 0.2), 3)}))
            ops["disconnect"] = (
                1,
                lambda s, r, t: s.call_and_disconnect("sleep", {"seconds": 2}, after=round(r.uniform(0.05, 0.2), 3)),
            )
        if avail("recursive_fanout"):
            ops["fanout"] = (
                1,
                lambda s, r, t: call(s, "recursive_fanout", {"depth": r.randint(2, 3), "breadth": r.randint(2, 4)}),
            )
        if avail("hang"):
            ops["hang_cancel"] = (
                1,
                lambda s, r, t: s.call_and_disconnect("hang", {}, after=round(r.uniform(0.1, 0.3), 3)),
            )
        if avail("fail"):
            ops["fail"] = (1, lambda s, r, t: call(s, "fail", {"mode": r.choice(("raise", "tool_error", "is_error"))}))
        if avail("echo"):
            ops["echo"] = (3, lambda s, r, t: call(s, "echo", {"text": "chaos"}))
    else:
        entries = plan.mix.entries
        weights = [e.weight for e in entries]

        def draw(r: random.Random) -> Call:
            # With --tool (or protocol methods) the load's own mix, by weight; else any of the target's own tools.
            if plan.source == "ranked":
                return ctx.discovery.random_call(r)
            return r.choices(entries, weights)[0].make(r)

        def any_call(s: Session, r: random.Random, t: float) -> Awaitable[CallResult]:
            c = draw(r)
            if c.method is not None:
                return s.call_method(c.method, c.arguments or None, kind=c.kind, timeout=timeout)
            return call(s, c.name, c.arguments)

        def drop(s: Session, r: random.Random, t: float) -> Awaitable[CallResult]:
            c = draw(r)
            return s.call_and_disconnect(c.name, c.arguments, after=round(r.uniform(0.01, 0.1), 3))

        ops["tools"] = (8, any_call)
        if tools:  # a disconnect needs a tools/call to cut off
            ops["disconnect"] = (1, drop)
    return ops


async def chaos(ctx: PhaseContext) -> PhaseOutcome:
    p = ctx.profile
    ops = _ops(ctx)
    names = list(ops)
    weights = [ops[n][0] for n in names]
    seeds = [ctx.rng.randrange(1 << 32) for _ in range(p.chaos_concurrency)]
    sent: Counter[str] = Counter()
    step = ctx.recorder.step("chaos", p.chaos_concurrency, model="closed", concurrency=p.chaos_concurrency)
    mark = ctx.mark()
    end = time.monotonic() + p.chaos_s

    async def caller(seed: int) -> None:
        rng = random.Random(seed)  # one stream per caller: the mix is reproducible from --seed
        session = ctx.pool.take()
        try:
            while time.monotonic() < end:
                name = rng.choices(names, weights)[0]
                sent[name] += 1
                result = await ops[name][1](session, rng, p.call_timeout_s)
                step.record(result)
                if result.kind == "chaos:disconnect":
                    # That connection is gone; start the next operation on a fresh session.
                    ctx.pool.discard(session)
                    await session.close()
                    session = ctx.pool.take()
        finally:
            ctx.pool.give(session)

    ctx.say(f"  chaos     {p.chaos_concurrency} callers, {len(names)} operation kinds, {p.chaos_s:g} s")
    await asyncio.gather(*(caller(s) for s in seeds))
    ctx.finish_step(step, mark)
    survived = await ctx.alive("chaos")
    unanswered = sum(
        n
        for kind in step.kinds
        if kind not in _UNOWED
        for outcome, n in step.outcome_counts(kind).items()
        if outcome in ("timeout", "transport_error")
    )
    if unanswered:
        ctx.findings.append(
            Finding(
                "critical" if not survived else "warning",
                "chaos",
                f"{unanswered} chaos operations got no answer.",
                {"unanswered": unanswered},
            )
        )
    return PhaseOutcome(
        "completed" if survived else "aborted",
        "concurrency",
        {
            "survived": survived,
            "answered_all": unanswered == 0,
            "unanswered": unanswered,
            "operations": dict(sorted(sent.items())),
        },
    )
