"""`Context`: what a tool may ask of the server while it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bemcp.protocol.exchange import LOG_RANK, Exchange

if TYPE_CHECKING:
    from bemcp.runtime.runtime import Runtime


class Context:
    """Injected into any tool, resource or prompt function with a `ctx: Context` parameter.

    Messages go out on the calling request's own stream, so they reach the
    client that asked, in order, before the result.
    """

    __slots__ = ("_exchange", "_round", "runtime")

    def __init__(self, exchange: Exchange, runtime: Runtime) -> None:
        self._exchange = exchange
        self.runtime = runtime
        self._round = 0

    @property
    def request_id(self) -> str | int:
        return self._exchange.request_id

    @property
    def protocol_version(self) -> str | None:
        return self._exchange.peer.protocol_version

    @property
    def client_capabilities(self) -> dict[str, Any]:
        return self._exchange.peer.client_capabilities

    @property
    def meta(self) -> dict[str, Any]:
        """The request's `_meta`."""
        return self._exchange.meta

    @property
    def cancelled(self) -> bool:
        """True once the client cancelled this request or its deadline passed."""
        return self._exchange.cancel_reason is not None

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; a no-op when the client sent no progress token."""
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
        if ex.modern:
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
        timeout: float | None = 60.0,
    ) -> dict[str, Any]:
        """Ask the client's model for a completion (`sampling/createMessage`); returns its result."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": {"type": "text", "text": messages}}]
        params: dict[str, Any] = {"messages": messages, "maxTokens": max_tokens}
        if system_prompt is not None:
            params["systemPrompt"] = system_prompt
        if temperature is not None:
            params["temperature"] = temperature
        if model_preferences is not None:
            params["modelPreferences"] = model_preferences
        return await self._ask("sampling/createMessage", params, timeout)  # type: ignore[no-any-return]

    async def elicit(self, message: str, schema: dict[str, Any], *, timeout: float | None = 300.0) -> dict[str, Any]:
        """Ask the user for structured input (`elicitation/create`).

        Returns the whole result: `action` is accept, decline or cancel, and
        `content` holds the answer when accepted.
        """
        params = {"mode": "form", "message": message, "requestedSchema": schema}
        return await self._ask("elicitation/create", params, timeout)  # type: ignore[no-any-return]

    async def _ask(self, method: str, params: dict[str, Any], timeout: float | None) -> Any:
        ex = self._exchange
        if ex.modern:
            from bemcp.protocol.mrtr import ask_modern

            key = f"{method.split('/')[0]}-{self._round}"
            self._round += 1
            return ask_modern(ex, key, method, params)
        from bemcp.protocol.mrtr import require_capability

        require_capability(ex, method)
        return await ex.client_request(method, params, timeout)
