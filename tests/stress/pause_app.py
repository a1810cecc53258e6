"""Small BE-MCP apps with one read-only `echo` tool, for the stress tester's end-to-end tests.

    bemcp serve --app tests.stress.pause_app:app     # echo blocks the event loop 300 ms once a second
    bemcp serve --app tests.stress.pause_app:fast    # echo answers at once
    bemcp serve --app tests.stress.pause_app:slow    # echo sleeps 100 ms (a "regressed" fast)
    bemcp serve --app tests.stress.pause_app:dying   # the process exits (os._exit(1)) at its 2000th call

`app` is the injected pause: the first call in each new second of `time.monotonic()` blocks the whole event
loop for 300 ms (a GC pause, a sync call in async code), every other call returns at once. An open-model load
sees every call that was due during the pause wait for it; a closed model at concurrency 1 sees one slow call.
"""

from __future__ import annotations

import asyncio
import os
import time

from bemcp import App

PAUSE_S = 0.3
PERIOD_S = 1.0
SLOW_S = 0.1
DIE_AFTER = 2000


def build(*, pause_s: float = 0.0, period_s: float = PERIOD_S, sleep_s: float = 0.0, die_after: int = 0) -> App:
    """An app whose `echo` pauses the loop `pause_s` once per `period_s`, sleeps `sleep_s`, or dies."""
    app = App("stress-echo", version="1.0.0")
    state = {"bucket": -1, "calls": 0}

    @app.tool(read_only=True)
    async def echo(text: str) -> str:
        """Return the text unchanged."""
        if pause_s > 0:
            bucket = int(time.monotonic() / period_s)
            if bucket != state["bucket"]:
                state["bucket"] = bucket
                time.sleep(pause_s)  # noqa: ASYNC251 - the point: the event loop stops
        if sleep_s > 0:
            await asyncio.sleep(sleep_s)
        if die_after:
            state["calls"] += 1
            if state["calls"] >= die_after:
                os._exit(1)
        return text

    return app


app = build(pause_s=PAUSE_S)
fast = build()
slow = build(sleep_s=SLOW_S)
dying = build(die_after=DIE_AFTER)
