"""An app whose latency a test changes while it runs, for the adaptive-limit tests.

`work` sleeps for the latency last set with `set_latency`. That control tool is
registered as essential (it skips admission, as health checks do), so it takes
effect at once instead of queueing behind the load it controls.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from pydantic import Field

from bemcp import App

app = App("latency", version="1.0.0")

_latency = {"seconds": 0.0}


@app.tool(read_only=True)
async def work() -> float:
    """Sleep for the current latency; returns it."""
    seconds = _latency["seconds"]
    await asyncio.sleep(seconds)
    return seconds


async def set_latency(seconds: Annotated[float, Field(ge=0, le=60)]) -> float:
    """Set how long each `work` call sleeps from now on; returns the latency it replaced."""
    before, _latency["seconds"] = _latency["seconds"], seconds
    return before


app.add_tool(set_latency, annotations={"idempotentHint": True}, essential=True)
