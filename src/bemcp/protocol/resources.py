"""The resources family: listing, templates, `resources/read` (a call, through `Runtime.run_call`) and the
handshake era's per-session subscriptions."""

from __future__ import annotations

from typing import Any

import pydantic

from bemcp import content
from bemcp.app import App
from bemcp.errors import InvalidParams, ResourceNotFound
from bemcp.protocol.calling import Calling, Result, describe_validation, validation_detail
from bemcp.protocol.exchange import Exchange
from bemcp.runtime.pipeline import CallSpec


def _uri(params: dict[str, Any], method: str) -> str:
    uri = params.get("uri")
    if not isinstance(uri, str):
        raise InvalidParams(f"{method} needs params.uri (string)")
    return uri


class Resources:
    def __init__(self, app: App, calling: Calling) -> None:
        self.app = app
        self._calling = calling

    def handlers(self) -> dict[str, Any]:
        return {
            "resources/list": self.list,
            "resources/templates/list": self.templates,
            "resources/read": self.read,
            "resources/subscribe": self.subscribe,
            "resources/unsubscribe": self.unsubscribe,
        }

    async def list(self, params: dict[str, Any], ex: Exchange) -> Result:
        return {"resources": [r.wire for r in self.app.resources.values()]}

    async def templates(self, params: dict[str, Any], ex: Exchange) -> Result:
        return {"resourceTemplates": [r.wire for r in self.app.templates.values()]}

    async def read(self, params: dict[str, Any], ex: Exchange) -> Result:
        uri = _uri(params, "resources/read")
        found = self.app.find_resource(uri)
        if found is None:
            if ex.stateless:  # 2026-07-28 renumbered resource-not-found to -32602
                raise InvalidParams(f"Resource not found: {uri}", {"uri": uri})
            raise ResourceNotFound(uri)
        res, variables = found
        try:
            kwargs = res.signature.bind(variables)
        except pydantic.ValidationError as e:
            raise InvalidParams(
                f"Invalid resource URI {uri}: {describe_validation(e)}", {"errors": validation_detail(e)}
            ) from None
        if res.signature.context_param is not None:
            kwargs[res.signature.context_param] = self._calling.context(ex)
        run_sync = self._calling.run_sync

        async def read() -> Result:
            value = await res.fn(**kwargs) if res.is_async else await run_sync(res.fn, kwargs)
            return {"contents": content.resource_contents(uri, res.mime_type, value)}

        return await self._calling.run_call(CallSpec("resources/read", uri, self._calling.call_timeout), read, ex)

    async def subscribe(self, params: dict[str, Any], ex: Exchange) -> Result:
        ex.peer.subscriptions.add(_uri(params, "resources/subscribe"))
        return {}

    async def unsubscribe(self, params: dict[str, Any], ex: Exchange) -> Result:
        ex.peer.subscriptions.discard(_uri(params, "resources/unsubscribe"))
        return {}
