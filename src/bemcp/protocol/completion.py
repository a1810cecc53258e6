"""The completion family: `completion/complete`, answered by the app's completion handler (none: no values)."""

from __future__ import annotations

import asyncio
from typing import Any

from bemcp.app import App, CompletionRequest
from bemcp.errors import InvalidParams
from bemcp.protocol.calling import Result
from bemcp.protocol.exchange import Exchange

MAX_VALUES = 100  # the spec's cap on values in one answer


class Completion:
    def __init__(self, app: App) -> None:
        self.app = app

    def handlers(self) -> dict[str, Any]:
        return {"completion/complete": self.complete}

    async def complete(self, params: dict[str, Any], ex: Exchange) -> Result:
        ref = params.get("ref")
        argument = params.get("argument")
        if not isinstance(ref, dict) or not isinstance(argument, dict):
            raise InvalidParams("completion/complete needs params.ref and params.argument (objects)")
        ref_type = ref.get("type")
        target = ref.get("name") if ref_type == "ref/prompt" else ref.get("uri") if ref_type == "ref/resource" else None
        if not isinstance(target, str):
            raise InvalidParams("params.ref must be {type: 'ref/prompt', name} or {type: 'ref/resource', uri}")
        if ref_type == "ref/prompt" and target not in self.app.prompts:
            raise InvalidParams(f"Unknown prompt: {target}", {"name": target})
        arg_name, value = argument.get("name"), argument.get("value", "")
        if not isinstance(arg_name, str) or not isinstance(value, str):
            raise InvalidParams("params.argument needs name and value (strings)")
        context = params.get("context")
        ctx_args = context.get("arguments") if isinstance(context, dict) else None
        handler = self.app.completion_handler
        values: list[str] = []
        if handler is not None:
            req = CompletionRequest(
                str(ref_type), target, arg_name, value, dict(ctx_args) if isinstance(ctx_args, dict) else {}
            )
            got = handler(req)
            values = list(await got if asyncio.iscoroutine(got) else got)  # type: ignore[arg-type]
        return {
            "completion": {
                "values": values[:MAX_VALUES],
                "total": len(values),
                "hasMore": len(values) > MAX_VALUES,
            }
        }
