"""Tools that misbehave on purpose, for the shutdown and deadline tests.

`block` holds a worker thread and `swallow` ignores its cancellation, each for
as long as the test asks (`seconds`), and ends by itself afterwards, so a test
that fails leaves no work behind for ever. `finished` lets a test see, through
the server, that work it abandoned really ended.
"""

from __future__ import annotations

import asyncio
import threading
import time

from bemcp import App

app = App("stuck", version="1.0.0")

_lock = threading.Lock()
_finished: dict[str, int] = {"block": 0, "swallow": 0}


def _done(kind: str) -> None:
    with _lock:
        _finished[kind] += 1


@app.tool
def block(seconds: float) -> str:
    """Hold a worker thread for `seconds` (a sync tool cannot be interrupted)."""
    try:
        time.sleep(seconds)
    finally:
        _done("block")
    return f"blocked {seconds:g}s"


@app.tool
async def swallow(seconds: float) -> str:
    """Sleep `seconds` on the loop, catching every cancellation and going on regardless."""
    end = asyncio.get_running_loop().time() + seconds
    try:
        while (left := end - asyncio.get_running_loop().time()) > 0:
            try:
                await asyncio.sleep(left)
            except asyncio.CancelledError:
                continue  # the misbehaviour under test: cancellation is ignored
    finally:
        _done("swallow")
    return f"ignored cancellation for {seconds:g}s"


@app.tool
async def wait(seconds: float) -> str:
    """Sleep `seconds` on the loop, as well-behaved async work does (a cancellation ends it)."""
    await asyncio.sleep(seconds)
    return f"waited {seconds:g}s"


@app.tool(read_only=True)
async def finished() -> dict[str, int]:
    """How many `block` and `swallow` calls have really ended (abandoned or not)."""
    with _lock:
        return dict(_finished)


@app.tool(read_only=True)
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text
