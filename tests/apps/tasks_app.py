"""Tools for the end-to-end tasks tests: long work, a resumable variant, a question, and cancellation made
visible from outside the process (a marker file), so that a test can tell the coroutine really stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bemcp import App, Context

app = App("tasks-e2e", version="1.0.0")


@app.tool(task="optional")
async def work(seconds: float, text: str) -> str:
    """Sleeps, then returns `text`."""
    await asyncio.sleep(seconds)
    return text


@app.tool(task="optional", resume=True)
async def again(seconds: float, text: str) -> str:
    """As `work`, but safe to run twice: a restart runs it again instead of failing it."""
    await asyncio.sleep(seconds)
    return text


@app.tool(task="optional")
async def confirm(question: str, ctx: Context) -> str:
    """Asks the user, then says what they answered."""
    got = await ctx.elicit(question, {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]})
    return f"answered {got['content']['ok']}" if got.get("action") == "accept" else "declined"


@app.tool(task="optional")
async def watched(seconds: float, marker: str) -> str:
    """Sleeps; if cancelled, writes `marker` first (a file the test can see)."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        Path(marker).write_text("cancelled")  # noqa: ASYNC240 - one tiny write, on the way out
        raise
    return "finished"
