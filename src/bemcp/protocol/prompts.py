"""The prompts family: `prompts/list` and `prompts/get` (a call, through `Runtime.run_call`)."""

from __future__ import annotations

from typing import Any

import pydantic

from bemcp import content
from bemcp.app import App
from bemcp.errors import InvalidParams
from bemcp.protocol.calling import Calling, Result, describe_validation, validation_detail
from bemcp.protocol.exchange import Exchange
from bemcp.runtime.pipeline import CallSpec


class Prompts:
    def __init__(self, app: App, calling: Calling) -> None:
        self.app = app
        self._calling = calling

    def handlers(self) -> dict[str, Any]:
        return {"prompts/list": self.list, "prompts/get": self.get}

    async def list(self, params: dict[str, Any], ex: Exchange) -> Result:
        return {"prompts": [p.wire for p in self.app.prompts.values()]}

    async def get(self, params: dict[str, Any], ex: Exchange) -> Result:
        name = params.get("name")
        if not isinstance(name, str):
            raise InvalidParams("prompts/get needs params.name (string)")
        prompt = self.app.prompts.get(name)
        if prompt is None:
            raise InvalidParams(f"Unknown prompt: {name}", {"name": name})
        args = params.get("arguments") or {}
        if not isinstance(args, dict):
            raise InvalidParams("prompts/get params.arguments must be an object")
        try:
            kwargs = prompt.signature.bind(args)
        except pydantic.ValidationError as e:
            raise InvalidParams(
                f"Invalid arguments for prompt {name}: {describe_validation(e)}", {"errors": validation_detail(e)}
            ) from None
        if prompt.signature.context_param is not None:
            kwargs[prompt.signature.context_param] = self._calling.context(ex)
        run_sync = self._calling.run_sync

        async def get() -> Result:
            value = await prompt.fn(**kwargs) if prompt.is_async else await run_sync(prompt.fn, kwargs)
            res: Result = {"messages": content.prompt_messages(value)}
            if "description" in prompt.wire:
                res["description"] = prompt.wire["description"]
            return res

        return await self._calling.run_call(CallSpec("prompts/get", name, self._calling.call_timeout), get, ex)
