"""The tasks phase's engine: creates MCP tasks, polls each at the server's pollIntervalMs from one shared
poll loop, answers their questions, cancels a seeded share, and accounts for every task (what counts as lost:
see bemcp.stress.phases.tasks)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bemcp.stress import argsgen
from bemcp.stress.phases.base import PhaseContext
from bemcp.stress.tasks_client import UNKNOWN_TASK, TaskAnswer, TaskClient, TaskState

LEVEL_UNIT = "tasks"
TTL_MS = 600_000  # what a 2025-11-25 creation asks to be kept for: the whole run, with room to spare
RESTARTED = "restart"  # a failure whose message says this is the server's restart, not a loss
_MIN_POLL_S = 0.02
_MAX_POLL_S = 5.0
BACK_TIMEOUT_S = 60.0  # how long the supervisor may take to bring the server back
ERROR_DETAILS_KEPT = 20


@dataclass(slots=True, eq=False)
class TaskRun:
    token: str
    arguments: dict[str, Any]
    expected: str | None  # the result text it must complete with (BE-MCP's task_job); None: any CallToolResult
    go: bool  # the answer it gets, when it asks
    cancel_after: float | None  # seconds after its creation was sent; None: never cancelled
    task_id: str | None = None
    sent: float = 0.0  # monotonic: the creation went out
    accepted: float = 0.0  # monotonic: the creation's answer came (the server counted it unfinished by then)
    unfinished_seen: float | None = None  # monotonic: the send of the last poll that found it unfinished
    created_wall: float = 0.0  # time.time() of the creation's answer (the TTL counts from about then)
    poll_s: float = 0.5
    ttl_s: float | None = None
    end: str | None = None  # completed | failed | cancelled | unresolved
    ended: float | None = None
    lost: str | None = None  # why it is lost: unknown_id, wrong_result, no_result, never_finished
    asked: bool = False  # it asked for input
    answered: set[str] = field(default_factory=set)  # the input-request keys answered
    cancel_sent: bool = False
    restarted: bool = False  # failed saying the server restarted
    streaming: bool = False  # 2025-11-25: a tasks/result stream is open for its questions
    errors_in_row: int = 0
    result: Any = None  # the result text it completed with


def result_text(result: Any) -> str | None:
    """The text a CallToolResult carries: its first content block's text, else structuredContent.result."""
    if not isinstance(result, dict):
        return None
    content = result.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        text = content[0].get("text")
        if isinstance(text, str):
            return text
    structured = result.get("structuredContent")
    if isinstance(structured, dict) and isinstance(structured.get("result"), str):
        return str(structured["result"])
    return None


def percentiles(values: list[float]) -> dict[str, float] | None:
    """p50 and p99 (nearest rank, exact) in ms; None without values."""
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000, 3)

    return {"p50": at(0.50), "p99": at(0.99)}


# -- the shared poll loop ------------------------------------------------------------------------------------------


class TaskEngine:
    """Creates tasks and follows each to its end: one dispatcher pops due actions (poll, cancel, result) off a heap
    into a queue that `pollers` workers drain, so the coroutines are bounded whatever the number of tasks."""

    def __init__(
        self,
        client: TaskClient,
        tool: str,
        *,
        creators: int,
        pollers: int,
        rng: random.Random,
    ) -> None:
        self.client = client
        self.tool = tool
        self.creators = creators
        self.pollers = pollers
        self.rng = rng
        self._heap: list[tuple[float, int, str, TaskRun]] = []
        self._seq = itertools.count()
        self._queue: asyncio.Queue[tuple[str, TaskRun]] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._live = 0
        self._creating = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._ended = asyncio.Event()  # set at every task's end
        self._workers: list[asyncio.Task[None]] = []
        self._answering: set[asyncio.Task[None]] = set()
        self.tasks: list[TaskRun] = []
        # counts over the engine's life (a step reads the difference)
        self.requests: Counter[str] = Counter()
        self.request_errors: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.create_errors: Counter[str] = Counter()
        self.sync_results = 0
        self.answers = 0
        self.create_s: list[float] = []
        self.unanswerable = 0  # 2025-11-25 over stdio: a task asked, and the tester cannot answer there
        self.task_limit: int | None = None  # the server's own limit, as its task_limit refusals state it

    # lifecycle

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._dispatch(), name="bemcp-stress-tasks-dispatch")]
        self._workers += [
            loop.create_task(self._work(), name=f"bemcp-stress-tasks-poller-{i}") for i in range(self.pollers)
        ]

    async def stop(self) -> None:
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, *self._answering, return_exceptions=True)
        self._workers = []

    async def create(self, tasks: list[TaskRun]) -> None:
        """Create every task (at most `creators` at once); each is followed from its creation on."""
        self.tasks += tasks
        self._creating += len(tasks)
        self._idle.clear()
        todo = iter(tasks)

        async def creator() -> None:
            for task in todo:
                try:
                    await self._create(task)
                finally:
                    self._creating -= 1
                    self._check_idle()

        await asyncio.gather(*(creator() for _ in range(min(self.creators, len(tasks)) or 1)))

    async def settle(self, deadline: float) -> None:
        """Wait until every task has ended, or the monotonic `deadline`: then what still runs is unresolved."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        for task in self.tasks:
            if task.task_id is not None and task.end is None:
                self._end(task, "unresolved", lost="never_finished")

    async def until(self, done: Callable[[], bool], deadline: float) -> None:
        """Wait until `done()` (checked at each task's end), or the monotonic `deadline`."""
        while not done():
            self._ended.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), left)

    # scheduling

    def _at(self, due: float, action: str, task: TaskRun) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), action, task))
        self._wake.set()

    async def _dispatch(self) -> None:
        heap, queue = self._heap, self._queue
        while True:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                _, _, action, task = heapq.heappop(heap)
                queue.put_nowait((action, task))
            self._wake.clear()
            timeout = min(heap[0][0] - now, 0.05) if heap else 0.05
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(timeout, 0.001))

    async def _work(self) -> None:
        while True:
            action, task = await self._queue.get()
            if task.end is not None:
                continue
            try:
                if action == "poll":
                    await self._poll(task)
                elif action == "cancel":
                    await self._cancel(task)
                elif action == "result":
                    await self._fetch(task)
                elif action == "stream":
                    await self._stream(task)
            except Exception as e:  # the tester's own bug must not leave a task unfollowed
                self.request_errors[f"tester:{type(e).__name__}"] += 1
                if task.end is None:
                    self._at(time.monotonic() + task.poll_s, "poll", task)

    def _end(self, task: TaskRun, end: str, *, lost: str | None = None) -> None:
        if task.end is not None:
            return
        task.end, task.ended, task.lost = end, time.monotonic(), lost
        self._ended.set()
        self._live -= 1
        self._check_idle()

    def _check_idle(self) -> None:
        if self._live <= 0 and self._creating <= 0:
            self._idle.set()

    # the actions

    async def _create(self, task: TaskRun) -> None:
        task.sent = time.monotonic()
        answer, state = await self.client.create(self.tool, task.arguments)
        self.requests["tools/call"] += 1
        if state is not None:
            task.task_id = state.task_id
            task.accepted = answer.end
            task.created_wall = time.time()
            task.ttl_s = state.ttl_s
            if state.poll_s is not None:
                task.poll_s = min(max(state.poll_s, _MIN_POLL_S), _MAX_POLL_S)
            self._live += 1
            self.create_s.append(answer.latency)
            now = time.monotonic()
            self._at(now if state.terminal else now + task.poll_s, "poll", task)
            if task.cancel_after is not None:
                self._at(task.sent + task.cancel_after, "cancel", task)
        elif answer.outcome == "overload":
            self.refused[answer.detail or "unknown"] += 1
            data = answer.error.get("data") if answer.error is not None else None
            limit = data.get("limit") if isinstance(data, dict) and answer.detail == "task_limit" else None
            if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
                self.task_limit = limit
        elif answer.outcome in ("ok", "tool_error") and answer.result is not None:
            self.sync_results += 1  # the server ran the call at once, as a plain call: no task to follow
        else:
            self.create_errors[f"{answer.outcome}:{answer.detail}" if answer.detail else answer.outcome] += 1

    def _failed_request(self, task: TaskRun, answer: TaskAnswer, action: str) -> None:
        """A request that got no usable answer: counted, and the action retried later (a restart, an overload)."""
        key = f"{answer.outcome}:{answer.detail}" if answer.detail else answer.outcome
        if len(self.request_errors) < ERROR_DETAILS_KEPT or key in self.request_errors:
            self.request_errors[key] += 1
        else:
            self.request_errors["other"] += 1
        task.errors_in_row += 1
        backoff = min(1.0, 0.05 * 2 ** min(task.errors_in_row, 6))
        wait = answer.retry_after() if answer.outcome == "overload" else None
        self._at(time.monotonic() + max(task.poll_s if wait is None else wait, backoff), action, task)

    def _unknown(self, task: TaskRun) -> None:
        """-32602 for a task the server created: lost, unless its TTL has passed (then it may be gone)."""
        if task.ttl_s is not None and time.time() >= task.created_wall + task.ttl_s:
            self._end(task, "unresolved")  # expired: not a loss
        else:
            self._end(task, "unresolved", lost="unknown_id")

    async def _poll(self, task: TaskRun) -> None:
        assert task.task_id is not None
        answer, state = await self.client.get(task.task_id)
        self.requests["tasks/get"] += 1
        if state is None:
            if answer.error_code == UNKNOWN_TASK:
                self._unknown(task)
            else:
                self._failed_request(task, answer, "poll")
            return
        task.errors_in_row = 0
        if not state.terminal:
            task.unfinished_seen = answer.start
        if state.poll_s is not None:
            task.poll_s = min(max(state.poll_s, _MIN_POLL_S), _MAX_POLL_S)
        await self._seen(task, state)

    async def _seen(self, task: TaskRun, state: TaskState) -> None:
        status = state.status
        later = time.monotonic() + task.poll_s
        if status == "completed":
            if self.client.modern:
                self._completed(task, state.result)
            else:
                self._at(time.monotonic(), "result", task)  # 2025-11-25: the result comes from tasks/result
        elif status == "failed":
            task.restarted = RESTARTED in state.failure_text()
            self._end(task, "failed")
        elif status == "cancelled":
            self._end(task, "cancelled")
        elif status == "input_required":
            task.asked = True
            if self.client.modern:
                await self._answer_inputs(task, state)
                self._at(later, "poll", task)
            elif self.client.can_answer_streams:
                if not task.streaming:
                    task.streaming = True
                    self._at(time.monotonic(), "stream", task)
                else:
                    self._at(later, "poll", task)
            else:
                self.unanswerable += 1  # cannot be answered here: cancel it rather than wait forever
                if task.cancel_after is None:
                    task.cancel_after = 0.0
                    self._at(time.monotonic(), "cancel", task)
                self._at(later, "poll", task)
        else:  # working, or a status this tester does not know: look again later
            self._at(later, "poll", task)

    def _completed(self, task: TaskRun, result: Any) -> None:
        text = result_text(result)
        task.result = text
        if not isinstance(result, dict) or not isinstance(result.get("content"), list):
            self._end(task, "completed", lost="no_result")
        elif task.expected is not None and text != task.expected:
            self._end(task, "completed", lost="wrong_result")
        else:
            self._end(task, "completed")

    async def _answer_inputs(self, task: TaskRun, state: TaskState) -> None:
        pending = {k: r for k, r in (state.input_requests or {}).items() if k not in task.answered}
        if not pending:
            return
        assert task.task_id is not None
        responses = {k: answer_for(r, task.go, self.rng) for k, r in pending.items()}
        answer = await self.client.update(task.task_id, responses)
        self.requests["tasks/update"] += 1
        if answer.outcome == "ok":
            task.answered.update(pending)
            self.answers += len(pending)
        elif answer.error_code == UNKNOWN_TASK:
            self._unknown(task)
        else:
            key = f"{answer.outcome}:{answer.detail}" if answer.detail else answer.outcome
            self.request_errors[key] += 1

    async def _cancel(self, task: TaskRun) -> None:
        assert task.task_id is not None
        answer, _ = await self.client.cancel(task.task_id)
        self.requests["tasks/cancel"] += 1
        task.cancel_sent = True
        # 2026-07-28 acks; 2025-11-25 answers the task, or -32602 when it had ended first (the race is no error).
        # Either way the next poll sees how the task ended.
        if answer.outcome not in ("ok", "protocol_error"):
            key = f"{answer.outcome}:{answer.detail}" if answer.detail else answer.outcome
            self.request_errors[key] += 1

    async def _fetch(self, task: TaskRun, on_request: Callable[[dict[str, Any]], None] | None = None) -> None:
        """2025-11-25: `tasks/result` for a task that has ended (or, with `on_request`, one that asks)."""
        assert task.task_id is not None
        answer = await self.client.result(task.task_id, on_request=on_request)
        self.requests["tasks/result"] += 1
        if answer.result is not None:
            self._completed(task, answer.result)
            return
        if answer.error is None:
            self._failed_request(task, answer, "poll")
            return
        data = answer.error.get("data")
        if isinstance(data, dict) and data.get("status") == "cancelled":
            self._end(task, "cancelled")
            return
        # An error: the task's own (it failed), or -32602 for a task the server no longer knows. Ask which.
        got, state = await self.client.get(task.task_id)
        self.requests["tasks/get"] += 1
        if state is None:
            if got.error_code == UNKNOWN_TASK:
                self._unknown(task)
            else:
                self._failed_request(task, got, "poll")
        elif state.status == "failed":
            task.restarted = RESTARTED in f"{answer.error_message} {state.failure_text()}"
            self._end(task, "failed")
        elif state.status == "cancelled":
            self._end(task, "cancelled")
        elif state.status == "completed":
            self._end(task, "completed", lost="no_result")  # completed, and tasks/result would not give it
        else:
            self._at(time.monotonic() + task.poll_s, "poll", task)  # the stream ended before the task did

    async def _stream(self, task: TaskRun) -> None:
        """2025-11-25: hold `tasks/result` open; the task's questions arrive on it and are answered with POSTs."""

        def asked(msg: dict[str, Any]) -> None:
            reply = answer_for({"method": msg.get("method"), "params": msg.get("params")}, task.go, self.rng)
            job = asyncio.get_running_loop().create_task(self._respond(msg.get("id"), reply))
            self._answering.add(job)
            job.add_done_callback(self._answering.discard)

        try:
            await self._fetch(task, on_request=asked)
        finally:
            task.streaming = False

    async def _respond(self, req_id: Any, reply: dict[str, Any]) -> None:
        if await self.client.respond(req_id, reply):
            self.answers += 1
        else:
            self.request_errors["respond_failed"] += 1


def answer_for(request: Any, go: bool, rng: random.Random) -> dict[str, Any]:
    """What the tester answers a task's input request with: BE-MCP's `{"go": boolean}` question gets `go`; any
    other form gets content generated from its requested schema (declined when none can be made); roots and
    sampling get a minimal valid answer; anything else is declined."""
    method = request.get("method") if isinstance(request, dict) else None
    params = request.get("params") if isinstance(request, dict) else None
    params = params if isinstance(params, dict) else {}
    if method == "elicitation/create":
        schema = params.get("requestedSchema")
        props = schema.get("properties") if isinstance(schema, dict) else None
        if isinstance(props, dict) and "go" in props:
            return {"action": "accept", "content": {"go": go}}
        if isinstance(schema, dict):
            try:
                return {"action": "accept", "content": argsgen.samples(schema, rng)[0]}
            except (argsgen.UnsupportedSchema, IndexError):
                pass
        return {"action": "decline"}
    if method == "roots/list":
        return {"roots": []}
    if method == "sampling/createMessage":
        return {
            "role": "assistant",
            "content": {"type": "text", "text": "ok"},
            "model": "bemcp-stress",
            "stopReason": "endTurn",
        }
    if method == "ping":
        return {}
    return {"action": "decline"}


# -- the phase -----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TaskPlan:
    tool: str
    make_arguments: Callable[[str, bool, float], dict[str, Any]]  # (token, ask, seconds) -> arguments
    checks_results: bool  # the expected result is known (task_job)
    can_ask: bool


def new_tasks(ctx: PhaseContext, plan: TaskPlan, n: int, label: str, seconds: float, *, cancels: bool) -> list[TaskRun]:
    p, rng = ctx.profile, ctx.rng
    salt = f"{rng.randrange(1 << 32):08x}"
    out: list[TaskRun] = []
    for i in range(n):
        token = f"{salt}-{label}-{i}"
        ask = plan.can_ask and rng.random() < p.tasks_ask_fraction
        go = rng.random() < 0.5
        cancel = cancels and rng.random() < p.tasks_cancel_fraction
        cancel_after = round(rng.uniform(0.0, max(seconds, 0.05)), 3) if cancel else None
        expected = (f"{token}:{go}" if ask else token) if plan.checks_results else None
        out.append(TaskRun(token, plan.make_arguments(token, ask, seconds), expected, go, cancel_after))
    return out


def unfinished_peak(tasks: list[TaskRun]) -> int:
    """The most of these tasks certainly unfinished at once on the server.

    A task accepted (its creation answered) at a and seen unfinished by a poll sent at u was unfinished all through
    [a, u]; the peak is the most such intervals that overlap. A lower bound of what the server held (it may hold
    other clients' tasks, and a task that ended before its first poll counts for nothing), so a peak past the
    server's own limit of unfinished tasks is a limit it did not keep."""
    events: list[tuple[float, int]] = []
    for t in tasks:
        if t.task_id is not None and t.unfinished_seen is not None and t.unfinished_seen >= t.accepted:
            events += [(t.accepted, 1), (t.unfinished_seen, -1)]
    events.sort(key=lambda e: (e[0], -e[1]))  # an interval that starts where another ends overlaps it
    peak = now = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


def count_tasks(tasks: list[TaskRun]) -> dict[str, Any]:
    ends = Counter(t.end for t in tasks if t.task_id is not None)
    lost = Counter(t.lost for t in tasks if t.lost is not None)
    cancelled_asked = [t for t in tasks if t.cancel_sent]
    done = [t.ended - t.sent for t in tasks if t.end == "completed" and t.ended is not None and t.lost is None]
    return {
        "created": sum(1 for t in tasks if t.task_id is not None),
        "completed": ends["completed"],
        "failed": ends["failed"],
        "cancelled": ends["cancelled"],
        "unresolved": ends["unresolved"],
        "lost": sum(lost.values()),
        "lost_reasons": dict(sorted(lost.items())),
        "failed_restarted": sum(1 for t in tasks if t.end == "failed" and t.restarted),
        "asked": sum(1 for t in tasks if t.asked),
        "cancels_sent": len(cancelled_asked),
        "cancels_won": sum(1 for t in cancelled_asked if t.end == "cancelled"),
        "unrequested_cancels": sum(1 for t in tasks if t.end == "cancelled" and not t.cancel_sent),
        "complete_ms": percentiles(done),
        "unfinished_peak": unfinished_peak(tasks),
    }


class EngineMark:
    """The engine's counters at a step's start: a step reports what changed."""

    def __init__(self, engine: TaskEngine) -> None:
        self.requests = Counter(engine.requests)
        self.request_errors = Counter(engine.request_errors)
        self.refused = Counter(engine.refused)
        self.create_errors = Counter(engine.create_errors)
        self.sync = engine.sync_results
        self.answers = engine.answers
        self.create_n = len(engine.create_s)

    def since(self, engine: TaskEngine) -> dict[str, Any]:
        refused = engine.refused - self.refused
        create_errors = engine.create_errors - self.create_errors
        return {
            "refused": sum(refused.values()),
            "refusal_reasons": dict(sorted(refused.items())),
            "create_errors": sum(create_errors.values()),
            "sync_results": engine.sync_results - self.sync,
            "answers": engine.answers - self.answers,
            "requests": dict(sorted((engine.requests - self.requests).items())),
            "request_errors": sum((engine.request_errors - self.request_errors).values()),
            "error_details": dict(sorted(((engine.request_errors - self.request_errors) + create_errors).items())),
            "create_ms": percentiles(engine.create_s[self.create_n :]),
        }
