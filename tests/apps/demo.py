"""A small app used by the protocol, interop and fuzz tests."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

from bemcp import App, Context, ToolError

app = App("demo", version="1.0.0", instructions="A demo app for tests.")


class Point(BaseModel):
    x: int
    y: int


@app.tool(read_only=True)
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@app.tool
def add(a: int, b: int) -> int:
    """Add two integers (a sync tool, run in the worker pool)."""
    return a + b


@app.tool
async def point(x: int, y: int) -> Point:
    """Return a structured point."""
    return Point(x=x, y=y)


@app.tool
async def slow(steps: int, ctx: Context, delay: float = 0.05) -> str:
    """Report progress for each step, sleeping between steps."""
    for i in range(steps):
        await ctx.progress(i + 1, steps, f"step {i + 1}")
        await asyncio.sleep(delay)
    return "done"


@app.tool
async def sleep(seconds: float) -> str:
    """Sleep asynchronously."""
    await asyncio.sleep(seconds)
    return "slept"


@app.tool
def block(seconds: float) -> str:
    """Sleep in a worker thread."""
    time.sleep(seconds)
    return "blocked"


@app.tool
async def fail(mode: str = "raise") -> str:
    """Fail: `raise` an unexpected exception, or `tool` a ToolError."""
    if mode == "tool":
        raise ToolError("this tool failed on purpose")
    raise RuntimeError("unexpected failure")


@app.tool
async def log(level: str, message: str, ctx: Context) -> str:
    """Send a log notification at a level."""
    await ctx.log(level, message, logger="demo")
    return "logged"


@app.tool
async def ask(question: str, ctx: Context) -> str:
    """Elicit an answer from the user."""
    res = await ctx.elicit(
        question, {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    )
    if res.get("action") != "accept":
        return f"user chose {res.get('action')}"
    return f"answer: {res['content']['answer']}"


@app.tool
async def think(prompt: str, ctx: Context) -> str:
    """Ask the client's model."""
    res = await ctx.sample(prompt, max_tokens=50)
    content = res.get("content", {})
    return f"model said: {content.get('text', '')}"


@app.resource("demo://greeting", mime_type="text/plain")
def greeting() -> str:
    """A static greeting."""
    return "hello"


@app.resource("demo://items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    """An item by id."""
    return {"id": item_id}


@app.prompt
def greet(name: str) -> str:
    """Greet someone."""
    return f"Say hello to {name}."
