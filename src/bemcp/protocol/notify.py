"""`Notifier`: change notifications, from the app to the clients that asked for them.

What changes: a resource's content (`App.notify_resource_updated(uri)`) and the lists of tools, resources and
prompts (adding or removing one while serving). Who hears:

- 2025-11-25 peers, on their unsolicited channel (stdout, or the session's GET stream): every list change, and
  `notifications/resources/updated` for the URIs they `resources/subscribe`d to;
- 2026-07-28 `subscriptions/listen` streams (`Listener`), only what their filter asked for, each message tagged with
  the stream's `io.modelcontextprotocol/subscriptionId`.

Task status changes (`task_changed`) go the same ways: `notifications/tasks` (the detailed task) to the listen
streams that named the task in `notifications.taskIds`, and `notifications/tasks/status` to the 2025-11-25 peer
whose task it is. Only changes made in this process are seen.

The app may report a change from any thread (a sync tool, a file watcher): the report is handed to the serving loop,
where changes are coalesced (ten tools added in one go make one `list_changed`) and delivered by one task that
this object owns. A listener has a bounded queue of its own and sends from its own request, so a client that stops
reading loses its own notifications (counted) and never delays anyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from bemcp.protocol import jsonrpc, versions
from bemcp.protocol.jsonrpc import Message

if TYPE_CHECKING:
    from bemcp.protocol.exchange import Peer

log = logging.getLogger("bemcp.protocol")

SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"
LISTS: Final = ("tools", "resources", "prompts")
# The subscriptions/listen filter key for each list.
FILTER_KEYS: Final = {"tools": "toolsListChanged", "resources": "resourcesListChanged", "prompts": "promptsListChanged"}
_LISTENER_QUEUE = 256


@dataclass(eq=False, slots=True)
class Listener:
    """One `subscriptions/listen` stream: what it asked for, and the messages waiting for it (None ends it)."""

    subscription_id: Any
    lists: frozenset[str]
    uris: frozenset[str]
    task_ids: frozenset[str] = frozenset()
    owner: str = ""  # whose tasks it may hear of
    queue: asyncio.Queue[Message | None] = field(default_factory=lambda: asyncio.Queue(_LISTENER_QUEUE))
    dropped: int = 0

    def offer(self, msg: Message) -> None:
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.dropped += 1

    def end(self) -> None:
        """End the stream gracefully (its request answers); always fits, even behind a full queue."""
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()
                self.dropped += 1


# A changed task (its id and owner) as its notifications carry it: (the 2026-07-28 detailed task, the 2025-11-25
# task); None when it is gone.
TaskView = Callable[[str, str], Awaitable["tuple[dict[str, Any], dict[str, Any]] | None"]]


def tagged(method: str, params: dict[str, Any], subscription_id: Any) -> Message:
    """A notification for a listen stream: `_meta` carries the stream's id."""
    return jsonrpc.notification(method, {**params, "_meta": {SUBSCRIPTION_ID: subscription_id}})


class Notifier:
    def __init__(self, peers: set[Peer], *, max_listeners: int = 10_000) -> None:
        self._peers = peers
        self.max_listeners = max_listeners
        self.listeners: set[Listener] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._lists: set[str] = set()  # changed lists not yet delivered
        self._uris: dict[str, None] = {}  # updated resources not yet delivered, in order
        self._task_ids: dict[str, str] = {}  # changed tasks (id -> owner) not yet delivered, in order
        self.task_view: TaskView | None = None  # set by the server that runs tasks
        self.sent = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start delivering, on the running loop."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._deliver_forever(), name="bemcp-notifier")

    def end_listeners(self) -> None:
        """End every listen stream gracefully (a drain: their requests answer and their connections can close)."""
        for listener in list(self.listeners):
            listener.end()

    async def stop(self) -> None:
        self.end_listeners()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._loop = None

    # -- what changed (any thread) ----------------------------------------------

    def list_changed(self, kind: str) -> None:
        if kind not in LISTS:
            raise ValueError(f"unknown list {kind!r}; one of {', '.join(LISTS)}")
        self._on_loop(self._lists.add, kind)

    def resource_updated(self, uri: str) -> None:
        self._on_loop(self._uris.__setitem__, uri, None)

    def task_changed(self, task_id: str, owner: str) -> None:
        """A task's status changed (on the loop): notify whoever may hear of it, if anyone could."""
        if self.task_view is None or not (self._task_listeners() or self._peers):
            return
        self._on_loop(self._task_ids.__setitem__, task_id, owner)

    def _task_listeners(self) -> bool:
        return any(listener.task_ids for listener in self.listeners)

    def _on_loop(self, record: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not serving: nobody can be listening
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                record(*args)
                self._wake_up()
                return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._record_and_wake, record, args)

    def _record_and_wake(self, record: Any, args: tuple[Any, ...]) -> None:
        record(*args)
        self._wake_up()

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- listeners (on the loop) -----------------------------------------------

    def add(self, listener: Listener) -> bool:
        """Register a listen stream; False when the cap is reached."""
        if len(self.listeners) >= self.max_listeners:
            return False
        self.listeners.add(listener)
        return True

    def remove(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    # -- delivery ------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            lists, self._lists = sorted(self._lists), set()
            uris, self._uris = list(self._uris), {}
            tasks, self._task_ids = list(self._task_ids.items()), {}
            try:
                await self._deliver(lists, uris)
                for task_id, owner in tasks:
                    await self._deliver_task(task_id, owner)
            except Exception:  # a broken peer must not stop notifications for the others
                log.exception("delivering change notifications failed")

    async def _deliver(self, lists: Iterable[str], uris: Iterable[str]) -> None:
        messages: list[tuple[str | None, str, Message]] = [
            (kind, "", jsonrpc.notification(f"notifications/{kind}/list_changed", {})) for kind in lists
        ] + [(None, uri, jsonrpc.notification("notifications/resources/updated", {"uri": uri})) for uri in uris]
        for listener in list(self.listeners):
            for kind, uri, msg in messages:
                if (kind in listener.lists) if kind is not None else (uri in listener.uris):
                    listener.offer(tagged(msg["method"], msg.get("params") or {}, listener.subscription_id))
        for peer in list(self._peers):
            send = peer.standalone
            if send is None or peer.closed or peer.protocol_version not in versions.HANDSHAKE:  # initialized ones
                continue
            for kind, uri, msg in messages:
                if kind is not None or uri in peer.subscriptions:
                    await send(msg)
                    self.sent += 1

    async def _deliver_task(self, task_id: str, owner: str) -> None:
        view = self.task_view
        got = await view(task_id, owner) if view is not None else None
        if got is None:
            return
        detailed, task_v1 = got
        for listener in list(self.listeners):
            if task_id in listener.task_ids and listener.owner == owner:
                listener.offer(tagged("notifications/tasks", detailed, listener.subscription_id))
        for peer in list(self._peers):
            send = peer.standalone
            if send is None or peer.closed or peer.protocol_version not in versions.HANDSHAKE:
                continue
            if peer.owns(owner):
                await send(jsonrpc.notification("notifications/tasks/status", task_v1))
                self.sent += 1
