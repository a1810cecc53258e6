"""Fuzz the server over stdio and HTTP: every request gets exactly one well-formed answer.

One long-lived server per transport receives well over 10,000 random, mutated and
garbage messages drawn by Hypothesis (derandomized, no shrinking, bounded in time). For
each message the harness works out what answer is owed from the bytes actually sent:

- bytes that are not JSON: exactly one -32700 error with id null;
- a batch (array): exactly one -32600 error with id null (MCP has no batching);
- anything else that is not a valid request, notification or response: one -32600
  error (its id echoed when it had a valid one, else null);
- a request (object, jsonrpc "2.0", string method, object-or-absent params, str/int id):
  exactly one response with that id;
- notifications and responses: no answer.

Every answer must be well-formed JSON-RPC 2.0, no request may end in -32603 (an internal
error is a server bug), tool failures are `isError` results without a traceback, and
requests built from a template must get the concrete answer the template promises
(unknown method -32601, unknown tool -32602, unsupported version -32022 listing the
supported ones, ...). Afterwards the server must be alive, answer a normal call, and
report nothing in flight.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import queue
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies as fz
from tests.fuzz.strategies import Expect, Fuzz, Raw
from tests.procs import MODERN_META, StdioServer, http_server

APP = "tests.apps.demo:app"
TARGET = 10_000  # messages per transport, at least
GROUPS = 17  # per example; each group is a drawn item and 2 variants: 51 messages
EXAMPLES = 240  # x 51 = 12,240 messages per transport
HTTP_BODY_LIMIT = 256 * 1024
ANSWER_TIMEOUT = 20.0

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.generate],  # no shrinking: the server is stateful and the budget is fixed
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
)

SERVER_REPLIES: list[Any] = [
    # How the stdio harness answers the server's own requests (sampling, elicitation): junk
    # responses first (they must be ignored or survived), then one answer, valid or not.
    lambda rid: [{"jsonrpc": "2.0", "id": rid, "result": {"action": "accept", "content": {"answer": "yes"}}}],
    lambda rid: [
        {"jsonrpc": "2.0", "id": [rid], "result": {}},
        {"jsonrpc": "2.0", "id": rid, "error": {"code": -1, "message": "no"}},
    ],
    lambda rid: [{"jsonrpc": "2.0", "id": rid, "error": {"code": "abc", "message": "bad code"}}],
    lambda rid: [
        {"jsonrpc": "2.0", "id": {"id": rid}, "error": {"code": 1, "message": "x"}},
        {"jsonrpc": "2.0", "id": rid, "error": "not an object"},
    ],
    lambda rid: [{"jsonrpc": "2.0", "id": rid, "result": None}],
    lambda rid: [
        {
            "jsonrpc": "2.0",
            "id": rid,
            "result": {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"},
        }
    ],
    lambda rid: [{"jsonrpc": "2.0", "id": rid, "error": {"code": None, "message": None}}],
    lambda rid: [{"jsonrpc": "2.0", "id": rid, "error": {"code": 1.5, "message": "float code"}}],
    lambda rid: [{"jsonrpc": "2.0", "id": rid, "error": {"code": 10**30, "message": "huge code"}}],
    lambda rid: [{"jsonrpc": "2.0", "id": rid, "result": [1, 2]}],
]


# -- the oracle ----------------------------------------------------------------------------


@dataclass
class Owed:
    """What one message sent to the server is owed."""

    kind: str  # "parse" | "batch" | "invalid" | "request" | "notification" | "response" | "blank"
    msg: Any = None
    answer_id: Any = None  # "request"/"invalid": the id the answer must carry

    @property
    def key(self) -> tuple[str, Any] | None:
        return None if self.answer_id is None else fz.id_key(self.answer_id)


def owed_for(data: bytes) -> Owed:
    """Classify the bytes of one message exactly as JSON-RPC 2.0 (and MCP's no-batching rule) say."""
    if not data.strip():
        return Owed("blank")
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Owed("parse")
    if isinstance(msg, list):
        return Owed("batch", msg)
    if not isinstance(msg, dict):
        return Owed("invalid", msg)
    echo = msg.get("id") if fz.valid_id(msg.get("id")) else None
    if msg.get("jsonrpc") != "2.0":
        return Owed("invalid", msg, echo)
    method = msg.get("method")
    if method is not None:
        params = msg.get("params")
        if not isinstance(method, str) or (params is not None and not isinstance(params, dict)):
            return Owed("invalid", msg, echo)
        if "id" not in msg:
            return Owed("notification", msg)
        if not fz.valid_id(msg["id"]):
            return Owed("invalid", msg)
        return Owed("request", msg, msg["id"])
    if "id" in msg and (("result" in msg) != ("error" in msg)):
        return Owed("response", msg)
    return Owed("invalid", msg, echo)


def cancelled_ids(owed: list[Owed]) -> set[tuple[str, Any]]:
    """Ids of requests that a later `notifications/cancelled` in the batch may have cancelled.

    Their answer is optional: the spec says a cancelled request gets none.
    """
    seen: set[tuple[str, Any]] = set()
    out = set()
    for o in owed:
        if o.kind == "request" and o.key is not None:
            seen.add(o.key)
        elif o.kind == "notification" and o.msg.get("method") == "notifications/cancelled":
            params = o.msg.get("params")
            if isinstance(params, dict) and fz.valid_id(params.get("requestId")):
                key = fz.id_key(params["requestId"])
                if key in seen:
                    out.add(key)
    return out


def well_formed(msg: Any) -> str | None:
    """Why `msg` is not a well-formed JSON-RPC 2.0 response, or None."""
    if not isinstance(msg, dict):
        return "not an object"
    if msg.get("jsonrpc") != "2.0":
        return "jsonrpc is not '2.0'"
    if set(msg) - {"jsonrpc", "id", "result", "error"}:
        return f"unexpected keys {sorted(set(msg) - {'jsonrpc', 'id', 'result', 'error'})}"
    if "id" not in msg or not (msg["id"] is None or fz.valid_id(msg["id"])):
        return "missing or invalid id"
    if ("result" in msg) == ("error" in msg):
        return "needs exactly one of result and error"
    if "error" in msg:
        e = msg["error"]
        if not isinstance(e, dict):
            return "error is not an object"
        if not isinstance(e.get("code"), int) or isinstance(e.get("code"), bool):
            return "error.code is not an integer"
        if not isinstance(e.get("message"), str):
            return "error.message is not a string"
        if e["code"] == fz.INTERNAL:
            return "internal error (-32603): a server bug"
        if "traceback" in fz.encode(e).decode().lower():
            return "traceback in an error"
    else:
        res = msg["result"]
        if not isinstance(res, dict):
            return "result is not an object"
        if res.get("isError") and "Traceback" in fz.encode(res.get("content")).decode():
            return "traceback in a tool error"
    return None


def well_formed_from_server(msg: Any) -> str | None:
    """A notification or request the server sent (not a response)."""
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" or not isinstance(msg.get("method"), str):
        return "malformed server message"
    if "params" in msg and not isinstance(msg["params"], dict):
        return "server message params is not an object"
    if "id" in msg and not fz.valid_id(msg["id"]):
        return "server request id invalid"
    return None


def expectation_error(
    exp: Expect, ans: dict[str, Any], *, modern: bool, extra_codes: frozenset[int] = frozenset()
) -> str | None:
    """Why `ans` does not meet the template's promise, or None."""
    res = ans.get("result")
    e = ans.get("error")
    if exp.kind == "error":
        allowed = exp.codes | extra_codes
        if e is None or e.get("code") not in allowed:
            return f"expected an error in {sorted(allowed)}"
        if exp.supported and e.get("code") == fz.UNSUPPORTED_VERSION:
            data = e.get("data")
            if not isinstance(data, dict) or fz.MODERN_VERSION not in (data.get("supported") or []):
                return "unsupported-version error does not list the supported versions"
            if not isinstance(data.get("requested"), str):
                return "unsupported-version error lacks data.requested"
        return None
    if extra_codes and e is not None and e.get("code") in extra_codes:
        return None
    if res is None:
        return f"expected a result ({exp.kind})"
    if modern and res.get("resultType") not in ("complete", "input_required"):
        return "2026-07-28 result without resultType"
    if exp.kind == "ok":
        if res.get("isError"):
            return "expected success, got isError"
        if exp.echo is not None:
            content = res.get("content") or [{}]
            if content[0].get("text") != exp.echo:
                return "echo did not return its text"
    elif exp.kind == "tool_error":
        if res.get("isError") is not True:
            return "expected a tool error (isError: true)"
    elif exp.kind == "bad_args":
        text = fz.encode(res.get("content")).decode()
        if res.get("isError") is not True or "Invalid arguments" not in text:
            return "expected an invalid-arguments tool error with the validation detail"
    elif exp.kind == "input_required" and (res.get("resultType") != "input_required" or not res.get("inputRequests")):
        return "expected an input_required result"
    return None


@contextlib.contextmanager
def first_failure(failures: list[BaseException]) -> Iterator[None]:
    """Re-raise the first failure when Hypothesis replays a failing example.

    The servers are stateful, so a replay would report whatever the disturbed server
    does next instead of the bug that was found.
    """
    if failures:
        raise failures[0]
    try:
        yield
    except BaseException as e:
        failures.append(e)
        raise


# -- batches: ids and encoding -------------------------------------------------------------


class Ids:
    """Fresh request ids, unique for the whole run."""

    def __init__(self) -> None:
        self._n = itertools.count()

    def fresh(self, like: Any) -> Any:
        n = next(self._n)
        return 7_000_000_000_000 + n if isinstance(like, int) else f"fz-{n}"


def _resolve(value: Any, prev: Any) -> Any:
    """Replace a notifications/cancelled PREV_ID with the previous request's id."""
    if isinstance(value, dict) and value.get("method") == "notifications/cancelled":
        params = value.get("params")
        if isinstance(params, dict) and params.get("requestId") is fz.PREV_ID:
            return {**value, "params": {**params, "requestId": prev}}
    return value


def prepare(items: list[Fuzz], ids: Ids) -> list[tuple[Fuzz, bytes]]:
    """Give structured requests unique ids, fill in PREV_ID, cap slow tools, encode.

    Raw items keep their bytes; their ids are reserved first so structured items avoid them.
    """
    taken: set[tuple[str, Any]] = set()
    for item in items:
        if isinstance(item.payload, Raw):
            o = owed_for(item.payload.data)
            if o.key is not None:
                taken.add(o.key)
    out: list[tuple[Fuzz, bytes]] = []
    prev: Any = "none-yet"
    for item in items:
        if isinstance(item.payload, Raw):
            data = fz.sanitize_raw(item.payload.data)
            out.append((item if data == item.payload.data else fz.retag(item, Raw(data), keep_expect=False), data))
            continue
        payload = _resolve(item.payload, prev)
        if isinstance(payload, dict) and fz.valid_id(payload.get("id")):
            if fz.id_key(payload["id"]) in taken:
                payload = {**payload, "id": ids.fresh(payload["id"])}
            taken.add(fz.id_key(payload["id"]))
            if isinstance(payload.get("method"), str):
                prev = payload["id"]
        fixed = fz.sanitize(payload)
        item = fz.retag(item, fixed, keep_expect=fixed is payload)
        data = fz.encode(fixed)
        assert b"\n" not in data
        out.append((item, data))
    return out


# -- stdio ---------------------------------------------------------------------------------


class StdioFuzzer:
    def __init__(self, server: StdioServer) -> None:
        self.server = server
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.ids = Ids()
        self.sent = 0
        self.labels: Counter[str] = Counter()
        self.replies = itertools.cycle(SERVER_REPLIES)
        self.server_requests = 0
        self._sentinels = itertools.count()
        self.previous = ""
        self.batches = 0
        self.history: dict[tuple[str, Any], list[str]] = defaultdict(list)
        self.stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # Drained so that a full stderr pipe can never block the server; kept for failure reports.
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        for line in iter(self.server.stdout.readline, b""):
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.server.proc.stderr is not None
        for line in iter(self.server.proc.stderr.readline, b""):
            self.stderr.append(line)
            del self.stderr[:-40]

    def _next(self, deadline: float) -> Any:
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("timed out waiting for the server's answers") from None
        if line is None:
            time.sleep(0.2)
            tail = b"".join(self.stderr).decode(errors="replace")
            raise AssertionError(f"the server closed stdout (exit code {self.server.proc.poll()}); stderr:\n{tail}")
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"the server wrote a line that is not JSON: {line[:200]!r}") from None

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, skipped: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """One request outside the fuzz stream; returns its response (other answers go to `skipped`)."""
        rid = f"call-{next(self._sentinels)}"
        self.server.send(fz.request(method, params, rid))
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            msg = self._next(deadline)
            if "method" in msg:
                self._answer_server(msg)
            elif msg.get("id") == rid:
                return msg  # type: ignore[no-any-return]
            elif skipped is not None:
                skipped.append(msg)

    def _answer_server(self, msg: dict[str, Any]) -> None:
        problem = well_formed_from_server(msg)
        assert problem is None, f"{problem}: {fz.show(msg)}"
        if "id" in msg:  # a server-to-client request (sampling, elicitation): answer it, sometimes badly
            self.server_requests += 1
            self.server.send_raw(b"".join(fz.encode(m) + b"\n" for m in next(self.replies)(msg["id"])))

    def run(self, items: list[Fuzz]) -> None:
        prepared = prepare(items, self.ids)
        owed = [owed_for(data) for _, data in prepared]
        sentinel = f"\u27c2sentinel-{next(self._sentinels)}"
        payload = b"".join(data + b"\n" for _, data in prepared)
        payload += orjson.dumps(fz.request("ping", None, sentinel)) + b"\n"
        self.server.send_raw(payload)
        self.sent += len(prepared)
        self.labels.update(item.label for item, _ in prepared)

        want: Counter[tuple[str, Any]] = Counter()
        want_null: Counter[int] = Counter()
        for o in owed:
            if o.kind in ("parse", "batch") or (o.kind == "invalid" and o.answer_id is None):
                want_null[fz.PARSE if o.kind == "parse" else fz.INVALID_REQUEST] += 1
            elif o.key is not None:
                want[o.key] += 1
        optional = cancelled_ids(owed)

        got: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
        got_null: list[dict[str, Any]] = []
        sentinel_seen = False
        deadline = time.monotonic() + ANSWER_TIMEOUT

        def done() -> bool:
            return sentinel_seen and all(len(got[k]) >= n for k, n in want.items() if k not in optional)

        def context() -> str:
            return _describe(prepared, owed) + "\nprevious batch:\n" + self.previous

        try:
            while not done():
                msg = self._next(deadline)
                if isinstance(msg, dict) and "method" in msg:
                    self._answer_server(msg)
                    continue
                problem = well_formed(msg)
                assert problem is None, f"malformed answer ({problem}): {fz.show(msg, 500)}"
                if msg["id"] == sentinel:
                    sentinel_seen = True
                elif msg["id"] is None:
                    got_null.append(msg)
                else:
                    got[fz.id_key(msg["id"])].append(msg)
        except AssertionError as e:
            raise AssertionError(f"{e}\nbatch:\n{context()}") from None

        null_codes = Counter(m["error"]["code"] for m in got_null if "error" in m)
        assert (
            len(null_codes) == len(want_null) and null_codes == want_null and len(got_null) == sum(want_null.values())
        ), f"id-null answers {dict(null_codes)} != owed {dict(want_null)}\n{context()}"
        for key, answers in got.items():
            n = want.get(key, 0)
            if key in optional:
                assert len(answers) <= n, f"{len(answers)} answers for {key}, at most {n} owed\n{context()}"
            else:
                assert len(answers) == n, (
                    f"{len(answers)} answers for {key}, {n} owed: {fz.show(answers, 500)}\n{context()}"
                )

        for (item, data), o in zip(prepared, owed, strict=True):
            if o.kind == "request" and o.key is not None:
                self.history[o.key].append(f"batch {self.batches}: {item.label} {data[:200]!r}")
            if o.key is None or want[o.key] != 1 or o.key in optional:
                continue
            (ans,) = got[o.key]
            assert "already in flight" not in fz.show(ans), (
                f"{fz.show(ans)}: no other request with this id is in flight; history:\n"
                + "\n".join(self.history[o.key][-10:])
            )
            if o.kind == "invalid":
                assert ans.get("error", {}).get("code") == fz.INVALID_REQUEST, f"{fz.show(ans)} for {fz.show(o.msg)}"
            elif item.expect is not None:
                problem = expectation_error(item.expect, ans, modern=item.modern)
                assert problem is None, (
                    f"{problem}: {fz.show(ans, 500)}\nfor {item.label} {fz.show(o.msg, 500)}\n{context()}"
                )
        self.previous = _describe(prepared, owed)
        self.batches += 1


def _describe(prepared: list[tuple[Fuzz, bytes]], owed: list[Owed]) -> str:
    return "\n".join(
        f"  {o.kind:12} {item.label:22} {data[:160]!r}" for (item, data), o in zip(prepared, owed, strict=True)
    )


@pytest.fixture(scope="module")
def stdio_server() -> Iterator[StdioServer]:
    with StdioServer(app=APP) as server:
        yield server


def test_stdio_fuzz(stdio_server: StdioServer) -> None:
    fuzzer = StdioFuzzer(stdio_server)
    init = fuzzer.call(
        "initialize",
        {
            "protocolVersion": fz.LEGACY_VERSION,
            # Declared so the server's sampling/elicitation requests (and our bad answers) are fuzzed too.
            "capabilities": {"sampling": {}, "elicitation": {}},
            "clientInfo": {"name": "fuzz", "version": "0"},
        },
    )
    assert init["result"]["protocolVersion"] == fz.LEGACY_VERSION
    stdio_server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    # Concrete cases first.
    assert fuzzer.call("nope")["error"]["code"] == fz.METHOD_NOT_FOUND
    assert fuzzer.call("tools/call", {"name": "nope", "arguments": {}})["error"]["code"] == fz.INVALID_PARAMS
    res = fuzzer.call("tools/call", {"name": "fail", "arguments": {}})["result"]
    assert res["isError"] is True and "Traceback" not in res["content"][0]["text"]
    bad = fuzzer.call("tools/call", {"name": "add", "arguments": {"a": "x", "b": 1}})["result"]
    assert bad["isError"] is True and "a: Input should be a valid integer" in bad["content"][0]["text"]
    ver = fuzzer.call(
        "tools/call", {"name": "echo", "arguments": {"text": "x"}, "_meta": {**MODERN_META, fz.META_PV: "1900-01-01"}}
    )
    assert ver["error"]["code"] == fz.UNSUPPORTED_VERSION and fz.MODERN_VERSION in ver["error"]["data"]["supported"]
    # A batch of known answers (an unhashable id, bad error codes, server-to-client requests in flight).
    fuzzer.run(
        [
            Fuzz(Raw(b"\xff garbage {"), "raw"),
            Fuzz({"jsonrpc": "2.0", "id": 1, "method": "nope"}, "unknown-method", fz.err(fz.METHOD_NOT_FOUND)),
            Fuzz({"jsonrpc": "2.0", "id": [1], "result": {}}, "response"),  # an unhashable id
            Fuzz({"jsonrpc": "2.0", "id": "s-1", "error": {"code": "x", "message": 1}}, "response"),
            Fuzz(
                {
                    "jsonrpc": "2.0",
                    "method": "tools/call",
                    "id": 2,
                    "params": {"name": "think", "arguments": {"prompt": "p"}},
                },
                "valid",
            ),
            Fuzz({"jsonrpc": "2.0", "id": {"a": 1}, "error": {"code": 1, "message": "x"}}, "response"),
            Fuzz(
                {
                    "jsonrpc": "2.0",
                    "method": "tools/call",
                    "id": 3,
                    "params": {"name": "ask", "arguments": {"question": "q"}},
                },
                "valid",
            ),
            Fuzz({"jsonrpc": "2.0", "id": [2], "result": {}}, "response"),
        ]
    )

    # Each way of answering the server's own requests, once for sampling and once for elicitation:
    # the junk replies arrive while the request is pending (an unhashable id used to kill the server).
    before = fuzzer.server_requests
    for i in range(2 * len(SERVER_REPLIES)):
        name, arg = ("think", "prompt") if i % 2 else ("ask", "question")
        ans = fuzzer.call("tools/call", {"name": name, "arguments": {arg: "q"}})
        assert well_formed(ans) is None and "result" in ans, fz.show(ans)
    assert fuzzer.server_requests - before == 2 * len(SERVER_REPLIES)

    failures: list[BaseException] = []

    @FUZZ_SETTINGS
    @given(st.lists(fz.message_group(), min_size=GROUPS, max_size=GROUPS))
    def fuzz(groups: list[list[Fuzz]]) -> None:
        with first_failure(failures):
            assert stdio_server.proc.poll() is None, "the server died"
            fuzzer.run([item for group in groups for item in group])

    started = time.monotonic()
    fuzz()
    elapsed = time.monotonic() - started

    # An oversized line (over the 16 MiB framing limit) is one -32600, and the server reads on.
    stdio_server.send_raw(b'{"jsonrpc":"2.0","id":"big","method":"ping","x":"' + b"a" * (17 * 1024 * 1024) + b'"}\n')
    skipped: list[dict[str, Any]] = []
    assert fuzzer.call("ping", skipped=skipped)["result"] == {}
    assert [m["error"]["code"] for m in skipped] == [fz.INVALID_REQUEST] and skipped[0]["id"] is None

    assert stdio_server.proc.poll() is None, "the server died"
    echo = fuzzer.call("tools/call", {"name": "echo", "arguments": {"text": "still here"}})
    assert echo["result"]["content"] == [{"type": "text", "text": "still here"}]
    health = fuzzer.call("tools/call", {"name": "server_health", "arguments": {}})
    assert health["result"]["structuredContent"]["in_flight"] == 0
    print(
        f"\nstdio: {fuzzer.sent} fuzzed messages in {elapsed:.1f}s, {fuzzer.server_requests} server requests answered; "
        f"{dict(sorted(fuzzer.labels.items()))}"
    )
    assert fuzzer.sent >= TARGET


# -- HTTP ----------------------------------------------------------------------------------

PRE_PARSE = {"origin": 403, "ct": 415, "no_ct": 415, "accept_json": 406, "accept_sse": 406, "no_accept": 406}
# The fuzzed server's connection limits: a small header cap, and timeouts that partial requests run into.
HEAD_CAP = 16 * 1024
STALL_TIMEOUT = 3.0
HTTP_FAULTS = st.sampled_from(
    [None] * 14
    + [
        # Connection-level: a padding header of a drawn size around the cap; an id already in flight in the
        # session; a request cut short and abandoned, or cut short and left open until the server times it out.
        "big_header",
        "big_header",
        "dup_id",
        "dup_id",
        "partial_close",
        "partial_stall",
        "origin",
        "ct",
        "no_ct",
        "ct_params",
        "accept_json",
        "accept_sse",
        "no_accept",
        "accept_star",
        "oversize",
        "chunked",
        "no_session",
        "bad_session",
        "bad_pv",
        "no_pv",
        "bad_method",
        "bad_name",
    ]
)
# Each fault with a drawn number that sizes it (the padding, where a partial request is cut).
HTTP_FAULT_DRAWS = st.tuples(HTTP_FAULTS, st.integers(0, 2**20))
ERROR_STATUS = {
    fz.PARSE: 400,
    fz.INVALID_REQUEST: 400,
    fz.INVALID_PARAMS: 400,
    fz.HEADER_MISMATCH: 400,
    fz.MISSING_CAPABILITY: 400,
    fz.UNSUPPORTED_VERSION: 400,
    fz.METHOD_NOT_FOUND: 404,
}
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def _plain_header(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value != ""
        and value.isascii()
        and value.isprintable()
        and value == value.strip()
        and not value.startswith("=?base64?")
    )


@dataclass
class Post:
    item: Fuzz
    body: bytes
    headers: dict[str, str]
    fault: str | None
    owed: Owed
    modern_route: bool
    headers_faithful: bool  # the 2026-07-28 routing headers say exactly what the body says
    chunked: bool = False
    seed: int = 0  # sizes the fault: the padding header, the cut of a partial request


def pad_length(seed: int) -> int:
    """A padding header's value length: small, a little under or over the head cap, or far over it."""
    band = seed % 4
    if band == 0:
        return seed % 512
    if band == 3:
        return HEAD_CAP * (2 + seed % 30)
    return HEAD_CAP - 1024 + seed % 2048  # straddles the cap, whatever the other headers add


def head_size(request: httpx.Request) -> int:
    """The bytes of request line and headers as httpx (h11) writes them, final blank line included."""
    line = len(request.method) + 1 + len(request.url.raw_path) + len(" HTTP/1.1\r\n")
    return line + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2


def _is_modern_body(msg: Any) -> bool:
    if not isinstance(msg, dict):
        return False
    params = msg.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and fz.META_PV in meta


def build_post(item: Fuzz, data: bytes, fault: str | None, sid: str, seed: int = 0) -> Post:
    owed = owed_for(data)
    if owed.kind == "blank":  # only stdio framing skips blank lines; an empty body is not JSON
        owed = Owed("parse")
    msg: dict[str, Any] = owed.msg if isinstance(owed.msg, dict) else {}
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    faithful = True
    if item.modern or _is_modern_body(msg):
        params: dict[str, Any] = msg["params"] if isinstance(msg.get("params"), dict) else {}
        meta: dict[str, Any] = params["_meta"] if isinstance(params.get("_meta"), dict) else {}
        version = meta.get(fz.META_PV, fz.MODERN_VERSION)
        if _plain_header(version):
            headers["mcp-protocol-version"] = version
        else:
            faithful = False
        method = msg.get("method")
        if isinstance(method, str) and _plain_header(method):
            headers["mcp-method"] = method
        else:
            faithful = False
        key = NAME_PARAM.get(method) if isinstance(method, str) else None
        name = params.get(key) if key else None
        if isinstance(name, str):
            headers["mcp-name"] = (
                name if _plain_header(name) else "=?base64?" + base64.b64encode(name.encode()).decode() + "?="
            )
        elif name is not None:
            faithful = False
    else:
        headers["mcp-session-id"] = sid
        headers["mcp-protocol-version"] = fz.LEGACY_VERSION
    chunked = False
    if fault == "origin":
        headers["origin"] = "http://evil.example"
    elif fault == "ct":
        headers["content-type"] = "text/plain"
    elif fault == "no_ct":
        del headers["content-type"]
    elif fault == "ct_params":
        headers["content-type"] = "Application/JSON; charset=utf-8"
    elif fault == "accept_json":
        headers["accept"] = "application/json"
    elif fault == "accept_sse":
        headers["accept"] = "text/event-stream"
    elif fault == "no_accept":
        del headers["accept"]
    elif fault == "accept_star":
        headers["accept"] = "*/*"
    elif fault == "oversize":
        data = data + b" " * (HTTP_BODY_LIMIT + 1 - len(data))
    elif fault == "chunked":
        chunked = True
    elif fault == "no_session":
        headers.pop("mcp-session-id", None)
    elif fault == "bad_session":
        headers["mcp-session-id"] = "no-such-session"
    elif fault == "bad_pv":
        headers["mcp-protocol-version"] = "1900-01-01"
        faithful = False
    elif fault == "no_pv":
        headers.pop("mcp-protocol-version", None)
        faithful = False
    elif fault == "bad_method":
        headers["mcp-method"] = "tools/list" if msg.get("method") != "tools/list" else "ping"
        faithful = False
    elif fault == "bad_name" and "mcp-name" in headers:
        headers["mcp-name"] = "wrong-name"
        faithful = False
    elif fault == "big_header":
        headers["x-fuzz-pad"] = "p" * pad_length(seed)
    # The dual-era rule: a modern version header or a body with the modern envelope is served statelessly.
    modern_route = headers.get("mcp-protocol-version") == fz.MODERN_VERSION or _is_modern_body(msg)
    return Post(item, data, headers, fault, owed, modern_route, faithful, chunked, seed)


def http_expectation(post: Post) -> tuple[Expect | None, frozenset[int]]:
    """The template's promise on HTTP, and the extra error codes the routing headers allow."""
    exp = post.item.expect
    if exp is None or not post.modern_route:
        return exp, frozenset()
    if post.headers_faithful:
        return exp, exp.alt_modern
    # Headers that could not (or on purpose do not) match the body: -32020 (HeaderMismatch)
    # is owed, unless the body's own error is found first.
    codes = exp.codes if exp.kind == "error" else frozenset()
    return Expect("error", codes | {fz.HEADER_MISMATCH}, supported=exp.supported), frozenset()


def parse_http_body(status: int, ctype: str, body: bytes) -> list[Any]:
    """The JSON-RPC messages in a response body (JSON or SSE)."""
    if ctype.startswith("application/json"):
        return [orjson.loads(body)]
    assert ctype.startswith("text/event-stream"), f"unexpected content-type {ctype!r} (status {status})"
    assert status == 200, f"SSE with status {status}"
    out = []
    for event in body.decode().replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip(" ") for line in event.split("\n") if line.startswith("data:")]
        if data:
            out.append(orjson.loads("\n".join(data)))
    return out


def check_post(
    post: Post,
    status: int,
    ctype: str,
    body: bytes,
    optional: set[tuple[str, Any]],
    head: int = 0,
    dups: frozenset[tuple[str, Any]] = frozenset(),
) -> None:
    """`head`: the request's head size as sent; `dups`: ids sent more than once in the batch's session."""
    headers = {k: v if len(v) <= 100 else f"<{len(v)} bytes>" for k, v in post.headers.items()}
    where = f"{post.item.label} fault={post.fault} headers={headers} body={post.body[:300]!r}"
    assert status < 500, f"HTTP {status} {body[:300]!r} for {where}"
    owed = post.owed
    if head > HEAD_CAP:  # refused before anything else is read, whatever the request
        ans = orjson.loads(body)
        assert (status, ans["error"]["code"], ans["id"]) == (431, fz.INVALID_REQUEST, None), f"{where}"
        assert f"exceed {HEAD_CAP} bytes" in ans["error"]["message"]
        return
    if status == 202:
        assert body == b"", f"202 with a body for {where}"
        assert owed.kind in ("notification", "response") or (owed.key in optional), f"202 for a {owed.kind}: {where}"
        return
    msgs = parse_http_body(status, ctype, body)
    responses = [m for m in msgs if not (isinstance(m, dict) and "method" in m)]
    for m in msgs:
        if m not in responses:
            problem = well_formed_from_server(m)
            assert problem is None and "id" not in m, f"{problem or 'a server request'} on a POST stream: {fz.show(m)}"
    assert len(responses) == 1, f"{len(responses)} responses for {where}: {fz.show(msgs, 500)}"
    ans = responses[0]
    problem = well_formed(ans)
    assert problem is None, f"malformed answer ({problem}): {fz.show(ans, 500)} for {where}"
    code = ans["error"]["code"] if "error" in ans else None
    if status >= 400:
        assert code is not None, f"HTTP {status} with a result: {where}"

    too_big = len(post.body) > HTTP_BODY_LIMIT
    pre = PRE_PARSE.get(post.fault or "") or (413 if too_big else None)
    if pre is not None:
        assert (status, code, ans["id"]) == (pre, fz.INVALID_REQUEST, None), f"got {status} {fz.show(ans)} for {where}"
        return
    if owed.kind in ("parse", "batch"):
        want = fz.PARSE if owed.kind == "parse" else fz.INVALID_REQUEST
        assert (status, code, ans["id"]) == (400, want, None), f"got {status} {fz.show(ans)} for {where}"
        return
    if owed.kind == "invalid":
        assert (status, code) == (400, fz.INVALID_REQUEST) and ans["id"] in (None, owed.answer_id), (
            f"{fz.show(ans)} for {where}"
        )
        return
    is_request = owed.kind == "request"
    if not post.modern_route:
        pv = post.headers.get("mcp-protocol-version")
        if pv is not None and pv != fz.LEGACY_VERSION:
            assert (status, code) == (400, fz.UNSUPPORTED_VERSION), f"got {status} {fz.show(ans)} for {where}"
            assert ans["id"] == (owed.answer_id if is_request else None)
            assert fz.LEGACY_VERSION in ans["error"]["data"]["supported"]
            return
        if not (is_request and owed.msg["method"] == "initialize"):
            sid = post.headers.get("mcp-session-id")
            if sid is None or sid == "no-such-session":
                assert (status, code, ans["id"]) == (400 if sid is None else 404, fz.INVALID_REQUEST, None), f"{where}"
                return
        assert is_request, f"a {owed.kind} got {status} {fz.show(ans)}: {where}"
        if owed.key in dups and status == 400 and "is already in flight in this session" in fz.show(ans):
            # Its twin was in flight: refused as on stdio (whether they overlapped is up to the timing).
            assert (code, ans["id"]) == (fz.INVALID_REQUEST, owed.answer_id), f"{fz.show(ans)} for {where}"
            return
        assert status == 200, f"handshake-era request answered with HTTP {status}: {where}"
    else:
        assert is_request, f"a {owed.kind} got {status} {fz.show(ans)}: {where}"
        # The 2026-07-28 status table; anything else (results, tool errors) is 200.
        want_status = 200 if code is None else ERROR_STATUS.get(code, 200)
        assert status == want_status, f"{fz.show(ans)} with HTTP {status}: {where}"
    assert ans["id"] == owed.answer_id, f"answer id {ans['id']!r} for request id {owed.answer_id!r}: {where}"
    exp, extra = http_expectation(post)
    if exp is not None and owed.key not in optional:
        problem = expectation_error(exp, ans, modern=post.modern_route, extra_codes=extra)
        assert problem is None, f"{problem}: {fz.show(ans, 500)}\nfor {where}"


class HttpFuzzer:
    WORKERS = 4

    def __init__(self, url: str, base: str, port: int) -> None:
        self.url = url
        self.base = base
        self.port = port
        self.ids = Ids()
        self.sent = 0
        # Partial requests left open: (socket, "head" or "body") each owed a 408 once the server times it out.
        self.stalled: list[tuple[socket.socket, str, Post]] = []
        self.twins_refused = 0  # dup_id requests that met their twin in flight
        self._stalled_lock = threading.Lock()
        self.labels: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []  # one keep-alive client per worker thread
        self.pool = ThreadPoolExecutor(self.WORKERS)
        self.control = httpx.Client(timeout=ANSWER_TIMEOUT)
        r = self.control.post(
            url,
            headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
            content=orjson.dumps(
                fz.request(
                    "initialize",
                    {
                        "protocolVersion": fz.LEGACY_VERSION,
                        "capabilities": {},
                        "clientInfo": {"name": "fuzz", "version": "0"},
                    },
                    "init",
                )
            ),
        )
        assert r.status_code == 200, r.text
        self.sid = r.headers["mcp-session-id"]
        r = self.control.post(
            url, headers=self.session_headers(), content=b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
        )
        assert r.status_code == 202

    def session_headers(self) -> dict[str, str]:
        return {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-session-id": self.sid,
            "mcp-protocol-version": fz.LEGACY_VERSION,
        }

    def close(self) -> None:
        self.pool.shutdown()
        for client in self._clients:
            client.close()
        self.control.close()
        for sock, _, _ in self.stalled:
            sock.close()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=ANSWER_TIMEOUT)
            self._clients.append(client)
        return client

    def _send(self, post: Post) -> tuple[int, str, bytes, int] | None:
        """Status, content type, body and the head size sent; None for a partial request (no answer now)."""
        if post.fault in ("partial_close", "partial_stall"):
            self._send_partial(post)
            return None
        content: Any = (
            iter([post.body[: len(post.body) // 2], post.body[len(post.body) // 2 :]]) if post.chunked else post.body
        )
        client = self._client()
        request = client.build_request("POST", self.url, headers=post.headers, content=content)
        if "accept" not in post.headers:
            del request.headers["accept"]  # httpx adds "Accept: */*" by default
        r = client.send(request)
        return r.status_code, r.headers.get("content-type", ""), r.content, head_size(request)

    def _send_partial(self, post: Post) -> None:
        """Send a drawn prefix of the request (cut in its head, or in its body), then close or leave it open."""
        head = (
            f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in post.headers.items())
            + f"content-length: {len(post.body)}\r\n\r\n"
        ).encode("utf-8")
        in_body = post.body != b"" and post.seed % 2 == 1
        cut = len(head) + post.seed % len(post.body) if in_body else 1 + post.seed % (len(head) - 1)
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=ANSWER_TIMEOUT)
        sock.sendall((head + post.body)[:cut])
        if post.fault == "partial_close":
            sock.close()
            return
        with self._stalled_lock:
            self.stalled.append((sock, "body" if in_body else "head", post))

    def check_stalled(self) -> int:
        """Every partial request left open got a 408 naming its head or body, and its connection closed."""
        for sock, part, post in self.stalled:
            data = b""
            while chunk := sock.recv(65536):  # the server closes after answering (timeout: ANSWER_TIMEOUT)
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), f"{data[:300]!r} for a partial {part}: {post.body[:200]!r}"
            err = orjson.loads(body)["error"]
            assert err["code"] == fz.INVALID_REQUEST and f"request {part}" in err["message"], err
        return len(self.stalled)

    def call(self, method: str, params: dict[str, Any] | None = None, *, modern: bool = False) -> dict[str, Any]:
        if modern:
            params = fz.with_meta(params, MODERN_META)
            headers = {
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
                "mcp-protocol-version": fz.MODERN_VERSION,
                "mcp-method": method,
            }
            if params.get("name"):
                headers["mcp-name"] = params["name"]
        else:
            headers = self.session_headers()
        r = self.control.post(self.url, headers=headers, content=orjson.dumps(fz.request(method, params, "call")))
        (msg,) = [
            m for m in parse_http_body(r.status_code, r.headers.get("content-type", ""), r.content) if "method" not in m
        ]
        return msg  # type: ignore[no-any-return]

    def run(self, pairs: list[tuple[Fuzz, tuple[str | None, int]]]) -> None:
        prepared = prepare([item for item, _ in pairs], self.ids)
        posts = [
            build_post(item, data, fault, self.sid, seed)
            for (item, data), (_, (fault, seed)) in zip(prepared, pairs, strict=True)
        ]
        posts = with_duplicate_ids(posts, self.sid)
        optional = cancelled_ids([p.owed for p in posts])
        twins = Counter(
            p.owed.key
            for p in posts
            if p.owed.kind == "request" and not p.modern_route and p.fault not in ("partial_close", "partial_stall")
        )
        dups = frozenset(k for k, n in twins.items() if n > 1)
        results = list(self.pool.map(self._send, posts))
        self.sent += len(posts)
        for post, result in zip(posts, results, strict=True):
            self.labels[post.item.label] += 1
            self.faults[post.fault or "-"] += 1
            if result is None:
                continue
            status, ctype, body, head = result
            self.statuses[status] += 1
            check_post(post, status, ctype, body, optional, head, dups)
            if status == 400 and b"is already in flight" in body:
                self.twins_refused += 1
        assert self.control.get(f"{self.base}/healthz").status_code == 200


TWIN_SLEEP_S = 0.1


def with_duplicate_ids(posts: list[Post], sid: str) -> list[Post]:
    """Give each `dup_id` request on the session a twin sent just before it with the same id: a short sleep
    that another worker is likely still serving. Each of the two is refused (-32600) or served, never both."""
    out: list[Post] = []
    for post in posts:
        if post.fault == "dup_id" and post.owed.kind == "request" and not post.modern_route:
            twin = fz.request(
                "tools/call", {"name": "sleep", "arguments": {"seconds": TWIN_SLEEP_S}}, post.owed.answer_id
            )
            out.append(build_post(Fuzz(twin, "dup-twin"), fz.encode(twin), "dup_id", sid, post.seed))
        out.append(post)
    return out


@pytest.mark.slow  # about 30 s: 12,000 POSTs, and partial requests left to time out
def test_http_fuzz() -> None:
    limits = ["--max-header-bytes", str(HEAD_CAP), "--header-timeout", str(STALL_TIMEOUT)]
    limits += ["--body-timeout", str(STALL_TIMEOUT)]
    with http_server("--max-body-bytes", str(HTTP_BODY_LIMIT), *limits, app=APP) as server:
        fuzzer = HttpFuzzer(server.url, server.base, server.port)
        try:
            # Concrete cases first.
            assert fuzzer.call("nope")["error"]["code"] == fz.METHOD_NOT_FOUND
            assert fuzzer.call("nope", modern=True)["error"]["code"] == fz.METHOD_NOT_FOUND
            assert fuzzer.call("tools/call", {"name": "nope"})["error"]["code"] == fz.INVALID_PARAMS
            res = fuzzer.call("tools/call", {"name": "fail", "arguments": {"mode": "raise"}}, modern=True)["result"]
            assert res["isError"] is True and "Traceback" not in res["content"][0]["text"]
            r = fuzzer.control.post(server.url, headers=fuzzer.session_headers(), content=b"\xff garbage")
            assert r.status_code == 400 and r.json()["error"]["code"] == fz.PARSE and r.json()["id"] is None
            r = fuzzer.control.post(
                server.url,
                headers={**fuzzer.session_headers(), "mcp-protocol-version": "1900-01-01"},
                content=b'{"jsonrpc":"2.0","id":5,"method":"ping"}',
            )
            assert r.status_code == 400 and r.json()["error"]["code"] == fz.UNSUPPORTED_VERSION
            assert fz.MODERN_VERSION in r.json()["error"]["data"]["supported"]
            # The head cap to the byte: a head of exactly HEAD_CAP bytes is served, one byte more gets 431.
            for extra, want in ((0, 200), (1, 431)):
                ping = b'{"jsonrpc":"2.0","id":"cap","method":"ping"}'
                req = fuzzer.control.build_request("POST", server.url, headers=fuzzer.session_headers(), content=ping)
                req.headers["x-fuzz-pad"] = ""
                req.headers["x-fuzz-pad"] = "p" * (HEAD_CAP - head_size(req) + extra)
                assert head_size(req) == HEAD_CAP + extra
                assert fuzzer.control.send(req).status_code == want

            failures: list[BaseException] = []

            @FUZZ_SETTINGS
            @given(
                st.lists(
                    st.tuples(fz.message_group(), st.lists(HTTP_FAULT_DRAWS, min_size=3, max_size=3)),
                    min_size=GROUPS,
                    max_size=GROUPS,
                )
            )
            def fuzz(groups: list[tuple[list[Fuzz], list[tuple[str | None, int]]]]) -> None:
                with first_failure(failures):
                    assert server.alive(), "the server died"
                    fuzzer.run([pair for items, faults in groups for pair in zip(items, faults, strict=True)])

            started = time.monotonic()
            fuzz()
            elapsed = time.monotonic() - started

            assert server.alive(), "the server died"
            stalled = fuzzer.check_stalled()
            assert fuzzer.control.get(f"{server.base}/healthz").status_code == 200
            echo = fuzzer.call("tools/call", {"name": "echo", "arguments": {"text": "still here"}})
            assert echo["result"]["content"] == [{"type": "text", "text": "still here"}]
            echo = fuzzer.call("tools/call", {"name": "echo", "arguments": {"text": "modern"}}, modern=True)
            assert echo["result"]["content"] == [{"type": "text", "text": "modern"}]
            health = fuzzer.call("tools/call", {"name": "server_health", "arguments": {}})
            assert health["result"]["structuredContent"]["in_flight"] == 0
            statuses = dict(sorted(fuzzer.statuses.items()))
            print(
                f"\nhttp: {fuzzer.sent} fuzzed POSTs in {elapsed:.1f}s ({stalled} left open to time out, "
                f"{fuzzer.twins_refused} duplicate ids refused in flight); "
                f"statuses {statuses}; "
                f"faults {dict(sorted(fuzzer.faults.items()))}; {dict(sorted(fuzzer.labels.items()))}"
            )
            assert fuzzer.sent >= TARGET
        finally:
            fuzzer.close()
