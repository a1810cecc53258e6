"""`Context`: what a tool may ask of the server while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bemcp.errors import ClientError
from bemcp.protocol import answers, codes, inputrequests
from bemcp.protocol.exchange import LOG_RANK, Exchange
from bemcp.tasks.live import Handoff

T = TypeVar("T")

if TYPE_CHECKING:
    from bemcp.runtime.memory import MemoryManager


class Context:
    """Injected into any tool, resource or prompt function with a `ctx: Context` parameter.

    Messages go out on the calling request's own stream, so they reach the
    client that asked, in order, before the result.
    """

    __slots__ = ("_exchange", "_memory", "_state")

    def __init__(self, exchange: Exchange, memory: MemoryManager, state: Any = None) -> None:
        self._exchange = exchange
        self._memory = memory
        self._state = state

    def rebind(self, exchange: Exchange) -> None:
        """Speak for another exchange from now on: a call handed to a task (`run_as_task`) keeps its ctx."""
        self._exchange = exchange

    @property
    def state(self) -> Any:
        """What the app's lifespan yielded (`App(lifespan=...)`): a database pool, clients; None without one."""
        return self._state

    @property
    def memory(self) -> MemoryManager:
        """The Smart Memory Manager: `async with ctx.memory.reserve(nbytes):` before allocating much."""
        return self._memory

    @property
    def request_id(self) -> str | int:
        return self._exchange.request_id

    @property
    def protocol_version(self) -> str | None:
        return self._exchange.version

    @property
    def client_capabilities(self) -> dict[str, Any]:
        return self._exchange.capabilities

    @property
    def meta(self) -> dict[str, Any]:
        """The request's `_meta`."""
        return self._exchange.meta

    @property
    def task_id(self) -> str | None:
        """The id of the MCP task this call runs as; None for a plain call."""
        task = self._exchange.in_task
        return task.task_id if task is not None else None

    async def run_as_task(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Hand the rest of this call to a task: the client is answered at once with a task id, and the task's
        result is what `fn(*args, **kwargs)` returns. For a tool declared with `handoff=True`, after it has
        gathered what it needs (2026-07-28 input rounds, say). Where the call cannot become a task (the client
        does not support tasks, or this already is one) `fn` runs here and its value is returned."""
        if self._exchange.hand_off:
            raise Handoff(fn, args, kwargs)
        return await fn(*args, **kwargs)

    @property
    def cancelled(self) -> bool:
        """True once the client cancelled this request or its deadline passed."""
        return self._exchange.cancel_reason is not None

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; a no-op when the client sent no progress token. In a task, it sets the task's
        status message (what `tasks/get` shows) instead."""
        task = self._exchange.in_task
        if task is not None:
            task.progress(progress, total, message)
            return
        token = self._exchange.progress_token
        if token is None:
            return
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self._exchange.notify("notifications/progress", params)

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """Send `notifications/message` if the client's level lets it through."""
        if level not in LOG_RANK:
            raise ValueError(f"unknown log level {level!r}")
        ex = self._exchange
        if ex.stateless:
            if ex.log_level is None or LOG_RANK[level] < LOG_RANK[ex.log_level]:
                return
        elif not ex.peer.wants_log(level):
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        await ex.notify("notifications/message", params)

    async def debug(self, data: Any) -> None:
        await self.log("debug", data)

    async def info(self, data: Any) -> None:
        await self.log("info", data)

    async def warning(self, data: Any) -> None:
        await self.log("warning", data)

    async def error(self, data: Any) -> None:
        await self.log("error", data)

    async def sample(
        self,
        messages: list[dict[str, Any]] | str,
        *,
        max_tokens: int = 512,
        system_prompt: str | None = None,
        temperature: float | None = None,
        model_preferences: dict[str, Any] | None = None,
        key: str = "sample",
        timeout: float | None = 60.0,
    ) -> dict[str, Any]:
        """Ask the client's model for a completion (`sampling/createMessage`); returns its result."""
        req = sampling(
            messages,
            max_tokens=max_tokens,
            system_prompt=system_prompt,
            temperature=temperature,
            model_preferences=model_preferences,
        )
        answer: dict[str, Any] = (await self.ask({key: req}, timeout=timeout))[key]
        return answer

    async def elicit(
        self, message: str, schema: dict[str, Any], *, key: str = "elicit", timeout: float | None = 300.0
    ) -> dict[str, Any]:
        """Ask the user for structured input (`elicitation/create`).

        Returns the whole result: `action` is accept, decline or cancel, and
        `content` holds the answer when accepted.
        """
        answer: dict[str, Any] = (await self.ask({key: elicitation(message, schema)}, timeout=timeout))[key]
        return answer

    async def list_roots(self, *, key: str = "roots", timeout: float | None = 60.0) -> list[dict[str, Any]]:
        """The client's roots (`roots/list`)."""
        answer = (await self.ask({key: {"method": "roots/list", "params": {}}}, timeout=timeout))[key]
        roots: list[dict[str, Any]] = answer["roots"]
        return roots

    async def ask(self, requests: dict[str, dict[str, Any]], *, timeout: float | None = 300.0) -> dict[str, Any]:
        """Send several client requests at once (`{key: {"method", "params"}}`) and return answers by key.

        On 2025-11-25 they go out as requests on this call's stream; on
        2026-07-28 they become one `input_required` result and the call is run
        again with the answers. Keys must be stable across runs of the call.

        An answer that does not answer what was asked (an elicitation's content that does not match its
        schema, a sampling result without a role or typed content) never reaches the tool: on 2025-11-25 this
        raises `ClientError` (code -32602, `data.reason` "invalid_answer"), as for a client that refused; on
        2026-07-28 the retried call is answered -32602 naming the input response.
        """
        ex = self._exchange
        if ex.in_task is not None:  # the task waits, input_required, for answers given to the task
            for req in requests.values():
                inputrequests.require_capability(ex, req["method"])
            return await ex.in_task.ask(requests, timeout)
        if ex.stateless:
            return inputrequests.ask_stateless(ex, requests)
        for req in requests.values():
            inputrequests.require_capability(ex, req["method"])
        if len(requests) == 1:
            ((key, req),) = requests.items()
            return {key: _checked(req, await ex.client_request(req["method"], req["params"], timeout))}
        keys = list(requests)
        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the others' waits
                tasks = [
                    group.create_task(ex.client_request(requests[k]["method"], requests[k]["params"], timeout))
                    for k in keys
                ]
        except BaseExceptionGroup as eg:
            raise eg.exceptions[0] from None
        return {k: _checked(requests[k], t.result()) for k, t in zip(keys, tasks, strict=True)}


def _checked(request: dict[str, Any], answer: Any) -> Any:
    method = request["method"]
    why = answers.problem(method, request.get("params") or {}, answer)
    if why is not None:
        raise ClientError(
            codes.INVALID_PARAMS,
            f"the client's answer to {method} is invalid: {why}",
            {"reason": "invalid_answer", "method": method, "problem": why},
        )
    return answers.clean(method, answer)


def sampling(
    messages: list[dict[str, Any]] | str,
    *,
    max_tokens: int = 512,
    system_prompt: str | None = None,
    temperature: float | None = None,
    model_preferences: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `sampling/createMessage` request for `Context.ask`."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": {"type": "text", "text": messages}}]
    params: dict[str, Any] = {"messages": messages, "maxTokens": max_tokens}
    if system_prompt is not None:
        params["systemPrompt"] = system_prompt
    if temperature is not None:
        params["temperature"] = temperature
    if model_preferences is not None:
        params["modelPreferences"] = model_preferences
    return {"method": "sampling/createMessage", "params": params}


def elicitation(message: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A form-mode `elicitation/create` request for `Context.ask`."""
    return {"method": "elicitation/create", "params": {"mode": "form", "message": message, "requestedSchema": schema}}
