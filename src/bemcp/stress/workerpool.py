"""`--workers N`: HTTP load from N processes, this one and N - 1 worker processes (`bemcp.stress.workerproc`).

One Python process drives a few thousand calls per second before its own CPU
becomes the limit (the sampler then flags the step client-bound). The pool
splits every load step across the processes: a closed step's callers are
dealt out (this process keeps the first share, so it always has at least
one), an open step's schedule is interleaved slot by slot. Each worker
records its share in its own `Recorder`, built on this run's origin, and
sends its state back; the step is merged into this run's recorder, so the
report reads as if one process had done it all (histograms, counts and the
time series add up; the client CPU is the busiest process's).

A worker that fails (exits, answers garbage, misses its step's deadline) is
stopped and left out of later steps, whose load the others take on; what
happened is kept in `failures` for the report. The pool owns its processes:
`start()` launches them, `close()` stops them (and kills any that linger).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bemcp.stress.discovery import Call
from bemcp.stress.load import SessionPool, closed_step, open_step
from bemcp.stress.recorder import Recorder, StepRecorder
from bemcp.stress.workerproc import LINE_LIMIT

# A worker's answer may lag its step by the slowest call's timeout; past that and this slack it is given up.
REPLY_SLACK_S = 30.0
START_TIMEOUT_S = 30.0
# Open steps start this far ahead, so every process has the command before the first slot is due.
OPEN_LEAD_S = 0.05


def _wire(calls: Sequence[Call]) -> list[dict[str, Any]]:
    return [
        {"name": c.name, "arguments": c.arguments} if c.method is None else {"name": c.name, "method": c.method}
        for c in calls
    ]


@dataclass(slots=True)
class WorkerFailure:
    worker: int
    phase: str | None
    detail: str


class _Proc:
    def __init__(self, number: int, proc: asyncio.subprocess.Process) -> None:
        self.number = number  # 1 .. N - 1 (this process is 0)
        self.proc = proc
        self.pid = proc.pid

    async def send(self, message: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(orjson.dumps(message) + b"\n")
        await stdin.drain()

    async def receive(self, timeout: float) -> dict[str, Any]:
        stdout = self.proc.stdout
        assert stdout is not None
        line = await asyncio.wait_for(stdout.readline(), timeout)
        if not line:
            raise ConnectionError(f"exited with code {await self.proc.wait()}")
        answer = orjson.loads(line)
        if not isinstance(answer, dict):
            raise ValueError("answered something other than an object")
        if not answer.get("ok"):
            raise RuntimeError(str(answer.get("error", "failed")))
        return answer

    async def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        await self.send(message)
        return await self.receive(timeout)


class WorkerPool:
    """This process plus `count - 1` worker processes sharing every HTTP load step."""

    def __init__(self, count: int, *, python: str = sys.executable) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.count = count
        self._python = python
        self._procs: list[_Proc] = []
        self.failures: list[WorkerFailure] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    @property
    def processes(self) -> int:
        """Processes applying load now: this one and the live workers."""
        return 1 + len(self._procs)

    async def start(self, client_params: dict[str, Any], t0_wall: float) -> None:
        """Launch the workers and have each join the target (no-op with one process, or when started)."""
        if self._procs or self.count == 1:
            return
        for number in range(1, self.count):
            proc = await asyncio.create_subprocess_exec(
                self._python,
                "-m",
                "bemcp.stress.workerproc",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
            )
            self._procs.append(_Proc(number, proc))
        init = {"op": "init", "client": client_params, "t0_wall": t0_wall}
        answers = await asyncio.gather(
            *(p.request({**init, "id_base": p.number << 40}, START_TIMEOUT_S) for p in self._procs),
            return_exceptions=True,
        )
        for p, answer in zip(list(self._procs), answers, strict=True):
            if isinstance(answer, BaseException):
                await self._drop(p, None, f"did not start: {_describe(answer)}")

    async def closed(
        self,
        recorder: Recorder,
        step: StepRecorder,
        pool: SessionPool,
        calls: Sequence[Sequence[Call]],
        duration: float,
        timeout: float,
    ) -> None:
        """A closed step with one caller per entry of `calls`, dealt out over the processes."""
        shares = _deal(calls, self.processes)
        remote = [
            (p, {"op": "closed", "calls": [_wire(c) for c in share]})
            for p, share in zip(self._procs, shares[1:], strict=True)
            if share
        ]
        await self._step(
            recorder, step, remote, duration, timeout, closed_step(pool, step, shares[0], duration, timeout)
        )

    async def open(
        self,
        recorder: Recorder,
        step: StepRecorder,
        pool: SessionPool,
        calls: Sequence[Call],
        rate: float,
        duration: float,
        timeout: float,
    ) -> None:
        """An open step at `rate` calls/s, its schedule interleaved over the processes."""
        stride = self.processes
        start_at = time.monotonic() + (OPEN_LEAD_S if stride > 1 else 0.01)
        wire = _wire(calls)
        common = {"op": "open", "calls": wire, "rate": rate, "stride": stride, "start_at": start_at}
        remote = [(p, {**common, "offset": i + 1}) for i, p in enumerate(self._procs)]
        local = open_step(pool, step, calls, rate, duration, timeout, stride=stride, offset=0, start_at=start_at)
        await self._step(recorder, step, remote, duration, timeout, local)

    async def _step(
        self,
        recorder: Recorder,
        step: StepRecorder,
        remote: list[tuple[_Proc, dict[str, Any]]],
        duration: float,
        timeout: float,
        local: Any,
    ) -> None:
        head = {"phase": step.phase, "index": step.index, "level": step.level, "duration": duration}
        deadline = duration + timeout + REPLY_SLACK_S
        asked: list[tuple[_Proc, asyncio.Task[dict[str, Any]]]] = []
        for p, body in remote:
            asked.append((p, asyncio.create_task(p.request({**head, **body, "timeout": timeout}, deadline))))
        try:
            await local
        except BaseException:
            for p, task in asked:  # mid-step, their answers would be out of turn: they go
                task.cancel()
                await self._drop(p, step.phase, "stopped: the step was abandoned")
            raise
        step.finish()
        answers = await asyncio.gather(*(t for _, t in asked), return_exceptions=True)
        level, concurrency, offered = step.level, step.concurrency, step.offered_rate
        for (p, _), answer in zip(asked, answers, strict=True):
            if isinstance(answer, BaseException):
                await self._drop(p, step.phase, _describe(answer))
                continue
            try:
                recorder.merge(Recorder.from_state(answer["state"]))
            except (KeyError, TypeError, ValueError) as e:
                await self._drop(p, step.phase, f"sent a step that does not merge: {e}")
        # Each process recorded its share as its level; the step is the whole of it.
        step.level, step.concurrency, step.offered_rate = level, concurrency, offered

    async def _drop(self, p: _Proc, phase: str | None, detail: str) -> None:
        self.failures.append(WorkerFailure(p.number, phase, detail))
        if p in self._procs:
            self._procs.remove(p)
        await _stop(p, 0.0)

    async def close(self) -> None:
        procs, self._procs = self._procs, []
        await asyncio.gather(*(_stop(p, 5.0) for p in procs))


async def _stop(p: _Proc, grace: float) -> None:
    """Ask the worker to stop (closing its stdin), then kill it if it lingers past `grace`."""
    if p.proc.returncode is None and grace > 0 and p.proc.stdin is not None:
        with contextlib.suppress(OSError, RuntimeError):
            await p.send({"op": "stop"})
            p.proc.stdin.close()
    try:
        await asyncio.wait_for(p.proc.wait(), grace if grace > 0 else 0.001)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            p.proc.kill()
        await p.proc.wait()


def _deal(calls: Sequence[Sequence[Call]], processes: int) -> list[list[Sequence[Call]]]:
    """Callers dealt round-robin: process 0 gets callers 0, n, 2n, ... (so it always has the first)."""
    return [list(calls[i::processes]) for i in range(processes)]


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "missed its step's deadline"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
