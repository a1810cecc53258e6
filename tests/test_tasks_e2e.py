"""Tasks across real processes: `bemcp serve` killed mid-work and restarted, and two servers on one store
(SQLite on one host, and a real redis-server), spoken to over HTTP as any 2026-07-28 client would."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import HttpServer, http_server
from tests.redis_server import redis_server

APP = "tests/apps/tasks_app.py"
EXT = "io.modelcontextprotocol/tasks"
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "extensions": {EXT: {}}},
    "io.modelcontextprotocol/clientInfo": {"name": "tasks-e2e", "version": "1"},
}
TERMINAL = ("completed", "failed", "cancelled")


class Client:
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.http = httpx.Client(timeout=30)
        self.ids = iter(range(1, 1_000_000))

    def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name", params.get("taskId"))
        headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": method,
        }
        if isinstance(name, str):
            headers["Mcp-Name"] = name
        body = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": {**params, "_meta": META}}
        r = self.http.post(self.server.url, json=body, headers=headers)
        msg: dict[str, Any] = r.json()
        return msg

    def result(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        msg = self.rpc(method, params)
        assert "result" in msg, msg
        out: dict[str, Any] = msg["result"]
        return out

    def start(self, tool: str, **arguments: Any) -> str:
        created = self.result("tools/call", {"name": tool, "arguments": arguments})
        assert created["resultType"] == "task", created
        task_id: str = created["taskId"]
        return task_id

    def get(self, task_id: str) -> dict[str, Any]:
        return self.result("tasks/get", {"taskId": task_id})

    def until(self, task_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            got = self.get(task_id)
            if done(got):
                return got
            assert time.monotonic() < end, f"task {task_id} never got there: {got}"
            time.sleep(0.05)

    def close(self) -> None:
        self.http.close()


@contextlib.contextmanager
def client(server: HttpServer) -> Iterator[Client]:
    c = Client(server)
    try:
        yield c
    finally:
        c.close()


def serve(tmp: Path, *args: str) -> contextlib.AbstractContextManager[HttpServer]:
    return http_server("--app", APP, *args, tmp=tmp)


@pytest.mark.slow
def test_sigkill_during_200_working_tasks_then_restart_loses_none(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    opts = ("--state-dir", state, "--worker-id", "w1")
    with serve(tmp_path, *opts) as first, client(first) as c:
        done = [c.start("work", seconds=0, text=f"done-{i}") for i in range(20)]
        for task_id in done:
            c.until(task_id, lambda t: t["status"] == "completed")
        plain = [c.start("work", seconds=60, text=f"plain-{i}") for i in range(100)]
        resumable = [c.start("again", seconds=1.5, text=f"again-{i}") for i in range(100)]
        assert all(c.get(t)["status"] == "working" for t in plain[:5] + resumable[:5])
        assert f"tasks in {state}/tasks.sqlite3, as worker w1" in first.log.read_text()  # the start line
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    with serve(tmp_path, *opts) as second, client(second) as c:
        for i, task_id in enumerate(done):  # finished before the crash: the result, intact
            got = c.get(task_id)
            assert got["status"] == "completed" and got["result"]["content"][0]["text"] == f"done-{i}"
        for task_id in plain:  # working at the crash: failed, saying why
            got = c.get(task_id)
            assert got["status"] == "failed", got
            assert "restarted while the task ran" in got["error"]["message"]
        for i, task_id in enumerate(resumable):  # resumable: run again, to its own result
            got = c.until(task_id, lambda t: t["status"] in TERMINAL, timeout=30)
            assert got["status"] == "completed" and got["result"]["content"][0]["text"] == f"again-{i}"


@pytest.mark.slow
def test_a_supervised_server_killed_mid_task_answers_every_task_after_its_restart(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    with serve(tmp_path, "--state-dir", state, "--supervise") as server, client(server) as c:
        ids = [c.start("work", seconds=60, text=f"t{i}") for i in range(30)]
        health = c.result("tools/call", {"name": "server_health", "arguments": {}})
        pid = health["structuredContent"]["pid"]
        os.kill(pid, signal.SIGKILL)  # the child; the supervisor starts a new one on the same port
        end = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError, AssertionError, KeyError):
                if c.get(ids[0])["status"] == "failed":
                    break
            assert time.monotonic() < end, "the restarted child never answered"
            time.sleep(0.2)
        assert {c.get(t)["status"] for t in ids} == {"failed"}


def _shared(tmp: Path, store_args: tuple[str, ...]) -> None:
    marker = tmp / "cancelled.txt"
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(serve(tmp, *store_args, "--worker-id", "a"))
        b = stack.enter_context(serve(tmp, *store_args, "--worker-id", "b"))
        ca, cb = stack.enter_context(client(a)), stack.enter_context(client(b))
        # get: created on A, seen on B
        task_id = ca.start("work", seconds=0.2, text="from a")
        assert cb.get(task_id)["status"] in ("working", "completed")
        assert cb.until(task_id, lambda t: t["status"] == "completed")["result"]["content"][0]["text"] == "from a"
        # cancel: sent to B, the coroutine on A stops
        task_id = ca.start("watched", seconds=60, marker=str(marker))
        time.sleep(0.2)
        assert cb.result("tasks/cancel", {"taskId": task_id})["resultType"] == "complete"
        assert ca.until(task_id, lambda t: t["status"] in TERMINAL)["status"] == "cancelled"
        end = time.monotonic() + 10
        while not marker.exists():
            assert time.monotonic() < end, "the task's coroutine on A was never cancelled"
            time.sleep(0.05)
        # update: answered through B, the question was A's
        task_id = ca.start("confirm", question="go?")
        pending = cb.until(task_id, lambda t: t["status"] == "input_required")
        (key,) = pending["inputRequests"]
        answer = {"action": "accept", "content": {"ok": True}}
        cb.result("tasks/update", {"taskId": task_id, "inputResponses": {key: answer}})
        done = ca.until(task_id, lambda t: t["status"] in TERMINAL)
        assert done["status"] == "completed" and done["result"]["content"][0]["text"] == "answered True"


@pytest.mark.slow
def test_two_servers_on_one_sqlite_file_share_their_tasks(tmp_path: Path) -> None:
    _shared(tmp_path, ("--state-dir", str(tmp_path / "state")))


@pytest.mark.slow
def test_two_servers_on_one_redis_share_their_tasks(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        _shared(tmp_path, ("--task-store", url))


@pytest.mark.slow
def test_a_dead_worker_s_tasks_are_failed_by_the_survivor_when_its_lease_ends(tmp_path: Path) -> None:
    store = ("--state-dir", str(tmp_path / "state"), "--task-lease", "2")
    with serve(tmp_path, *store, "--worker-id", "survivor") as survivor, client(survivor) as cs:
        with serve(tmp_path, *store) as doomed, client(doomed) as cd:
            task_id = cd.start("work", seconds=60, text="lost")
            doomed.proc.send_signal(signal.SIGKILL)
            doomed.proc.wait(10)
        got = cs.until(task_id, lambda t: t["status"] in TERMINAL, timeout=20)
        assert got["status"] == "failed" and "stopped answering" in got["error"]["message"]


@pytest.mark.slow
def test_sigterm_drains_tasks_up_to_the_drain_timeout(tmp_path: Path) -> None:
    opts = ("--state-dir", str(tmp_path / "state"), "--worker-id", "w1", "--drain-timeout", "2")
    with serve(tmp_path, *opts) as first, client(first) as c:
        short = c.start("work", seconds=1, text="drained")
        long = c.start("work", seconds=60, text="never")
        resumable = c.start("again", seconds=60, text="later")
        time.sleep(0.1)
        started = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(20)
        took = time.monotonic() - started
    assert took < 8, f"the drain took {took:.1f}s with --drain-timeout 2"
    with serve(tmp_path, *opts) as second, client(second) as c:
        got = c.get(short)
        assert got["status"] == "completed" and got["result"]["content"][0]["text"] == "drained"
        got = c.get(long)
        assert got["status"] == "failed", got
        assert c.get(resumable)["status"] == "working"  # left for this start to run again
