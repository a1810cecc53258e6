"""A load-generator process of `bemcp stress --workers N`: it applies its share of each HTTP load step.

Run as `python -m bemcp.stress.workerproc`; the parent (`workerpool.WorkerPool`)
talks to it over stdin/stdout, one JSON object per line:

    parent: {"op": "init", "client": HttpTarget.client_params(), "id_base": int, "t0_wall": float}
    worker: {"ok": true, "pid": int}
    parent: {"op": "closed", "phase", "index", "level", "duration", "timeout",
             "calls": [[{"name", "arguments"} | {"name", "method"}, ...] one list per caller]}
          | {"op": "open", "phase", "index", "level", "duration", "timeout",
             "calls": [...], "rate", "stride", "offset", "start_at"}
    worker: {"ok": true, "state": Recorder.to_state()}   one step, numbered as the parent's
          | {"ok": false, "error": "..."}
    parent: {"op": "stop"} or end of input: the worker closes its connections and exits 0.

The worker's stdout is kept for these lines alone: anything else printing to
fd 1 lands on stderr instead.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, BinaryIO

import orjson

from bemcp.stress.discovery import Call
from bemcp.stress.load import SessionPool, closed_step, open_step, raise_fd_limit
from bemcp.stress.recorder import Recorder
from bemcp.stress.targets import HttpTarget

# A reply holds a step's histograms: far more than asyncio's 64 KiB default line.
LINE_LIMIT = 256 * 1024 * 1024


def _calls(wire: list[dict[str, Any]]) -> list[Call]:
    return [
        Call(str(c["name"]), dict(c.get("arguments") or {}), None if c.get("method") is None else str(c["method"]))
        for c in wire
    ]


class Worker:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._target: HttpTarget | None = None
        self._pool: SessionPool | None = None
        self._t0_wall = 0.0

    def reply(self, message: dict[str, Any]) -> None:
        self._out.write(orjson.dumps(message) + b"\n")
        self._out.flush()

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        if op == "init":
            self._target = HttpTarget.joined(cmd["client"], id_base=int(cmd["id_base"]))
            self._pool = SessionPool(self._target)
            self._t0_wall = float(cmd["t0_wall"])
            return {"ok": True, "pid": os.getpid()}
        if op not in ("closed", "open"):
            return {"ok": False, "error": f"unknown op {op!r}"}
        if self._pool is None:
            return {"ok": False, "error": "not initialised"}
        recorder = Recorder(t0_wall=self._t0_wall)
        assert self._target is not None
        before = self._target.tally.snapshot()
        level = float(cmd["level"])
        duration, timeout = float(cmd["duration"]), float(cmd["timeout"])
        if op == "closed":
            callers = [_calls(c) for c in cmd["calls"]]
            step = recorder.step(cmd["phase"], level, model="closed", concurrency=len(callers))
            step.index = int(cmd["index"])
            await closed_step(self._pool, step, callers, duration, timeout)
        else:
            step = recorder.step(cmd["phase"], level, model="open")
            step.index = int(cmd["index"])
            await open_step(
                self._pool,
                step,
                _calls(cmd["calls"]),
                float(cmd["rate"]),
                duration,
                timeout,
                stride=int(cmd["stride"]),
                offset=int(cmd["offset"]),
                start_at=float(cmd["start_at"]),
            )
        step.finish()
        step.add_violations(self._target.tally.since(before))
        return {"ok": True, "state": recorder.to_state()}

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._target is not None:
            await self._target.close()


async def serve(reader: asyncio.StreamReader, out: BinaryIO) -> None:
    worker = Worker(out)
    try:
        while line := await reader.readline():
            try:
                cmd = orjson.loads(line)
                if cmd.get("op") == "stop":
                    break
                answer = await worker.handle(cmd)
            except Exception as e:  # a bad command or a failed step: the parent decides what it means
                answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            worker.reply(answer)
    finally:
        await worker.close()


async def _main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints must not corrupt the protocol
    sys.stdout = sys.stderr
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await serve(reader, out)


def main() -> None:
    raise_fd_limit()
    asyncio.run(_main())


if __name__ == "__main__":
    main()
