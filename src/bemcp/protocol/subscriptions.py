"""`subscriptions/listen` (2026-07-28): a long-lived stream of the change notifications a client asked for."""

from __future__ import annotations

from typing import Any

from bemcp.errors import InvalidParams, McpError, MethodNotFound
from bemcp.protocol import codes
from bemcp.protocol.calling import Result
from bemcp.protocol.exchange import Exchange
from bemcp.protocol.notify import FILTER_KEYS, SUBSCRIPTION_ID, Listener, Notifier
from bemcp.runtime.refusal import Refusal, RefusalReason
from bemcp.tasks.methods import declares_extension, owner_of
from bemcp.tasks.wire import EXTENSION

MAX_TASK_IDS = 1000


class Subscriptions:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def handlers(self) -> dict[str, Any]:
        return {"subscriptions/listen": self.listen}

    async def listen(self, params: dict[str, Any], ex: Exchange) -> Result:
        """Stream until the client cancels (closing the stream, or `notifications/cancelled` on stdio) or the
        server ends it (a drain: then it answers)."""
        if not ex.stateless:
            raise MethodNotFound("subscriptions/listen")
        wanted = params.get("notifications")
        if not isinstance(wanted, dict):
            raise InvalidParams("subscriptions/listen needs params.notifications (an object)")
        lists = {kind for kind, key in FILTER_KEYS.items() if wanted.get(key) is True}
        for key in FILTER_KEYS.values():
            if key in wanted and not isinstance(wanted[key], bool):
                raise InvalidParams(f"subscriptions/listen: notifications.{key} must be a boolean")
        uris = wanted.get("resourceSubscriptions", [])
        if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
            raise InvalidParams("subscriptions/listen: notifications.resourceSubscriptions must be a list of URIs")
        task_ids = wanted.get("taskIds", [])
        if not isinstance(task_ids, list) or not all(isinstance(t, str) for t in task_ids):
            raise InvalidParams("subscriptions/listen: notifications.taskIds must be a list of task ids")
        if len(task_ids) > MAX_TASK_IDS:
            raise InvalidParams(f"subscriptions/listen: at most {MAX_TASK_IDS} taskIds per stream")
        if task_ids and not declares_extension(ex):
            raise McpError(
                codes.MISSING_REQUIRED_CLIENT_CAPABILITY,
                f"Missing required client capability: task notifications need the {EXTENSION} extension",
                {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
            )
        listener = Listener(ex.request_id, frozenset(lists), frozenset(uris), frozenset(task_ids), owner_of(ex))
        notifier = self.notifier
        if not notifier.add(listener):
            limit = notifier.max_listeners
            raise Refusal(
                RefusalReason.LISTENER_LIMIT,
                1000,
                limit,
                len(notifier.listeners),
                0,
                message=f"Server busy: {limit} subscriptions/listen streams are open",
            )
        try:
            ack: dict[str, Any] = {FILTER_KEYS[kind]: True for kind in sorted(lists)}
            if uris:
                ack["resourceSubscriptions"] = list(dict.fromkeys(uris))
            if task_ids:
                ack["taskIds"] = list(dict.fromkeys(task_ids))
            await ex.notify(
                "notifications/subscriptions/acknowledged",
                {"_meta": {SUBSCRIPTION_ID: ex.request_id}, "notifications": ack},
            )
            while (msg := await listener.queue.get()) is not None:
                await ex.notify(msg["method"], msg["params"])
        finally:
            notifier.remove(listener)
        return {"_meta": {SUBSCRIPTION_ID: ex.request_id}}
