"""A BE-MCP app whose tool keeps a record of every call that reached it, for admission tests and benchmarks.

    bemcp serve --app tests.stress.reach_app:app

`hold(tag, seconds)` records its tag the moment it runs, then sleeps; `reached()` returns every tag recorded, in
order. A call the server refused never ran the tool, so its tag is not there: that is what admission control
promises, checked by the tool itself rather than by the server's counters.
"""

from __future__ import annotations

import asyncio

from bemcp import App

app = App("reach", version="1.0.0")
REACHED: list[str] = []


@app.tool(read_only=True)
async def hold(tag: str, seconds: float = 0.0) -> str:
    """Record the tag, sleep, return."""
    REACHED.append(tag)
    if seconds > 0:
        await asyncio.sleep(seconds)
    return f"held {tag}"


@app.tool(read_only=True)
async def reached() -> str:
    """Every tag `hold` has recorded, comma-separated, in the order the calls reached it."""
    return ",".join(REACHED)
