"""Method dispatch: one inbound JSON-RPC message in, at most one response out.

Transports own framing and streams; this module owns the envelope around
every method (the revision checks, the 2026-07-28 `_meta`, the result's
caching hints) and is the one exception boundary: `handle_request` turns
whatever a handler raises into exactly one answer, so a client can never
crash the server. What each method means lives in its family's module
(lifecycle, tools, resources, prompts, completion, subscriptions).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bemcp.app import App, ToolDef
from bemcp.context import Context
from bemcp.errors import McpError, MethodNotFound
from bemcp.protocol import codes, inputrequests, jsonrpc, versions
from bemcp.protocol.calling import Calling
from bemcp.protocol.completion import Completion
from bemcp.protocol.exchange import Exchange, Peer
from bemcp.protocol.jsonrpc import Kind, Message
from bemcp.protocol.lifecycle import Lifecycle
from bemcp.protocol.notify import Notifier
from bemcp.protocol.prompts import Prompts
from bemcp.protocol.refusals import cut_off_error, refused
from bemcp.protocol.resources import Resources
from bemcp.protocol.subscriptions import Subscriptions
from bemcp.protocol.tools import Tools
from bemcp.runtime.cancel import CancelReason, CutOff
from bemcp.runtime.refusal import Refusal
from bemcp.tasks import wire as task_wire
from bemcp.tasks.methods import TaskMethods
from bemcp.tasks.runner import TaskConfig, TaskRunner, default_state_dir

if TYPE_CHECKING:
    from bemcp.runtime.runtime import Runtime

log = logging.getLogger("bemcp.protocol")

Handler = Callable[[dict[str, Any], Exchange], Awaitable[dict[str, Any] | None]]

# Methods a handshake-era client may send before `initialize` completes.
_PRE_INIT = frozenset({"initialize", "ping"})
# Removed in 2026-07-28: answered -32601 on 2026-07-28 requests (tasks/result and tasks/list: by the tasks
# extension, which inlines results in tasks/get and has no listing).
_LEGACY_ONLY = frozenset(
    {
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
        "tasks/result",
        "tasks/list",
    }
)
# 2026-07-28 results that carry caching hints.
_CACHEABLE = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read", "server/discover"}
)


class Server:
    """Serves one `App` through one `Runtime` on any number of peers."""

    def __init__(
        self,
        app: App,
        runtime: Runtime,
        extra_tools: dict[str, ToolDef] | None = None,
        tasks: TaskConfig | None = None,
    ) -> None:
        self.app = app
        self.runtime = runtime
        # Tools this server adds (server_health, the workload set), bound to this runtime; kept off the
        # user's App so that one App can be served more than once. The App's own tools win a name clash.
        self.extra_tools = {k: v for k, v in (extra_tools or {}).items() if k not in app.tools}
        self.peers: set[Peer] = set()
        self.state: Any = None  # what the app's lifespan yielded (see bemcp.lifecycle), for ctx.state
        self.notifier = Notifier(self.peers)
        cfg = runtime.config
        pipeline = runtime.pipeline

        def shed(read_only: bool) -> Refusal | None:
            return pipeline.shed(read_only) if pipeline.protect and pipeline.shedding else None

        calling = Calling(runtime.run_call, runtime.run_sync, cfg.call_timeout, cfg.debug, self._context, shed)
        task_cfg = tasks or TaskConfig()
        state_dir = Path(task_cfg.state_dir) if task_cfg.state_dir else default_state_dir(app.name)
        # Made here, started by the serving lifecycle only when a tool can run as a task (no store otherwise).
        self.tasks = TaskRunner(
            task_cfg,
            runtime.run_call,
            state_dir=state_dir,
            admission=runtime.admission if runtime.protect else None,
        )
        runtime.tasks_snapshot = self.tasks.snapshot
        self.tasks.on_change = self.notifier.task_changed
        self.notifier.task_view = self._task_view
        self.task_methods = TaskMethods(self.tasks)
        self.tools = Tools(app, self.extra_tools, calling, self.task_methods, task_cfg.timeout)
        self.lifecycle = Lifecycle(app, lambda: self.tasks.running)
        self._handlers: dict[str, Handler] = {}
        for family in (
            self.lifecycle,
            self.task_methods,
            self.tools,
            Resources(app, calling),
            Prompts(app, calling),
            Completion(app),
            Subscriptions(self.notifier),
        ):
            self._handlers.update(family.handlers())
        self._server_info_meta = {versions.META_SERVER_INFO: self.server_info()}
        self._signer = inputrequests.StateSigner()
        self._debug = cfg.debug

    def _context(self, ex: Exchange) -> Context:
        return Context(ex, self.runtime.memory, self.state)

    async def _task_view(self, task_id: str, owner: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        rec = await self.tasks.get(task_id, owner) if self.tasks.running else None
        return None if rec is None else (task_wire.detailed(rec), task_wire.task_v1(rec))

    def task_tools(self) -> frozenset[str]:
        """The tools that can run as tasks; the resumable ones are `resumable_tools`."""
        every = (*self.app.tools.values(), *self.extra_tools.values())
        return frozenset(t.name for t in every if t.task != "forbidden")

    def resumable_tools(self) -> frozenset[str]:
        every = (*self.app.tools.values(), *self.extra_tools.values())
        return frozenset(t.name for t in every if t.resume)

    def capabilities(self, stateless: bool = False) -> dict[str, Any]:
        return self.lifecycle.capabilities(stateless)

    def server_info(self) -> dict[str, Any]:
        return self.lifecycle.server_info()

    # -- entry points ------------------------------------------------------

    async def handle_message(self, msg: Any, peer: Peer, exchange: Exchange | None = None) -> Message | None:
        """Handle any decoded message; returns the response to send, if any.

        Transports that already built an `Exchange` for a request pass it in;
        otherwise a stream-less one is made.
        """
        kind, reason = jsonrpc.classify(msg)
        if kind is Kind.REQUEST:
            if exchange is None:
                exchange = Exchange(peer, msg["id"], msg["method"], None)
            return await self.handle_request(msg, exchange)
        if kind is Kind.NOTIFICATION:
            self.handle_notification(msg, peer)
            return None
        if kind is Kind.RESPONSE:
            peer.deliver(msg)
            return None
        return jsonrpc.invalid_request(msg, reason)

    async def handle_request(self, msg: Message, ex: Exchange) -> Message | None:
        method: str = msg["method"]
        params: dict[str, Any] = msg.get("params") or {}
        req_id = msg["id"]
        try:
            handler = self._handlers.get(method)
            if handler is None:
                raise MethodNotFound(method)
            meta = params.get("_meta")
            if isinstance(meta, dict):
                ex.meta = meta
                token = meta.get("progressToken")
                if token is not None:
                    ex.progress_token = token
                if versions.META_PROTOCOL_VERSION in meta or versions.META_CLIENT_CAPABILITIES in meta:
                    inputrequests.enter_stateless(ex, params, self._signer)
            if ex.stateless:
                if method in _LEGACY_ONLY:
                    raise MethodNotFound(method)
            elif method == "server/discover":
                raise McpError(codes.INVALID_PARAMS, "server/discover needs the 2026-07-28 _meta envelope")
            elif not ex.peer.initialized and method not in _PRE_INIT and ex.peer.protocol_version is None:
                raise McpError(
                    codes.INVALID_REQUEST,
                    "Invalid request: send initialize first, or use the 2026-07-28 per-request _meta envelope",
                )
            try:
                res = await handler(params, ex)
            except inputrequests.InputRequired as need:
                res = inputrequests.input_required_result(ex, params, need, self._signer)
        except McpError as e:
            return {"jsonrpc": "2.0", "id": req_id, "error": e.to_error()}
        except Refusal as refusal:
            return refused(req_id, refusal)
        except CutOff as cut:
            return {"jsonrpc": "2.0", "id": req_id, "error": cut_off_error(cut)}
        except asyncio.CancelledError:
            reason = ex.cancel_reason
            if reason is None:  # not ours: the server is shutting down
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return self._cancelled_answer(req_id, method, reason)
        except Exception as e:  # a bug in a handler must not take the server down
            log.exception("internal error in %s", method)
            data = {"traceback": traceback.format_exc()} if self._debug else None
            return jsonrpc.error(req_id, codes.INTERNAL_ERROR, f"Internal error: {type(e).__name__}", data)
        if res is None:
            return None
        if ex.stateless:
            res.setdefault("resultType", "complete")
            if method in _CACHEABLE:
                res.setdefault("ttlMs", 0)
                res.setdefault("cacheScope", "public")
            meta_out = res.get("_meta")
            if meta_out is None:
                res["_meta"] = self._server_info_meta
            elif isinstance(meta_out, dict):
                meta_out.setdefault(versions.META_SERVER_INFO, self._server_info_meta[versions.META_SERVER_INFO])
        return {"jsonrpc": "2.0", "id": req_id, "result": res}

    @staticmethod
    def _cancelled_answer(req_id: Any, method: str, reason: CancelReason) -> Message | None:
        """The answer to a request cancelled for `reason` before its call ended (None: no answer is sent)."""
        if reason.silent:
            return None  # the spec: no response to a request the client cancelled
        if reason is CancelReason.SESSION_ENDED:
            return jsonrpc.error(
                req_id,
                codes.CONNECTION_CLOSED,
                f"{method} was cancelled: its session ended before it finished",
                {"reason": str(reason)},
            )
        return jsonrpc.error(
            req_id,
            codes.CALL_TIMEOUT if reason in (CancelReason.DEADLINE, CancelReason.WATCHDOG) else codes.INTERNAL_ERROR,
            f"{method} was cancelled by the server: {reason}",
            {"reason": str(reason)},
        )

    def handle_notification(self, msg: Message, peer: Peer) -> None:
        method = msg["method"]
        params = msg.get("params") or {}
        if method == "notifications/initialized":
            peer.initialized = True
        elif method == "notifications/cancelled":
            self.cancel(peer, params.get("requestId"), CancelReason.CLIENT)
        # Other notifications (progress, roots/list_changed, ...) need no action.

    def cancel(self, peer: Peer, req_id: Any, reason: CancelReason) -> bool:
        """Cancel the peer's in-flight request `req_id`; False when there is none."""
        ex = peer.inflight.get(req_id) if jsonrpc.valid_id(req_id) else None
        return ex is not None and ex.cancel(reason)
