"""Method dispatch: one inbound JSON-RPC message in, at most one response out.

Transports own framing and streams; this module owns what each MCP method
means. Handlers raise `McpError` for protocol errors; anything else they raise
becomes -32603 here, so a client can never crash the server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Coroutine
from time import monotonic as _monotonic
from typing import Any, Literal

import orjson
import pydantic

from bemcp import content
from bemcp.app import App, CompletionRequest, ToolDef
from bemcp.context import Context
from bemcp.errors import InvalidParams, McpError, MethodNotFound, ResourceNotFound, ToolError
from bemcp.protocol import codes, jsonrpc, mrtr, versions
from bemcp.protocol.exchange import LOG_RANK, Exchange, Peer
from bemcp.protocol.jsonrpc import Kind, Message
from bemcp.protocol.notify import FILTER_KEYS, SUBSCRIPTION_ID, Listener, Notifier
from bemcp.runtime.runtime import Runtime
from bemcp.runtime.tasks import DeadlineExceeded

log = logging.getLogger("bemcp.protocol")

Handler = Callable[[dict[str, Any], Exchange], Awaitable[dict[str, Any] | None]]

# The methods `_run` turns into tasks (and times, one latency series each).
TimedMethod = Literal["tools/call", "resources/read", "prompts/get"]
TIMED_METHODS: tuple[TimedMethod, ...] = ("tools/call", "resources/read", "prompts/get")
# Methods a handshake-era client may send before `initialize` completes.
_PRE_INIT = frozenset({"initialize", "ping"})
# Cancellations the client asked for (or caused by going away) get no response.
_SILENT_CANCEL = frozenset({"client", "disconnect"})
# How a call's outcome feeds the adaptive limit: timeouts are drops; cancels and partial calls say nothing.
_SAMPLE: dict[str, Literal["success", "dropped", "ignore"]] = {
    "ok": "success",
    "error": "success",
    "timeout": "dropped",
}
# Removed in 2026-07-28: answered -32601 on modern requests.
_LEGACY_ONLY = frozenset({"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"})
# 2026-07-28 results that carry caching hints.
_CACHEABLE = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read", "server/discover"}
)


def _validation_detail(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    return [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def _describe_validation(exc: pydantic.ValidationError) -> str:
    return "; ".join(f"{d['loc'] or '(arguments)'}: {d['msg']}" for d in _validation_detail(exc))


class Server:
    """Serves one `App` through one `Runtime` on any number of peers."""

    def __init__(self, app: App, runtime: Runtime, extra_tools: dict[str, ToolDef] | None = None) -> None:
        self.app = app
        self.runtime = runtime
        # Tools this server adds (server_health, the workload set), bound to this runtime; kept off the
        # user's App so that one App can be served more than once. The App's own tools win a name clash.
        self.extra_tools = {k: v for k, v in (extra_tools or {}).items() if k not in app.tools}
        self.peers: set[Peer] = set()
        self.state: Any = None  # what the app's lifespan yielded (see bemcp.lifecycle), for ctx.state
        self.notifier = Notifier(self.peers)
        self._handlers: dict[str, Handler] = {
            "initialize": self._initialize,
            "ping": self._ping,
            "server/discover": self._discover,
            "tools/list": self._list_tools,
            "tools/call": self._call_tool,
            "resources/list": self._list_resources,
            "resources/templates/list": self._list_templates,
            "resources/read": self._read_resource,
            "resources/subscribe": self._subscribe,
            "resources/unsubscribe": self._unsubscribe,
            "prompts/list": self._list_prompts,
            "prompts/get": self._get_prompt,
            "completion/complete": self._complete,
            "logging/setLevel": self._set_level,
            "subscriptions/listen": self._listen,
        }
        self._server_info_meta = {versions.META_SERVER_INFO: self.server_info()}
        self._signer = mrtr.StateSigner()
        # The call path's protections, held directly: fewer lookups per call.
        self._admission = runtime.admission
        self._latency = lat = runtime.metrics.latency
        self._latency_cells = {m: lat.cells(m) for m in TIMED_METHODS}

    # -- entry points ------------------------------------------------------

    def capabilities(self, modern: bool = False) -> dict[str, Any]:
        """What this server offers. Every handler exists, so every feature is declared; change notifications
        are sent (see `Notifier`): unsolicited on the handshake era, on `subscriptions/listen` on 2026-07-28."""
        return {
            "tools": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": True},
            "completions": {},
            "logging": {},
        }

    def server_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.app.name, "version": self.app.version}
        if self.app.title:
            info["title"] = self.app.title
        return info

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
                    mrtr.enter_modern(ex, params, self._signer)
            if ex.modern:
                if method in _LEGACY_ONLY:
                    raise MethodNotFound(method)
            elif method == "server/discover":
                raise McpError(codes.INVALID_PARAMS, "server/discover needs the 2026-07-28 _meta envelope")
            elif not ex.peer.initialized and method not in _PRE_INIT and ex.peer.protocol_version is None:
                raise McpError(
                    codes.INVALID_REQUEST,
                    "Invalid request: send initialize first, or use the 2026-07-28 per-request _meta envelope",
                )
            res = await handler(params, ex)
        except McpError as e:
            return {"jsonrpc": "2.0", "id": req_id, "error": e.to_error()}
        except asyncio.CancelledError:
            reason = ex.cancel_reason
            if reason is None:  # not ours: the server is shutting down
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if reason in _SILENT_CANCEL:
                return None  # the spec: no response to a request the client cancelled
            return jsonrpc.error(
                req_id,
                codes.CALL_TIMEOUT if reason in ("deadline", "watchdog") else codes.INTERNAL_ERROR,
                f"{method} was cancelled by the server: {reason}",
                {"reason": reason},
            )
        except Exception as e:  # a bug in a handler must not take the server down
            log.exception("internal error in %s", method)
            data = {"traceback": traceback.format_exc()} if self.runtime.config.debug else None
            return jsonrpc.error(req_id, codes.INTERNAL_ERROR, f"Internal error: {type(e).__name__}", data)
        if res is None:
            return None
        if ex.modern:
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

    def handle_notification(self, msg: Message, peer: Peer) -> None:
        method = msg["method"]
        params = msg.get("params") or {}
        if method == "notifications/initialized":
            peer.initialized = True
        elif method == "notifications/cancelled":
            self.cancel(peer, params.get("requestId"), "client")
        # Other notifications (progress, roots/list_changed, ...) need no action.

    def cancel(self, peer: Peer, req_id: Any, reason: str) -> bool:
        """Cancel the peer's in-flight request `req_id`; False when there is none."""
        ex = peer.inflight.get(req_id) if jsonrpc.valid_id(req_id) else None
        return ex is not None and ex.cancel(reason)

    # -- lifecycle ---------------------------------------------------------

    async def _initialize(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise InvalidParams("initialize needs params.protocolVersion (string)")
        # The spec: answer with the requested version when supported, else our latest.
        version = requested if requested in versions.HANDSHAKE else versions.LATEST_HANDSHAKE
        peer = ex.peer
        peer.protocol_version = version
        caps = params.get("capabilities")
        peer.client_capabilities = caps if isinstance(caps, dict) else {}
        info = params.get("clientInfo")
        peer.client_info = info if isinstance(info, dict) else {}
        res: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": self.capabilities(),
            "serverInfo": self.server_info(),
        }
        if self.app.instructions:
            res["instructions"] = self.app.instructions
        return res

    async def _ping(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        return {}

    async def _discover(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        res: dict[str, Any] = {"supportedVersions": list(versions.MODERN), "capabilities": self.capabilities(True)}
        if self.app.instructions:
            res["instructions"] = self.app.instructions
        return res

    async def _set_level(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        level = params.get("level")
        if not isinstance(level, str) or level not in LOG_RANK:
            shown = repr(level) if isinstance(level, str) else f"of type {type(level).__name__}"
            raise InvalidParams(f"unknown log level {shown}", {"levels": list(LOG_RANK)})
        ex.peer.log_level = level
        return {}

    # -- tools -------------------------------------------------------------

    async def _list_tools(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        return {"tools": [t.wire for t in (*self.app.tools.values(), *self.extra_tools.values())]}

    async def _call_tool(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any] | None:
        name = params.get("name")
        if not isinstance(name, str):
            raise InvalidParams("tools/call needs params.name (string)")
        tool = self.app.tools.get(name) or self.extra_tools.get(name)
        if tool is None:
            raise InvalidParams(f"Unknown tool: {name}", {"name": name})
        args = params.get("arguments")
        if args is None:
            args = {}
        elif not isinstance(args, dict):
            raise InvalidParams("tools/call params.arguments must be an object")
        try:
            kwargs = tool.signature.bind(args)
        except pydantic.ValidationError as e:
            # The spec (2025-11-25): bad arguments are a tool error the model can correct.
            return {
                "content": [{"type": "text", "text": f"Invalid arguments for tool {name}: {_describe_validation(e)}"}],
                "isError": True,
            }
        if tool.signature.context_param is not None:
            kwargs[tool.signature.context_param] = Context(ex, self.runtime, self.state)
        timeout = tool.timeout if tool.timeout is not None else self.runtime.config.call_timeout
        return await self._run(
            ex,
            params,
            "tools/call",
            name,
            timeout,
            functools.partial(self._invoke_tool, tool, kwargs),
            read_only=tool.read_only,
            essential=tool.essential,
        )

    async def _invoke_tool(self, tool: ToolDef, kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            if tool.is_async:
                value = await tool.fn(**kwargs)
            else:
                value = await self.runtime.run_sync(tool.fn, kwargs)
        except (McpError, asyncio.CancelledError, mrtr.InputRequired):
            raise
        except ToolError as e:
            return {"content": [{"type": "text", "text": str(e)}], "isError": True}
        except Exception as e:
            log.info("tool %s raised %s", tool.name, type(e).__name__, exc_info=self.runtime.config.debug)
            text = f"Tool {tool.name} failed: {type(e).__name__}: {e}"
            if self.runtime.config.debug:
                text += "\n" + traceback.format_exc()
            return {"content": [{"type": "text", "text": text}], "isError": True}
        try:
            return self._tool_result(tool, value)
        except TypeError as e:  # orjson.JSONEncodeError: e.g. an int past 64 bits
            text = f"Tool {tool.name} returned a value that cannot be sent as JSON: {e}"
            return {"content": [{"type": "text", "text": text}], "isError": True}

    def _tool_result(self, tool: ToolDef, value: Any) -> dict[str, Any]:
        if isinstance(value, content.ToolResult):
            return value.to_wire()
        out = tool.output
        if out is not None:
            if out.wrapped and type(value) is str:  # the common case, without pydantic
                return {"content": [{"type": "text", "text": value}], "structuredContent": {"result": value}}
            try:
                structured = out.structure(value)
            except pydantic.ValidationError as e:
                return {
                    "content": [
                        {
                            "type": "text",
                            "text": f"Tool {tool.name} returned a value that does "
                            f"not match its output schema: {_describe_validation(e)}",
                        }
                    ],
                    "isError": True,
                }
            shown = structured["result"] if out.wrapped else structured
            # orjson.dumps, not jsonrpc.dumps: a value JSON cannot carry must raise here (TypeError), where the
            # call becomes a tool error, rather than be turned into an error answer of its own.
            text = shown if isinstance(shown, str) else orjson.dumps(shown, option=orjson.OPT_NON_STR_KEYS).decode()
            return {"content": [{"type": "text", "text": text}], "structuredContent": structured}
        return {"content": _content_list(value)}

    async def _run(
        self,
        ex: Exchange,
        params: dict[str, Any],
        method: TimedMethod,
        name: str,
        timeout: float | None,
        work: Callable[[], Coroutine[Any, Any, dict[str, Any]]],
        *,
        read_only: bool = True,
        essential: bool = False,
    ) -> dict[str, Any] | None:
        """Run one call through the protections: shedding, admission, a registered task, its deadline.

        `essential` calls (health checks) skip shedding and admission, so a
        server under pressure can still say how it is.
        """
        rt = self.runtime
        protect = rt.protect
        adm = self._admission
        token = None
        fast = False  # a slot from the fast lane (no Token)
        if protect and not essential:
            if rt.shedding:
                refused = rt.shed(read_only)
                if refused is not None:
                    rt.metrics.shed.inc(refused.reason)
                    raise refused
            # `adm.enter()`, inlined (see its doc): one comparison when a slot is free.
            if adm.in_flight < adm.lane:
                n = adm.in_flight = adm.in_flight + 1
                adm.admitted += 1
                if n > adm.peak_in_flight:
                    adm.peak_in_flight = n
                fast = True
            else:
                token = adm.try_acquire() or await adm.acquire()
        tasks = rt.tasks
        rec = tasks.begin(method, name, timeout, ex.cancel, ex.task)
        log_tasks = rt.log_tasks
        if log_tasks:
            rt.tasklog.task_started(rec.id, method, name, ex.request_id, timeout)
        outcome = "error"
        try:
            if timeout is None:
                res = await work()
            else:
                # The work runs in a task of its own, so that the call can be answered at its deadline (or, by
                # the watchdog, at the deadline plus its grace) even when the work ignores its cancellation.
                try:
                    res = await tasks.run_with_deadline(rec, timeout, work)
                except DeadlineExceeded:
                    ex.cancel_reason = "deadline"
                    outcome = "timeout"
                    data: dict[str, Any] = {"reason": "deadline", "timeout_s": timeout}
                    if rec.holds:
                        data["abandoned"] = True
                    raise McpError(
                        codes.CALL_TIMEOUT, f"{method} {name} exceeded its deadline of {timeout:g}s", data
                    ) from None
            outcome = "error" if res.get("isError") else "ok"
            return res
        except mrtr.InputRequired as need:
            outcome = "input_required"
            return mrtr.input_required_result(ex, params, need, self._signer)
        except asyncio.CancelledError:
            outcome = "cancelled"
            reason = ex.cancel_reason
            if reason != "watchdog" and reason != "drain_timeout":
                raise
            # The server cut the call off: past its deadline's grace, its work having ignored the cancellation
            # (`watchdog`), or at the end of a drain (`drain_timeout`). Answered -32051; the cancel is spent here.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            data = {"reason": reason}
            if reason == "watchdog":
                outcome = "timeout"
                text = f"{method} {name} exceeded its deadline of {timeout:g}s and ignored its cancellation"
                data["timeout_s"] = timeout
            else:
                text = f"{method} {name} was cut off: the server is shutting down and its drain timed out"
            if rec.holds:
                data["abandoned"] = True
                text += "; its work still runs, abandoned"
            raise McpError(codes.CALL_TIMEOUT, text, data) from None
        except McpError as e:
            if outcome == "error":
                outcome = "refused" if e.code == codes.OVERLOADED else "protocol_error"
            raise
        finally:
            tasks.end(rec, outcome)
            if protect:
                duration = _monotonic() - rec.started
                if rec.holds:  # work outlived the answer: it keeps its slot until it ends
                    if fast:
                        rec.on_release = adm.leave
                    elif token is not None:
                        rec.on_release = functools.partial(token.release, _SAMPLE.get(outcome, "ignore"))
                elif fast:  # `adm.leave()`, inlined
                    adm.in_flight -= 1
                    if not adm.lane:
                        adm.settle()
                elif token is not None:
                    token.release(_SAMPLE.get(outcome, "ignore"))
                # Counted inline (see `Histogram.cells`): a call costs no function call here, and most
                # calls land in the first bucket with one float comparison.
                lat = self._latency
                cells = self._latency_cells[method]
                cells[0 if duration <= lat.first else bisect_left(lat.buckets, duration)] += 1
                cells[lat.sum_at] += duration
                if log_tasks:
                    rt.tasklog.task_finished(rec.id, method, name, outcome, duration * 1000)

    # -- resources ---------------------------------------------------------

    async def _list_resources(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        return {"resources": [r.wire for r in self.app.resources.values()]}

    async def _list_templates(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        return {"resourceTemplates": [r.wire for r in self.app.templates.values()]}

    async def _read_resource(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any] | None:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise InvalidParams("resources/read needs params.uri (string)")
        found = self.app.find_resource(uri)
        if found is None:
            if ex.modern:  # 2026-07-28 renumbered resource-not-found to -32602
                raise InvalidParams(f"Resource not found: {uri}", {"uri": uri})
            raise ResourceNotFound(uri)
        res, variables = found
        try:
            kwargs = res.signature.bind(variables)
        except pydantic.ValidationError as e:
            raise InvalidParams(
                f"Invalid resource URI {uri}: {_describe_validation(e)}", {"errors": _validation_detail(e)}
            ) from None
        if res.signature.context_param is not None:
            kwargs[res.signature.context_param] = Context(ex, self.runtime, self.state)

        async def read() -> dict[str, Any]:
            value = await res.fn(**kwargs) if res.is_async else await self.runtime.run_sync(res.fn, kwargs)
            return {"contents": _resource_contents(uri, res.mime_type, value)}

        return await self._run(ex, params, "resources/read", uri, self.runtime.config.call_timeout, read)

    async def _subscribe(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise InvalidParams("resources/subscribe needs params.uri (string)")
        ex.peer.subscriptions.add(uri)
        return {}

    async def _unsubscribe(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise InvalidParams("resources/unsubscribe needs params.uri (string)")
        ex.peer.subscriptions.discard(uri)
        return {}

    # -- subscriptions/listen (2026-07-28) ------------------------------------

    async def _listen(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        """A long-lived stream of the change notifications the client asked for, until it cancels (closing the
        stream, or `notifications/cancelled` on stdio) or the server ends it (a drain: then it answers)."""
        if not ex.modern:
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
        listener = Listener(ex.request_id, frozenset(lists), frozenset(uris))
        if not self.notifier.add(listener):
            raise McpError(
                codes.OVERLOADED,
                f"Server busy: {self.notifier.max_listeners} subscriptions/listen streams are open",
                {"reason": "listener_limit", "retry_after_ms": 1000, "limit": self.notifier.max_listeners},
            )
        try:
            ack: dict[str, Any] = {FILTER_KEYS[kind]: True for kind in sorted(lists)}
            if uris:
                ack["resourceSubscriptions"] = list(dict.fromkeys(uris))
            await ex.notify(
                "notifications/subscriptions/acknowledged",
                {"_meta": {SUBSCRIPTION_ID: ex.request_id}, "notifications": ack},
            )
            while (msg := await listener.queue.get()) is not None:
                await ex.notify(msg["method"], msg["params"])
        finally:
            self.notifier.remove(listener)
        return {"_meta": {SUBSCRIPTION_ID: ex.request_id}}

    # -- prompts -----------------------------------------------------------

    async def _list_prompts(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        return {"prompts": [p.wire for p in self.app.prompts.values()]}

    async def _get_prompt(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any] | None:
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
                f"Invalid arguments for prompt {name}: {_describe_validation(e)}", {"errors": _validation_detail(e)}
            ) from None
        if prompt.signature.context_param is not None:
            kwargs[prompt.signature.context_param] = Context(ex, self.runtime, self.state)

        async def get() -> dict[str, Any]:
            value = await prompt.fn(**kwargs) if prompt.is_async else await self.runtime.run_sync(prompt.fn, kwargs)
            res: dict[str, Any] = {"messages": _prompt_messages(value)}
            if "description" in prompt.wire:
                res["description"] = prompt.wire["description"]
            return res

        return await self._run(ex, params, "prompts/get", name, self.runtime.config.call_timeout, get)

    # -- completion --------------------------------------------------------

    async def _complete(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
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
        return {"completion": {"values": values[:100], "total": len(values), "hasMore": len(values) > 100}}


def _content_list(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, content.ContentBlock):
        return [value.to_wire()]
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return [value]
    if isinstance(value, (list, tuple)):
        out: list[dict[str, Any]] = []
        for item in value:
            out.extend(_content_list(item))
        return out
    return [{"type": "text", "text": jsonrpc.dumps(pydantic.TypeAdapter(Any).dump_python(value, mode="json")).decode()}]


def _resource_contents(uri: str, mime: str | None, value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"uri": uri, "mimeType": mime or "text/plain", "text": value}]
    if isinstance(value, (bytes, bytearray)):
        return [
            content.EmbeddedResource(uri, blob=bytes(value), mime_type=mime or "application/octet-stream").contents()
        ]
    if isinstance(value, content.EmbeddedResource):
        return [value.contents()]
    if isinstance(value, dict) and isinstance(value.get("uri"), str) and ("text" in value or "blob" in value):
        return [value]  # already a wire contents object; any other dict is data, sent as JSON below
    if isinstance(value, (list, tuple)):
        out: list[dict[str, Any]] = []
        for item in value:
            out.extend(_resource_contents(uri, mime, item))
        return out
    text = jsonrpc.dumps(pydantic.TypeAdapter(Any).dump_python(value, mode="json")).decode()
    return [{"uri": uri, "mimeType": mime or "application/json", "text": text}]


def _prompt_messages(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": {"type": "text", "text": value}}]
    if isinstance(value, content.PromptMessage):
        return [value.to_wire()]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, (list, tuple)):
        out: list[dict[str, Any]] = []
        for item in value:
            out.extend(_prompt_messages(item))
        return out
    raise TypeError(f"a prompt returned {type(value).__name__}; expected str, PromptMessage or a list of them")
