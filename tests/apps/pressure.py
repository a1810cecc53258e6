"""An app that puts real memory pressure on its own server, for the memory-shedding test.

`cache` grows an in-process cache in steps the caller chooses; every page of
each step is touched, so the server's RSS (what its memory manager samples)
really grows by the step. It is read-only: it changes nothing outside the
process, the kind of call a server still serves at `high`, which is what lets
the test drive the level on from `high` to `critical`. `drop_cache` is
registered as essential, like an operator's tool that must work when memory is
short; every other call is refused at `critical`.

The cache is anonymous mmap chunks rather than bytes objects: closing one gives
its pages back to the kernel at once, so RSS falls as soon as it is dropped,
whatever the allocator would keep.
"""

from __future__ import annotations

import mmap
import os
from typing import Annotated, Any

from pydantic import Field

from bemcp import App

MiB = 1024 * 1024
_PAGE = mmap.PAGESIZE

app = App("pressure", version="1.0.0")

_chunks: list[mmap.mmap] = []
_notes: list[str] = []


def _rss() -> int:
    """This process's resident set, from /proc (the figure the memory manager samples)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def _cached() -> int:
    return sum(len(c) for c in _chunks)


@app.tool(read_only=True)
async def cache(megabytes: Annotated[int, Field(ge=1, le=64)]) -> dict[str, Any]:
    """Read `megabytes` more into the in-process cache and keep it; returns the cache size and the RSS after."""
    chunk = mmap.mmap(-1, megabytes * MiB)
    for offset in range(0, len(chunk), _PAGE):
        chunk[offset] = 1  # one write per page makes it resident
    _chunks.append(chunk)
    return {"cached_bytes": _cached(), "rss_bytes": _rss(), "pid": os.getpid()}


@app.tool(read_only=True)
async def peek() -> dict[str, int]:
    """How much is cached (a plain read)."""
    return {"cached_bytes": _cached(), "notes": len(_notes)}


@app.tool
async def note(text: str) -> int:
    """Keep a note (a write); returns how many are kept."""
    _notes.append(text)
    return len(_notes)


async def drop_cache() -> dict[str, int]:
    """Drop the whole cache, giving its pages back to the kernel; returns the bytes freed."""
    freed = _cached()
    while _chunks:
        _chunks.pop().close()
    return {"freed_bytes": freed, "rss_bytes": _rss()}


app.add_tool(drop_cache, annotations={"destructiveHint": False, "idempotentHint": True}, essential=True)
