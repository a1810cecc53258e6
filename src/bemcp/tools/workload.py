"""Workload tools for stress tests (`--stress-tools`): denial-of-service by design, never on by default."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from bemcp.app import App
from bemcp.content import Text, ToolResult
from bemcp.context import Context
from bemcp.errors import BemcpError, ToolError
from bemcp.runtime.registry import CallRegistry
from bemcp.runtime.runtime import Runtime

MiB = 1024 * 1024
_PAGE = 4096
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_FANOUT_NODES = 10_000


class Sandbox:
    """A per-process scratch folder for `io_write`, created on first use and removed by `close()`."""

    def __init__(self) -> None:
        self._root: Path | None = None

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix=f"bemcp-io-{os.getpid()}-")).resolve()
        return self._root

    def path(self, *parts: str) -> Path:
        """A path inside the sandbox; anything that would resolve outside it is refused."""
        path = self.root.joinpath(*parts).resolve()
        if not path.is_relative_to(self.root):
            raise ToolError("path escapes the sandbox")
        return path

    def close(self) -> None:
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


class FanoutLimitReached(BemcpError):
    """A fan-out asked for more sub-tasks than its budget allows; the whole tree was cancelled."""


class Fanout:
    """Trees of sub-tasks for `recursive_fanout`, each bounded by `max_nodes`; live ones count in the registry's
    `subtasks` (the `bemcp_subtasks` gauge)."""

    def __init__(self, calls: CallRegistry, max_nodes: int = MAX_FANOUT_NODES) -> None:
        self._calls = calls
        self.max_nodes = max_nodes

    async def run(self, depth: int, breadth: int) -> int:
        """Run a tree (`breadth` children per node, `depth` levels); returns the node count.

        Raises `FanoutLimitReached` (after cancelling the tree) past `max_nodes`.
        """
        calls, max_nodes = self._calls, self.max_nodes
        created = 0

        def count_node() -> None:
            # Counted before the task is created, so the budget bounds the tasks that exist at all
            # (not just the ones that got to run: every started node creates `breadth` children).
            nonlocal created
            if created >= max_nodes:
                raise FanoutLimitReached(f"fan-out stopped at its budget of {max_nodes} sub-tasks")
            created += 1

        async def node(level: int) -> None:
            calls.subtasks += 1
            try:
                if level == 0:
                    await asyncio.sleep(0)
                    return
                # A TaskGroup owns the children: an error or a cancel anywhere ends the whole tree.
                async with asyncio.TaskGroup() as group:
                    for _ in range(breadth):
                        count_node()
                        group.create_task(node(level - 1))
            finally:
                calls.subtasks -= 1

        count_node()  # the root
        try:
            await node(depth)
        except* FanoutLimitReached as eg:
            raise _first_leaf(eg) from None
        return created


def _first_leaf(group: BaseExceptionGroup[FanoutLimitReached]) -> FanoutLimitReached:
    """The first `FanoutLimitReached` in a group nested one level per tree level."""
    first = group.exceptions[0]
    return first if isinstance(first, FanoutLimitReached) else _first_leaf(first)


class IoResult(BaseModel):
    files: int
    bytes_written: int
    bytes_verified: int
    seconds: float


class FanoutResult(BaseModel):
    nodes: int
    depth: int
    breadth: int


class AllocationResult(BaseModel):
    megabytes: float
    held_seconds: float


def _burn(milliseconds: int) -> dict[str, float]:
    # hashlib drops the GIL on large buffers, so this loads a core without starving the event loop.
    block = os.urandom(MiB)
    rounds = 0
    end = time.perf_counter() + milliseconds / 1000
    while time.perf_counter() < end:
        hashlib.sha256(block).digest()
        rounds += 1
    return {"rounds": rounds, "megabytes_hashed": float(rounds)}


def _allocate(nbytes: int) -> bytearray:
    buf = bytearray(nbytes)
    buf[::_PAGE] = b"\x01" * len(range(0, nbytes, _PAGE))  # touch every page so it is really resident
    return buf


def add_workload_tools(app: App, runtime: Runtime) -> None:
    """Register the workload tools of the stress tester."""
    fanout = Fanout(runtime.calls)

    @app.tool(read_only=True, idempotent=True, open_world=False)
    async def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @app.tool(read_only=True, idempotent=True, open_world=False, task="optional")
    async def sleep(seconds: Annotated[float, Field(ge=0, le=3600)]) -> str:
        """Sleep asynchronously (the event loop stays free); a task when the client supports tasks."""
        await asyncio.sleep(seconds)
        return f"slept {seconds}s"

    @app.tool(read_only=True, idempotent=True, open_world=False, task="optional", resume=True)
    async def task_job(
        seconds: Annotated[float, Field(ge=0, le=3600)],
        token: Annotated[str, Field(max_length=128)],
        ctx: Context,
        ask: bool = False,
    ) -> str:
        """Long work for the stress tester's tasks phase: sleeps, asks the client a yes/no question when `ask`,
        and returns `token` (with the answer), so that a lost or mixed-up result can be told. Resumable: a
        restart runs it again."""
        await asyncio.sleep(seconds)
        if not ask:
            return token
        got = await ctx.elicit(
            f"Go on with {token}?", {"type": "object", "properties": {"go": {"type": "boolean"}}, "required": ["go"]}
        )
        answer = got.get("content", {}).get("go") if got.get("action") == "accept" else None
        return f"{token}:{answer}"

    @app.tool(read_only=True, idempotent=True, open_world=False)
    def cpu_burn(milliseconds: Annotated[int, Field(ge=0, le=60_000)]) -> dict[str, float]:
        """Burn CPU for a while in a worker thread, off the event loop."""
        return _burn(milliseconds)

    @app.tool(read_only=True, idempotent=True, open_world=False)
    async def allocate_memory(
        megabytes: Annotated[float, Field(gt=0, le=1_048_576)],
        hold_seconds: Annotated[float, Field(ge=0, le=600)] = 0.0,
    ) -> AllocationResult:
        """Reserve memory through the memory manager, touch every page, hold it, then free it.

        Refused with a clear error when the reservation would pass the server's memory budget.
        """
        nbytes = int(megabytes * MiB)
        async with runtime.memory.reserve(nbytes) as reservation:
            buf = await runtime.run_sync(_allocate, {"nbytes": nbytes})
            reservation.resident()  # every page is touched: the usage counts it from the next sample
            try:
                await asyncio.sleep(hold_seconds)
            finally:
                del buf
        return AllocationResult(megabytes=megabytes, held_seconds=hold_seconds)

    sandbox = Sandbox()
    runtime.on_stop(sandbox.close)

    @app.tool(read_only=False, destructive=False, idempotent=True, open_world=False)
    def io_write(
        kilobytes: Annotated[int, Field(ge=0, le=1_048_576)],
        files: Annotated[int, Field(ge=1, le=1000)] = 1,
        name: str = "data",
    ) -> IoResult:
        """Write files in a per-process sandbox folder, read them back, verify and delete them."""
        if not _SAFE_NAME.match(name):
            raise ToolError("name must be 1-64 letters, digits, '-' or '_' (files stay in the sandbox)")
        start = time.perf_counter()
        folder = sandbox.path(f"call-{uuid.uuid4().hex}")
        folder.mkdir()
        payload = os.urandom(kilobytes * 1024)
        written = verified = 0
        try:
            for i in range(files):
                path = sandbox.path(folder.name, f"{name}-{i}.bin")
                path.write_bytes(payload)
                written += len(payload)
                if path.read_bytes() != payload:
                    raise ToolError(f"read-back mismatch in {path.name}")
                verified += len(payload)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return IoResult(
            files=files, bytes_written=written, bytes_verified=verified, seconds=round(time.perf_counter() - start, 6)
        )

    @app.tool(read_only=True, idempotent=True, open_world=False)
    async def block_event_loop(milliseconds: Annotated[int, Field(ge=0, le=600_000)]) -> str:
        """Block the event loop on purpose (time.sleep on the loop): for testing the watchdog."""
        time.sleep(milliseconds / 1000)  # noqa: ASYNC251 - blocking the loop is this tool's purpose
        return f"blocked the event loop for {milliseconds} ms"

    @app.tool(read_only=True, idempotent=True, open_world=False)
    async def hang() -> str:
        """Never return until cancelled."""
        await asyncio.Event().wait()
        return "unreachable"

    @app.tool(read_only=True, idempotent=True, open_world=False)
    async def recursive_fanout(
        depth: Annotated[int, Field(ge=0, le=20)], breadth: Annotated[int, Field(ge=1, le=100)]
    ) -> FanoutResult:
        """Spawn a tree of sub-tasks (breadth**depth leaves), bounded by a fan-out budget of 10,000 nodes."""
        try:
            nodes = await fanout.run(depth, breadth)
        except FanoutLimitReached as e:
            raise ToolError(str(e)) from None
        return FanoutResult(nodes=nodes, depth=depth, breadth=breadth)

    @app.tool(read_only=True, idempotent=True, open_world=False)
    async def fail(mode: Literal["raise", "tool_error", "is_error"] = "raise") -> ToolResult:
        """Fail on purpose: raise an unexpected exception, raise a ToolError, or return isError."""
        if mode == "raise":
            raise RuntimeError("fail(mode='raise'): an unexpected exception, on purpose")
        if mode == "tool_error":
            raise ToolError("fail(mode='tool_error'): a tool error, on purpose")
        return ToolResult([Text("fail(mode='is_error'): an error result, on purpose")], is_error=True)
