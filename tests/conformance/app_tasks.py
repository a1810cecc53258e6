"""Fixture tools for the alpha suite's tasks scenarios (the `io.modelcontextprotocol/tasks` extension).

Names, arguments and behaviour follow the scenarios' fixture requirements (`tasks-lifecycle`,
`tasks-mrtr-input`, `tasks-mrtr-composition`, ...).
"""

from __future__ import annotations

import asyncio

from bemcp import App, Context, Text, ToolError
from bemcp.context import elicitation
from bemcp.errors import McpError
from bemcp.protocol import codes


def register(app: App) -> None:
    @app.tool
    async def greet(name: str) -> Text:
        """Sync only: greets."""
        return Text(f"Hello, {name}!")

    @app.tool(task="optional")
    async def slow_compute(seconds: float = 1.0, label: str = "") -> Text:
        """Sleeps `seconds` (a task when the client supports them), then says so; cancellable."""
        await asyncio.sleep(seconds)
        return Text(f"computed {label} after {seconds:g}s")

    @app.tool(task="required")
    async def failing_job() -> Text:
        """Always a task; reports a tool error after about a second."""
        await asyncio.sleep(1.0)
        raise ToolError("the job failed, as it always does")

    @app.tool(task="optional")
    async def protocol_error_job() -> Text:
        """A task that ends in a protocol error (not a tool error)."""
        await asyncio.sleep(0.2)
        raise McpError(codes.INTERNAL_ERROR, "the job hit an internal error on purpose")

    confirm_form = {"type": "object", "properties": {"confirm": {"type": "boolean"}}}

    @app.tool(task="optional")
    async def confirm_delete(filename: str, ctx: Context) -> Text:
        """Asks the user to confirm, then 'deletes' the file."""
        res = await ctx.elicit(f"Delete {filename}?", confirm_form, key="confirm")
        if res.get("action") == "accept" and res.get("content", {}).get("confirm"):
            return Text(f"deleted {filename}")
        return Text(f"kept {filename}")

    pair_form = {"type": "object", "properties": {"name": {"type": "string"}, "confirm": {"type": "boolean"}}}

    @app.tool(task="optional")
    async def multi_input(ctx: Context) -> Text:
        """Asks two questions at once; completes when both are answered."""
        got = await ctx.ask(
            {"first": elicitation("First answer?", pair_form), "second": elicitation("Second answer?", pair_form)}
        )
        names = [got[k].get("content", {}).get("name") for k in ("first", "second")]
        return Text(f"answers: {names[0]}, {names[1]}")

    name_form = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}

    async def greet_later(name: str) -> Text:
        await asyncio.sleep(0.2)
        return Text(f"Hello, {name}! (from a task)")

    @app.tool(task="required", handoff=True)
    async def test_tool_with_task(ctx: Context) -> Text:
        """Asks for a name (a plain round trip), then hands the rest of the call to a task."""
        res = await ctx.elicit("What is your name?", name_form, key="user_name")
        name = res.get("content", {}).get("name", "stranger")
        return await ctx.run_as_task(greet_later, name)
