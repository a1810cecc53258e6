"""stdio transport against a real `bemcp serve --transport stdio` subprocess.

A reader thread collects stdout lines so every read has a timeout and the raw
bytes stay available for the "stdout carries only JSON-RPC" check.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.procs import MODERN_META, ROOT, StdioServer, _env

DEMO = "tests.apps.demo:app"
LEGACY = "2025-11-25"


class Conn:
    """A StdioServer with timed reads; stderr is drained so the server can never block on it."""

    def __init__(self, server: StdioServer) -> None:
        self.server = server
        self.raw: list[bytes] = []
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        stderr = server.proc.stderr
        assert stderr is not None
        threading.Thread(target=lambda: stderr.read(), daemon=True).start()

    def _pump(self) -> None:
        for line in iter(self.server.stdout.readline, b""):
            self.raw.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def send(self, msg: Any) -> None:
        self.server.send(msg)

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        line = self._lines.get(timeout=timeout)
        if line is None:
            raise EOFError(f"server closed stdout (rc={self.server.proc.poll()})")
        msg: dict[str, Any] = orjson.loads(line)
        return msg

    def response(self, req_id: Any, timeout: float = 5.0) -> dict[str, Any]:
        """The response for `req_id`; fails on any other response (notifications are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if "method" in msg:
                continue
            assert msg.get("id") == req_id, f"expected the response to {req_id!r}, got {msg}"
            return msg

    def request(self, req_id: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.response(req_id)

    def initialize(self, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        res = self.request(
            "init",
            "initialize",
            {
                "protocolVersion": LEGACY,
                "capabilities": capabilities or {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return res

    def rest(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Everything until stdout closes."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                out.append(self.recv(max(0.01, deadline - time.monotonic())))
            except EOFError:
                return out

    def close_stdin(self) -> None:
        self.server.stdin.close()

    def in_flight(self) -> int:
        res = self.request("health", "tools/call", {"name": "server_health", "arguments": {}})
        n: int = res["result"]["structuredContent"]["in_flight"]
        return n


@pytest.fixture
def conn() -> Iterator[Conn]:
    with StdioServer(app=DEMO) as s:
        yield Conn(s)


def _call(req_id: Any, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": req_id, "method": "tools/call", "params": params}


def test_initialize(conn: Conn) -> None:
    res = conn.initialize()
    assert res["id"] == "init"
    result = res["result"]
    assert result["protocolVersion"] == LEGACY
    assert result["serverInfo"] == {"name": "demo", "version": "1.0.0"}
    assert set(result["capabilities"]) >= {"tools", "resources", "prompts", "completions", "logging"}
    assert result["instructions"] == "A demo app for tests."
    assert conn.request(1, "tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}})["result"][
        "structuredContent"
    ] == {"result": 5}


def test_unknown_version_is_countered_with_latest(conn: Conn) -> None:
    res = conn.request(
        "init", "initialize", {"protocolVersion": "1999-01-01", "capabilities": {}, "clientInfo": {"name": "t"}}
    )
    assert res["result"]["protocolVersion"] == LEGACY


def test_request_before_initialize_is_invalid(conn: Conn) -> None:
    res = conn.request(1, "tools/list", {})
    assert res["error"]["code"] == -32600
    # ping is allowed before initialize.
    assert conn.request(2, "ping")["result"] == {}


def test_oversize_line_is_rejected_and_the_next_request_works(conn: Conn) -> None:
    # There is no CLI flag for the stdio line limit (StdioTransport's max_message_bytes, 16 MiB),
    # so send a 17 MiB line.
    conn.initialize()
    huge = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * (17 * 1024 * 1024) + b'"}}\n'
    conn.server.send_raw(huge)
    err = conn.recv(timeout=20)
    assert err["id"] is None
    assert err["error"]["code"] == -32600
    assert str(16 * 1024 * 1024) in err["error"]["message"]
    assert conn.request(2, "ping")["result"] == {}


def test_garbage_line_is_parse_error(conn: Conn) -> None:
    conn.server.send_raw(b"this is not json\n")
    err = conn.recv()
    assert err["jsonrpc"] == "2.0"
    assert err["id"] is None
    assert err["error"]["code"] == -32700
    conn.server.send_raw(b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]\n')
    assert conn.recv()["error"]["code"] == -32600
    assert conn.request(2, "ping")["result"] == {}


def test_duplicate_in_flight_id(conn: Conn) -> None:
    conn.initialize()
    conn.send(_call(5, "sleep", {"seconds": 0.5}))
    conn.send(_call(5, "echo", {"text": "dup"}))
    dup = conn.recv()
    assert dup["id"] == 5
    assert dup["error"]["code"] == -32600
    assert "already in flight" in dup["error"]["message"]
    first = conn.response(5)
    assert first["result"]["structuredContent"] == {"result": "slept"}
    # Once answered, the id may be used again.
    assert conn.request(5, "ping")["result"] == {}


def test_cancel_notification_suppresses_the_response(conn: Conn) -> None:
    conn.initialize()
    conn.send(_call(42, "sleep", {"seconds": 30}))
    deadline = time.monotonic() + 3
    while conn.in_flight() != 1:
        assert time.monotonic() < deadline, "the sleep call never started"
    conn.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 42, "reason": "t"}})
    assert conn.request(1, "ping")["result"] == {}
    health = conn.request("h2", "tools/call", {"name": "server_health", "arguments": {}})
    assert health["result"]["structuredContent"]["in_flight"] == 0
    assert health["result"]["structuredContent"]["completed"]["cancelled"] == 1
    conn.close_stdin()
    assert all(m.get("id") != 42 for m in conn.rest())
    assert conn.server.proc.wait(5) == 0


def test_eof_waits_for_in_flight_calls_then_exits_zero(conn: Conn) -> None:
    conn.initialize()
    conn.send(_call(1, "sleep", {"seconds": 0.5}))
    conn.send(_call(2, "add", {"a": 1, "b": 1}))
    assert conn.response(2)["result"]["structuredContent"] == {"result": 2}
    conn.close_stdin()
    rest = conn.rest()
    assert [m["id"] for m in rest] == [1]
    assert rest[0]["result"]["structuredContent"] == {"result": "slept"}
    assert conn.server.proc.wait(5) == 0


def test_stdout_carries_only_json_rpc() -> None:
    with StdioServer("--debug", "--log-level", "debug", app=DEMO) as s:
        conn = Conn(s)
        conn.initialize()
        conn.request(1, "logging/setLevel", {"level": "debug"})
        conn.request(2, "tools/call", {"name": "log", "arguments": {"level": "info", "message": "hi"}})
        conn.request(3, "tools/call", {"name": "fail", "arguments": {}})
        conn.request(
            4, "tools/call", {"name": "slow", "arguments": {"steps": 2, "delay": 0.01}, "_meta": {"progressToken": 1}}
        )
        conn.request(5, "resources/read", {"uri": "demo://greeting"})
        conn.server.send_raw(b"garbage\n")
        conn.close_stdin()
        conn.rest()
        assert s.proc.wait(5) == 0
    assert len(conn.raw) == 10  # 6 responses, 2 progress, 1 log message, 1 parse error
    for line in conn.raw:
        assert line.endswith(b"\n")
        msg = orjson.loads(line)
        assert msg["jsonrpc"] == "2.0"
        assert ("method" in msg) or ("result" in msg) or ("error" in msg)
    methods = [orjson.loads(line).get("method") for line in conn.raw]
    assert methods.count("notifications/message") == 1
    assert methods.count("notifications/progress") == 2


def test_modern_envelope_on_stdio(conn: Conn) -> None:
    # No initialize: the 2026-07-28 envelope stands on its own.
    res = conn.request(1, "tools/call", {"name": "echo", "arguments": {"text": "hey"}, "_meta": MODERN_META})
    assert res["result"]["resultType"] == "complete"
    assert res["result"]["structuredContent"] == {"result": "hey"}
    assert res["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "demo"
    disc = conn.request(2, "server/discover", {"_meta": MODERN_META})
    assert disc["result"]["supportedVersions"] == ["2026-07-28"]
    assert conn.request(3, "ping", {"_meta": MODERN_META})["error"]["code"] == -32601


def test_elicitation_round_trip_on_legacy(conn: Conn) -> None:
    conn.initialize({"elicitation": {}})
    conn.send(_call(7, "ask", {"question": "meaning?"}))
    req = conn.recv()
    assert req["method"] == "elicitation/create"
    assert "id" in req
    assert req["params"]["message"] == "meaning?"
    assert req["params"]["requestedSchema"]["required"] == ["answer"]
    conn.send({"jsonrpc": "2.0", "id": req["id"], "result": {"action": "accept", "content": {"answer": "42"}}})
    res = conn.response(7)
    assert res["result"]["structuredContent"] == {"result": "answer: 42"}


def test_elicitation_needs_the_capability(conn: Conn) -> None:
    conn.initialize()
    res = conn.request(8, "tools/call", {"name": "ask", "arguments": {"question": "q"}})
    assert res["error"]["code"] == -32021
    assert res["error"]["data"] == {"requiredCapabilities": {"elicitation": {}}}


def test_elicitation_on_modern_is_input_required(conn: Conn) -> None:
    meta = {**MODERN_META, "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    first = conn.request(1, "tools/call", {"name": "ask", "arguments": {"question": "q"}, "_meta": meta})["result"]
    assert first["resultType"] == "input_required"
    assert first["inputRequests"]["elicit"]["method"] == "elicitation/create"
    retry = conn.request(
        2,
        "tools/call",
        {
            "name": "ask",
            "arguments": {"question": "q"},
            "_meta": meta,
            "inputResponses": {"elicit": {"action": "accept", "content": {"answer": "yes"}}},
            "requestState": first["requestState"],
        },
    )["result"]
    assert retry["resultType"] == "complete"
    assert retry["structuredContent"] == {"result": "answer: yes"}


# -- stdin/stdout that are not pipes ----------------------------------------------


def _serve_cmd() -> list[str]:
    return [sys.executable, "-m", "bemcp", "serve", "--transport", "stdio", "--app", DEMO]


def test_stdin_from_a_regular_file(tmp_path: Path) -> None:
    # uvloop aborted the process when asked to watch a regular file; the file is read in a thread instead.
    lines = [
        _call(1, "echo", {"text": "x"}, MODERN_META),
        # Bigger than asyncio's default 64 KiB line limit, far below the transport's 16 MiB.
        {"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"pad": "x" * 100_000}},
    ]
    src = tmp_path / "requests.jsonl"
    src.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in lines))
    with src.open("rb") as stdin:
        done = subprocess.run(_serve_cmd(), stdin=stdin, capture_output=True, env=_env(), cwd=ROOT, timeout=20)
    assert done.returncode == 0, done.stderr.decode()
    out = sorted((orjson.loads(line) for line in done.stdout.splitlines()), key=lambda m: m["id"])
    assert [m["id"] for m in out] == [1, 2]
    assert out[0]["result"]["structuredContent"] == {"result": "x"}
    assert out[1]["result"] == {}


def test_stdin_and_stdout_on_dev_null() -> None:
    done = subprocess.run(_serve_cmd(), stdin=subprocess.DEVNULL, capture_output=True, env=_env(), cwd=ROOT, timeout=20)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b""
    ping = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}) + b"\n"
    done = subprocess.run(
        _serve_cmd(), input=ping, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=ROOT, timeout=20
    )
    assert done.returncode == 0, done.stderr.decode()
