"""MCP tasks (2026-07-28 `io.modelcontextprotocol/tasks`) on a real `bemcp serve`: what a task costs over HTTP.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_tasks.py                     # sqlite, redis, memory; 2 rounds x 5 s
    .venv/bin/python benchmarks/bench_tasks.py --quick             # 1 round x 2 s, fewer samples and tasks
    .venv/bin/python benchmarks/bench_tasks.py --stores sqlite,redis --seconds 8 --out /tmp/tasks.json

One server per store (`--task-store sqlite|redis://...|memory`, a fresh `--state-dir` under --dir), each pinned to
CPU 0 (`taskset -c 0`); this client, a single-threaded selector loop speaking raw HTTP/1.1 keep-alive, runs on
CPU 1, and so does the redis-server (Debian's, started on a free port as the tests do; a Redis on another host
is what a deployment has, so it is kept off the server's core). The app is written to a temp file:
`noop` (task-capable, returns "ok"), `noop_plain` (never a task) and `hold(seconds)` (task-capable, sleeps).

Measured, every store in the same run so that their ratios compare:

1. task creations/s: `tools/call noop` declaring the tasks extension, CONNS keep-alive connections; only
   well-formed CreateTaskResults (`resultType: "task"`, a taskId) count. Goal: >= 5,000/s on SQLite.
2. `tasks/get`/s on the tasks that (1) created (all completed), and plain `tools/call noop_plain`/s (no
   extension declared) against the same server; the ratio get / plain per round. Goal: >= 50 %.
3. create-to-result, one call in flight: from sending the task-creating call to the first `tasks/get` that shows
   `completed` (polled back to back, no sleep), against a plain call's latency; p50/p99 of both and the
   difference. Plain and task samples alternate, so noise falls on both.
4. 10,000 working tasks: a fresh server per store (`--max-tasks 20000 --max-concurrency 20000 --queue-size
   20000`), warmed up, then 10,000 `hold(300)` tasks created CONNS at a time; the server's RSS before and after.
   Every task is then checked to be still `working` (so none had finished or failed), and the server is killed.
   Goal: growth < 300 MB.

Throughput runs alternate stores (A B C, then C B A; one store's plain, create and get back to back), each
starts once the machine is calm (up to 5 s), and a run during which other processes took more than
--max-other-cpu percent of the server's core or of the client's is measured again (--retries), keeping the least
disturbed. The CPU columns tell who set the pace (server near 100 % and client well below: the server), and how
the server's CPU splits between its event-loop thread and its other threads (SQLite's writer). A JSON-RPC error
other than the overload refusal (-32050), or a malformed answer, is counted as an error, listed at the end and
makes the exit status 1; overload refusals are counted apart and never as answers.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import math
import os
import platform
import selectors
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis_server import redis_server

import bemcp
from benchmarks import _common as c

EXT = "io.modelcontextprotocol/tasks"
TASK_META: dict[str, Any] = {**c.META, "io.modelcontextprotocol/clientCapabilities": {"extensions": {EXT: {}}}}
PLAIN_META: dict[str, Any] = c.META  # declares no extension: a plain, synchronous call
OVERLOADED = -32050

GOAL_CREATES_PER_S = 5_000.0  # SQLite
GOAL_GET_VS_PLAIN = 0.50
GOAL_RSS_MB = 300.0

APP_SOURCE = '''\
"""bench_tasks.py's app: no-op tools with and without task support, and a task that sleeps."""

import asyncio

from bemcp import App

app = App("bench-tasks", version="0.1.0")


@app.tool(task="optional")
async def noop() -> str:
    """Does nothing; a task when the client declares the tasks extension."""
    return "ok"


@app.tool(task="forbidden")
async def noop_plain() -> str:
    """Does nothing; never a task."""
    return "ok"


@app.tool(task="optional")
async def hold(seconds: float) -> str:
    """Sleeps, then returns "ok"."""
    await asyncio.sleep(seconds)
    return "ok"
'''

# JSON-RPC ids: 10 digits each, so that a template's Content-Length never changes.
ID_DIGITS = 10
_ids = itertools.count(10**9)

OK, OVERLOAD, ERROR = "ok", "overload", "error"
Check = Callable[[int, bytes, Any], tuple[str, Any]]  # (HTTP status, body, context) -> (kind, value or why)


# -- requests and answers --------------------------------------------------------------------------------


class Template:
    """One request, split around its JSON-RPC id: `render(id)` is two concatenations."""

    __slots__ = ("head", "tail")

    def __init__(self, port: int, method: str, name: str, params: dict[str, Any], meta: dict[str, Any]) -> None:
        marker = "@@ID@@"
        body = orjson.dumps({"jsonrpc": "2.0", "id": marker, "method": method, "params": {**params, "_meta": meta}})
        a, b = body.split(b'"' + marker.encode() + b'"')
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {c.MODERN}\r\n"
            f"Mcp-Method: {method}\r\nMcp-Name: {name}\r\nContent-Length: {len(a) + ID_DIGITS + len(b)}\r\n\r\n"
        )
        self.head = head.encode() + a
        self.tail = b

    def render(self, req_id: int) -> bytes:
        return self.head + str(req_id).encode() + self.tail


def plain_call(port: int) -> Template:
    return Template(port, "tools/call", "noop_plain", {"name": "noop_plain", "arguments": {}}, PLAIN_META)


def task_call(port: int, tool: str = "noop", arguments: dict[str, Any] | None = None) -> Template:
    return Template(port, "tools/call", tool, {"name": tool, "arguments": arguments or {}}, TASK_META)


def task_get(port: int, task_id: str) -> Template:
    return Template(port, "tasks/get", task_id, {"taskId": task_id}, TASK_META)


def _refusal(status: int, msg: Any) -> tuple[str, Any]:
    """An answer that is not the expected result: the overload refusal, or an error (with what it was)."""
    err = msg.get("error") if isinstance(msg, dict) else None
    if isinstance(err, dict) and err.get("code") == OVERLOADED:
        return OVERLOAD, None
    return ERROR, f"HTTP {status}: {orjson.dumps(msg)[:300].decode(errors='replace')}"


def _message(status: int, body: bytes, req_id: int) -> tuple[dict[str, Any] | None, tuple[str, Any] | None]:
    """The JSON-RPC answer to `req_id` as a dict, or the (kind, why) that it is not a well-formed result."""
    try:
        msg = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, (ERROR, f"HTTP {status}: not JSON: {body[:200]!r}")
    if not isinstance(msg, dict) or "result" not in msg or status != 200:
        return None, _refusal(status, msg)
    if msg.get("id") != req_id:
        return None, (ERROR, f"answer id {msg.get('id')!r} for request {req_id}")
    return msg, None


def _says_ok(result: Any) -> bool:
    if not isinstance(result, dict) or result.get("isError"):
        return False
    content = result.get("content")
    return isinstance(content, list) and bool(content) and content[0] == {"type": "text", "text": "ok"}


def check_plain(status: int, body: bytes, req_id: Any) -> tuple[str, Any]:
    msg, bad = _message(status, body, req_id)
    if msg is None:
        assert bad is not None
        return bad
    result = msg["result"]
    if _says_ok(result) and result.get("resultType", "complete") == "complete":
        return OK, None
    return ERROR, f"not a plain result: {body[:300]!r}"


def check_created(status: int, body: bytes, req_id: Any) -> tuple[str, Any]:
    msg, bad = _message(status, body, req_id)
    if msg is None:
        assert bad is not None
        return bad
    result = msg["result"]
    if not isinstance(result, dict):
        return ERROR, f"not a CreateTaskResult: {body[:300]!r}"
    task_id = result.get("taskId")
    created = result.get("resultType") == "task" and result.get("status") in ("working", "completed")
    if created and isinstance(task_id, str) and task_id:
        return OK, task_id
    return ERROR, f"not a CreateTaskResult: {body[:300]!r}"


def detailed_task(status: int, body: bytes, req_id: int, task_id: str) -> tuple[str, Any]:
    """A well-formed `tasks/get` answer for `task_id`: (OK, its status), after checking a completed one's result."""
    msg, bad = _message(status, body, req_id)
    if msg is None:
        assert bad is not None
        return bad
    result = msg["result"]
    state = result.get("status") if isinstance(result, dict) else None
    if not isinstance(state, str) or result.get("taskId") != task_id:
        return ERROR, f"not the DetailedTask of {task_id}: {body[:300]!r}"
    if state == "completed" and not _says_ok(result.get("result")):
        return ERROR, f"completed without the tool's result: {body[:300]!r}"
    if state in ("failed", "cancelled"):
        return ERROR, f"task {task_id} {state}: {body[:300]!r}"
    return OK, state


def check_get_completed(status: int, body: bytes, ctx: Any) -> tuple[str, Any]:
    req_id, task_id = ctx
    kind, value = detailed_task(status, body, req_id, task_id)
    if kind == OK and value != "completed":
        return ERROR, f"task {task_id} is {value}, expected completed"
    return kind, None


def check_get_working(status: int, body: bytes, ctx: Any) -> tuple[str, Any]:
    req_id, task_id = ctx
    kind, value = detailed_task(status, body, req_id, task_id)
    if kind == OK and value != "working":
        return ERROR, f"task {task_id} is {value}, expected working"
    return kind, None


# -- HTTP/1.1 on raw sockets -------------------------------------------------------------------------------


def _parse(buf: bytearray) -> tuple[int, bytes] | None:
    """Take one complete response off the front of `buf`: (status, body); None while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise RuntimeError(f"a response without Content-Length: {head[:300]!r}")
    stop = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : stop if stop >= 0 else len(head)])
    need = end + 4 + length
    if len(buf) < need:
        return None
    status = int(buf[9:12])
    body = bytes(buf[end + 4 : need])
    del buf[:need]
    return status, body


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def roundtrip(s: socket.socket, buf: bytearray, request: bytes) -> tuple[int, bytes]:
    """Send one request on a blocking keep-alive socket and read its response."""
    s.sendall(request)
    while True:
        got = _parse(buf)
        if got is not None:
            return got
        data = s.recv(262144)
        if not data:
            raise RuntimeError("the server closed a keep-alive connection")
        buf += data


class _Conn:
    __slots__ = ("buf", "ctx", "sent", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.sent = 0.0
        self.ctx: Any = None


@dataclass
class Load:
    """What one load-generator run got back."""

    ok: int = 0
    overloads: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # percent of one core over the window, per process


def _core_busy(core: int | None) -> float:
    """Busy CPU seconds of one core so far (0 when unpinned)."""
    if core is None:
        return 0.0
    t = psutil.cpu_times(percpu=True)[core]
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


def _threads(pid: int) -> tuple[float, float]:
    """CPU seconds of a process's main thread (the event loop) and of all its other threads (a store's writer,
    the sync pool), so far."""
    try:
        threads = psutil.Process(pid).threads()
    except psutil.Error:
        return 0.0, 0.0
    main = sum(t.user_time + t.system_time for t in threads if t.id == pid)
    rest = sum(t.user_time + t.system_time for t in threads if t.id != pid)
    return float(main), float(rest)


class CpuWatch:
    """CPU seconds of the server (its event-loop thread and its other threads apart), this client, redis-server
    and everything else, over a window. With pinning it also tells what other processes took of the server's core
    and of the client's core: the server's own core is its alone by design, and the client's (shared with
    redis-server) paces the load."""

    def __init__(self, pids: dict[str, int], server_core: int | None, client_core: int | None) -> None:
        self.pids = pids
        self.cores = {"server": server_core, "client": client_core}
        self.start()

    def _now(self) -> tuple[dict[str, float], float, dict[str, float], tuple[float, float], float]:
        used = {k: c.cpu_seconds(p) for k, p in self.pids.items()}
        cores = {k: _core_busy(core) for k, core in self.cores.items()}
        return used, c.system_busy_seconds(), cores, _threads(self.pids["server"]), time.perf_counter()

    def start(self) -> None:
        self.t0 = self._now()

    def stop(self) -> dict[str, float]:
        (a, busy0, cores0, th0, w0), (b, busy1, cores1, th1, w1) = self.t0, self._now()
        wall = max(w1 - w0, 1e-9)
        used = {k: b[k] - a[k] for k in a}
        out = {f"{k}_cpu_pct": round(100 * v / wall, 1) for k, v in used.items()}
        out["server_loop_cpu_pct"] = round(100 * (th1[0] - th0[0]) / wall, 1)
        out["server_threads_cpu_pct"] = round(100 * (th1[1] - th0[1]) / wall, 1)
        out["other_cpu_pct"] = round(max(0.0, 100 * ((busy1 - busy0) - sum(used.values())) / wall), 1)
        if self.cores["server"] is not None:
            ours = {"server": used["server"], "client": used["client"] + used.get("redis", 0.0)}
            for k in ("server", "client"):
                other = (cores1[k] - cores0[k]) - ours[k]
                out[f"other_on_{k}_core_pct"] = round(max(0.0, 100 * other / wall), 1)
        out["server_cpu_s"] = round(used.get("server", 0.0), 4)
        return out

    def disturbance(self, cpu: dict[str, float]) -> float:
        if "other_on_server_core_pct" in cpu:
            return max(cpu["other_on_server_core_pct"], cpu["other_on_client_core_pct"])
        return cpu.get("other_cpu_pct", 0.0)


def drive(
    port: int,
    conns: int,
    make: Callable[[int], tuple[bytes, Any]],
    check: Check,
    cpu: CpuWatch,
    *,
    seconds: float | None = None,
    total: int | None = None,
) -> Load:
    """`conns` keep-alive connections, each sending its next request as soon as its answer is in.

    With `seconds`: counts the answers that arrive within that window (the ones still in flight at its end are
    read but not counted). With `total`: sends exactly that many requests and waits for every answer.
    `make(n)` gives the n-th request and the context `check` gets with its answer.
    """
    assert (seconds is None) != (total is None)
    load = Load()
    sel = selectors.DefaultSelector()
    all_conns = [_Conn(connect(port)) for _ in range(conns)]
    seq = 0
    in_flight = 0

    def send(conn: _Conn) -> None:
        nonlocal seq, in_flight
        request, conn.ctx = make(seq)
        seq += 1
        in_flight += 1
        conn.sent = time.perf_counter()
        conn.sock.sendall(request)

    gc.disable()
    try:
        for conn in all_conns:
            conn.sock.setblocking(False)
            sel.register(conn.sock, selectors.EVENT_READ, conn)
        cpu.start()
        start = time.perf_counter()
        end = start + seconds if seconds is not None else math.inf
        counting = True
        for conn in all_conns:
            if total is None or seq < total:
                send(conn)
        while in_flight:
            events = sel.select(30)
            if not events:
                raise RuntimeError(f"no answer in 30 s ({in_flight} in flight)")
            for key, _ in events:
                conn = key.data
                data = conn.sock.recv(262144)
                if not data:
                    raise RuntimeError("the server closed a keep-alive connection")
                conn.buf += data
                got = _parse(conn.buf)
                if got is None:
                    continue
                now = time.perf_counter()
                in_flight -= 1
                if counting and now >= end:
                    counting = False
                    load.seconds = end - start
                    load.cpu = cpu.stop()
                if counting:
                    kind, value = check(got[0], got[1], conn.ctx)
                    if kind == OK:
                        load.ok += 1
                        load.latencies_ms.append((now - conn.sent) * 1000)
                        if value is not None:
                            load.values.append(value)
                    elif kind == OVERLOAD:
                        load.overloads += 1
                    else:
                        load.errors += 1
                        if len(load.error_samples) < 5:
                            load.error_samples.append(str(value))
                elif seconds is not None and got[0] == 200:
                    # Past the window: not counted, but a created task's id is still worth keeping for later.
                    kind, value = check(got[0], got[1], conn.ctx)
                    if kind == OK and value is not None:
                        load.values.append(value)
                if now < end and (total is None or seq < total):
                    send(conn)
        if counting:  # a `total` run: the window is the whole run
            load.seconds = time.perf_counter() - start
            load.cpu = cpu.stop()
    finally:
        gc.enable()
        sel.close()
        for conn in all_conns:
            conn.sock.close()
    load.latencies_ms.sort()
    return load


# -- servers -----------------------------------------------------------------------------------------------


@dataclass
class Server:
    store: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def wait_ready(server: Server, timeout: float = 40.0) -> None:
    """/healthz answers, then a plain call and a task-creating call answer properly."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.store} server exited ({server.proc.returncode}): {server.log.read_text()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=1) as r,
        ):
            if r.status == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.store} server not healthy in {timeout:.0f} s: {server.log.read_text()}")
        time.sleep(0.05)
    s, buf = connect(server.port), bytearray()
    try:
        for template, check in ((plain_call(server.port), check_plain), (task_call(server.port), check_created)):
            rid = next(_ids)
            kind, why = check(*roundtrip(s, buf, template.render(rid)), rid)
            if kind != OK:
                log = server.log.read_text()[-3000:]
                raise RuntimeError(f"{server.store} server: first call answered {kind}: {why}; its log: {log}")
    finally:
        s.close()


@contextlib.contextmanager
def serving(
    store: str, store_arg: str, app: Path, state_dir: Path, cpu: int | None, extra: Sequence[str] = ()
) -> Iterator[Server]:
    port = c.free_port()
    log = state_dir.parent / f"server-{store}-{port}.log"
    cmd = [c.PYTHON, "-m", "bemcp", "serve", str(app), "--transport", "http", "--port", str(port)]
    cmd += ["--task-store", store_arg, "--state-dir", str(state_dir), "--log-level", "warning", *extra]
    with open(log, "wb") as out:
        proc = subprocess.Popen(c.pinned(cmd, cpu), stdout=out, stderr=subprocess.STDOUT, env=c.child_env(), cwd=c.ROOT)
    server = Server(store, proc, port, log)
    try:
        wait_ready(server)
        yield server
    finally:
        c.stop(proc)


def find_redis_pid() -> int | None:
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.name() == "redis-server":
                return child.pid
    return None


def pin_all_threads(pid: int, cpu: int | None) -> None:
    """Pin every thread of `pid` (redis-server starts its background threads at launch) to `cpu`."""
    if cpu is None:
        return
    for thread in psutil.Process(pid).threads():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(thread.id, {cpu})


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


# -- the measurements --------------------------------------------------------------------------------------


@dataclass
class Throughput:
    store: str
    kind: str  # plain | create | get
    round: int
    answers: int
    seconds: float
    overloads: int
    errors: int
    p50_ms: float
    p99_ms: float
    server_us_per_answer: float
    cpu: dict[str, float]
    error_samples: list[str]

    @property
    def rate(self) -> float:
        return self.answers / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Latency:
    store: str
    samples: int
    plain_ms: list[float]  # sorted
    task_ms: list[float]  # sorted: create to the first tasks/get that shows completed
    create_ms: list[float]  # sorted: the creating call alone
    polls: list[int]  # tasks/get calls per task, the completed one included
    errors: int
    error_samples: list[str]


@dataclass
class Working:
    store: str
    tasks: int
    create_seconds: float
    rss_before_mb: float
    rss_after_mb: float
    still_working: int
    overloads: int
    errors: int
    error_samples: list[str]
    redis_rss_growth_mb: float | None
    holding_cpu_pct: float  # the server's CPU while it only holds the tasks

    @property
    def growth_mb(self) -> float:
        return self.rss_after_mb - self.rss_before_mb


@dataclass
class Results:
    throughput: list[Throughput] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)
    working: list[Working] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    task_ids: dict[str, list[str]] = field(default_factory=dict)  # the last round's created tasks, per store


def _watch(server: Server, redis_pid: int | None, args: argparse.Namespace) -> CpuWatch:
    pids = {"server": server.pid, "client": os.getpid()}
    if redis_pid is not None and server.store == "redis":
        pids["redis"] = redis_pid
    return CpuWatch(pids, args.server_cpu, args.client_cpu)


def throughput(
    server: Server, kind: str, rnd: int, args: argparse.Namespace, results: Results, redis_pid: int | None
) -> None:
    port = server.port
    created: list[str] = []
    make: Callable[[int], tuple[bytes, Any]]
    if kind == "get":
        ids = results.task_ids.get(server.store) or []
        if not ids:
            raise RuntimeError("no created tasks to get")
        cache: dict[str, Template] = {}

        def make(n: int) -> tuple[bytes, Any]:
            task_id = ids[n % len(ids)]
            template = cache.get(task_id)
            if template is None:
                template = cache[task_id] = task_get(port, task_id)
            rid = next(_ids)
            return template.render(rid), (rid, task_id)

        check: Check = check_get_completed
    else:
        template = plain_call(port) if kind == "plain" else task_call(port)
        check = check_plain if kind == "plain" else check_created

        def make(n: int) -> tuple[bytes, Any]:
            rid = next(_ids)
            return template.render(rid), rid

    watch = _watch(server, redis_pid, args)
    load, attempts, disturbed = Load(), 0, math.inf
    # Measure again (up to --retries times) while other processes took over --max-other-cpu percent of the
    # server's core or the client's; keep the least disturbed run: a shared machine's bursts are filtered out.
    while attempts <= args.retries and disturbed > args.max_other_cpu:
        attempts += 1
        c.wait_for_calm(args.max_other_cpu, timeout=5)
        c.wait_quiet([server.pid])
        if args.warmup > 0:
            warm = drive(port, args.conns, make, check, watch, seconds=args.warmup)
            _record_errors(results, f"{server.store} {kind} warm-up", warm, server)
        again = drive(port, args.conns, make, check, watch, seconds=args.seconds)
        _record_errors(results, f"{server.store} {kind} round {rnd + 1} attempt {attempts}", again, server)
        if kind == "create":
            created.extend(again.values)
        if watch.disturbance(again.cpu) < disturbed:
            load, disturbed = again, watch.disturbance(again.cpu)
    load.cpu["attempts"] = attempts
    if server.proc.poll() is not None:
        raise RuntimeError(f"the {server.store} server died: {server.log.read_text()[-2000:]}")
    if kind == "create":
        # The next get run reads these (all completed by then: noop finishes at once).
        results.task_ids[server.store] = created[-args.get_pool :]
    lat = load.latencies_ms
    run = Throughput(
        server.store,
        kind,
        rnd,
        load.ok,
        load.seconds,
        load.overloads,
        load.errors,
        c.percentile(lat, 50),
        c.percentile(lat, 99),
        1e6 * load.cpu.get("server_cpu_s", 0.0) / load.ok if load.ok else 0.0,
        load.cpu,
        load.error_samples,
    )
    results.throughput.append(run)
    cpu = load.cpu
    print(
        f"round {rnd + 1} {server.store:6s} {kind:6s}: {run.rate:8,.0f} answers/s  p50 {run.p50_ms:6.2f} ms  "
        f"p99 {run.p99_ms:6.2f} ms  overloads {run.overloads}  errors {run.errors}  cpu: server "
        f"{cpu.get('server_cpu_pct', 0):.0f}% client {cpu.get('client_cpu_pct', 0):.0f}% redis "
        f"{cpu.get('redis_cpu_pct', 0):.0f}% other {cpu.get('other_cpu_pct', 0):.0f}% (on the server's core "
        f"{_pct(cpu, 'other_on_server_core_pct')}, on the client's {_pct(cpu, 'other_on_client_core_pct')}"
        f"); server loop thread {cpu.get('server_loop_cpu_pct', 0):.0f}%, other threads "
        f"{cpu.get('server_threads_cpu_pct', 0):.0f}%; attempt(s) {attempts}",
        file=sys.stderr,
    )


def _pct(cpu: dict[str, float], key: str) -> str:
    return f"{cpu[key]:.0f}%" if key in cpu else "-"


def _record_errors(results: Results, label: str, load: Load, server: Server | None = None) -> None:
    if load.errors:
        log = f"; server log: {server.log.read_text()[-2000:]}" if server is not None else ""
        results.failures.append(f"{label}: {load.errors} bad answers, e.g. {load.error_samples}{log}")


def latency(server: Server, samples: int, warmup: int, results: Results) -> None:
    """One call in flight: plain calls and task round trips, alternating."""
    port = server.port
    plain, create = plain_call(port), task_call(port)
    out = Latency(server.store, samples, [], [], [], [], 0, [])

    def bad(why: str) -> None:
        out.errors += 1
        if len(out.error_samples) < 5:
            out.error_samples.append(why)

    c.wait_for_calm(25.0, timeout=10)
    c.wait_quiet([server.pid])
    s, buf = connect(port), bytearray()  # after the waits: an idle keep-alive connection is closed in 5 s
    gc.disable()
    try:
        for i in range(warmup + samples):
            counted = i >= warmup
            rid = next(_ids)
            t0 = time.perf_counter()
            kind, why = check_plain(*roundtrip(s, buf, plain.render(rid)), rid)
            t1 = time.perf_counter()
            if kind != OK:
                bad(f"plain: {kind} {why}")
            elif counted:
                out.plain_ms.append((t1 - t0) * 1000)
            rid = next(_ids)
            t0 = time.perf_counter()
            kind, task_id = check_created(*roundtrip(s, buf, create.render(rid)), rid)
            t_created = time.perf_counter()
            if kind != OK:
                bad(f"create: {kind} {task_id}")
                continue
            get = task_get(port, task_id)  # inside the clock, as any client builds its poll after the answer
            polls = 0
            while True:
                rid = next(_ids)
                polls += 1
                kind, state = detailed_task(*roundtrip(s, buf, get.render(rid)), rid, task_id)
                if kind != OK:
                    bad(f"get: {kind} {state}")
                    break
                if state == "completed":
                    t1 = time.perf_counter()
                    if counted:
                        out.task_ms.append((t1 - t0) * 1000)
                        out.create_ms.append((t_created - t0) * 1000)
                        out.polls.append(polls)
                    break
                if polls > 100_000:
                    bad(f"task {task_id} still {state} after {polls} polls")
                    break
    finally:
        gc.enable()
        s.close()
    for values in (out.plain_ms, out.task_ms, out.create_ms):
        values.sort()
    results.latency.append(out)
    if out.errors:
        results.failures.append(f"{server.store} latency: {out.errors} bad answers, e.g. {out.error_samples}")
    print(
        f"latency {server.store:6s}: plain p50 {c.percentile(out.plain_ms, 50):.3f} ms, task create->completed "
        f"p50 {c.percentile(out.task_ms, 50):.3f} ms, errors {out.errors}",
        file=sys.stderr,
    )


def working(
    store: str,
    store_arg: str,
    app: Path,
    tmp: Path,
    args: argparse.Namespace,
    results: Results,
    redis_pid: int | None,
) -> None:
    """`args.working_tasks` tasks that sleep, held at once; the server's RSS growth."""
    limits = ["--max-tasks", "20000", "--max-concurrency", "20000", "--queue-size", "20000"]
    state = tmp / f"state-{store}-working"
    with serving(store, store_arg, app, state, args.server_cpu, limits) as server:
        port = server.port
        noop, hold = task_call(port), task_call(port, "hold", {"seconds": args.hold})
        watch = _watch(server, redis_pid, args)

        def make_noop(n: int) -> tuple[bytes, Any]:
            rid = next(_ids)
            return noop.render(rid), rid

        def make_hold(n: int) -> tuple[bytes, Any]:
            rid = next(_ids)
            return hold.render(rid), rid

        # Warm-up: the connections, the store and the allocator see traffic before the "before" reading.
        warm = drive(port, args.conns, make_noop, check_created, watch, total=min(2_000, args.working_tasks))
        _record_errors(results, f"{store} working warm-up", warm, server)
        c.wait_quiet([server.pid])
        time.sleep(0.5)
        before = rss_mb(server.pid)
        redis_before = rss_mb(redis_pid) if redis_pid is not None and store == "redis" else None
        load = drive(port, args.conns, make_hold, check_created, watch, total=args.working_tasks)
        c.wait_quiet([server.pid])
        time.sleep(0.5)
        after = rss_mb(server.pid)
        cpu0 = c.cpu_seconds(server.pid)
        time.sleep(2.0)
        holding_cpu = 100 * (c.cpu_seconds(server.pid) - cpu0) / 2.0  # the tick, over 10,000 live tasks
        redis_growth = rss_mb(redis_pid) - redis_before if redis_pid is not None and redis_before is not None else None
        ids: list[str] = load.values
        pool = {i: task_get(port, i) for i in ids}

        def make_get(n: int) -> tuple[bytes, Any]:
            rid = next(_ids)
            return pool[ids[n]].render(rid), (rid, ids[n])

        verified = drive(port, args.conns, make_get, check_get_working, watch, total=len(ids)) if ids else Load()
        if server.proc.poll() is not None:
            raise RuntimeError(f"the {store} server died holding tasks: {server.log.read_text()[-2000:]}")
        server.proc.kill()  # the tasks are not wanted; a SIGTERM would drain, then fail 10,000 tasks one by one
        server.proc.wait()
    row = Working(
        store,
        load.ok,
        load.seconds,
        before,
        after,
        verified.ok,
        load.overloads,
        load.errors + verified.errors,
        load.error_samples + verified.error_samples,
        redis_growth,
        holding_cpu,
    )
    results.working.append(row)
    _record_errors(results, f"{store} working create", load, server)
    _record_errors(results, f"{store} working verify", verified, server)
    if load.ok != args.working_tasks:
        results.failures.append(f"{store} working: {load.ok} of {args.working_tasks} tasks created")
    print(
        f"working {store:6s}: {load.ok:,} tasks in {load.seconds:.1f} s, RSS {before:.1f} -> {after:.1f} MB, "
        f"{verified.ok:,} verified working",
        file=sys.stderr,
    )


# -- the report --------------------------------------------------------------------------------------------


def _geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values and min(values) > 0 else 0.0


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def _ms(values: Sequence[float], q: float) -> float:
    return c.percentile(values, q)


def report(results: Results, args: argparse.Namespace, stores: list[str], header: list[str]) -> dict[str, Any]:
    print()
    print("\n".join(header))
    goals: list[dict[str, Any]] = []
    runs = results.throughput

    def by(store: str, kind: str) -> list[Throughput]:
        return [r for r in runs if r.store == store and r.kind == kind]

    print(f"\n### Throughput ({args.conns} keep-alive connections, {args.rounds} round(s) x {args.seconds:g} s)\n")
    print(
        "| store | request | answers/s (mean) | by round | p50 ms | p99 ms | server CPU µs/answer | server CPU % "
        "| of which event loop % | other server threads % | client CPU % | redis CPU % | others on server core % "
        "| others on client core % | attempts | overloads | errors |"
    )
    print("|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|")
    names = {"plain": "plain tools/call (no extension)", "create": "tools/call -> task (create)", "get": "tasks/get"}
    for store in stores:
        for kind in ("plain", "create", "get"):
            group = by(store, kind)
            if not group:
                continue

            def mean(key: str, group: list[Throughput] = group) -> str:
                values = [r.cpu[key] for r in group if key in r.cpu]
                return f"{statistics.fmean(values):.0f}" if values else "-"

            print(
                f"| {store} | {names[kind]} | {statistics.fmean(r.rate for r in group):,.0f} | "
                f"{', '.join(f'{r.rate:,.0f}' for r in group)} | {statistics.fmean(r.p50_ms for r in group):.2f} | "
                f"{statistics.fmean(r.p99_ms for r in group):.2f} | "
                f"{statistics.fmean(r.server_us_per_answer for r in group):.0f} | {mean('server_cpu_pct')} | "
                f"{mean('server_loop_cpu_pct')} | {mean('server_threads_cpu_pct')} | "
                f"{mean('client_cpu_pct')} | {mean('redis_cpu_pct')} | {mean('other_on_server_core_pct')} | "
                f"{mean('other_on_client_core_pct')} | {', '.join(str(int(r.cpu['attempts'])) for r in group)} | "
                f"{sum(r.overloads for r in group)} | {sum(r.errors for r in group)} |"
            )

    print("\n### Ratios, paired by round (same server, measured back to back)\n")
    print(
        "| store | tasks/get / plain, answers/s (by round) | geo. mean | same, by server CPU per answer (plain µs "
        "/ get µs) | task create / plain, answers/s (by round) | geo. mean |"
    )
    print("|---|---|--:|--:|---|--:|")
    ratios: dict[str, dict[str, float]] = {}
    for store in stores:
        plain = {r.round: r for r in by(store, "plain")}
        pair: dict[str, list[float]] = {}
        for kind in ("get", "create"):
            pair[kind] = [r.rate / plain[r.round].rate for r in by(store, kind) if r.round in plain]
        per_cpu = [
            plain[r.round].server_us_per_answer / r.server_us_per_answer
            for r in by(store, "get")
            if r.round in plain and r.server_us_per_answer > 0
        ]
        if not pair["get"] and not pair["create"]:
            continue
        ratios[store] = {k: _geomean(v) for k, v in pair.items()}
        ratios[store]["get_by_cpu"] = _geomean(per_cpu)
        print(
            f"| {store} | {', '.join(f'{x:.0%}' for x in pair['get'])} | {ratios[store]['get']:.0%} | "
            f"{ratios[store]['get_by_cpu']:.0%} | {', '.join(f'{x:.0%}' for x in pair['create'])} | "
            f"{ratios[store]['create']:.0%} |"
        )

    plains = [r.rate for r in runs if r.kind == "plain"]
    if len(plains) > 1:
        lo, hi = min(plains), max(plains)
        print(
            f"\nNoise gauge: plain tools/call runs the same code on every server, and ranged {lo:,.0f} to "
            f"{hi:,.0f} answers/s in this run ({hi / lo - 1:.0%} apart); read the ratios with that in mind."
        )

    if results.latency:
        print("\n### Create-to-result, one call in flight (no-op tool)\n")
        print(
            "| store | samples | plain p50 ms | plain p99 ms | task create→completed p50 ms | p99 ms "
            "| difference p50 ms | difference p99 ms | creating call alone p50 ms | tasks/get per task: mean, max "
            "| errors |"
        )
        print("|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|")
        for lat in results.latency:
            p, t = lat.plain_ms, lat.task_ms
            polls = f"{statistics.fmean(lat.polls):.2f}, {max(lat.polls)}" if lat.polls else "-"
            print(
                f"| {lat.store} | {len(t):,} | {_ms(p, 50):.3f} | {_ms(p, 99):.3f} | {_ms(t, 50):.3f} | "
                f"{_ms(t, 99):.3f} | {_ms(t, 50) - _ms(p, 50):+.3f} | {_ms(t, 99) - _ms(p, 99):+.3f} | "
                f"{_ms(lat.create_ms, 50):.3f} | {polls} | {lat.errors} |"
            )

    if results.working:
        print(f"\n### {args.working_tasks:,} concurrent working tasks (hold({args.hold:g} s)), server RSS\n")
        print(
            "| store | tasks created | in s | creations/s | RSS before MB | RSS after MB | growth MB | KB/task "
            "| verified still working | server CPU % while holding them | redis-server RSS growth MB | errors |"
        )
        print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for w in results.working:
            per_task = 1024 * w.growth_mb / w.tasks if w.tasks else 0.0
            redis = f"{w.redis_rss_growth_mb:.1f}" if w.redis_rss_growth_mb is not None else "-"
            rate = w.tasks / w.create_seconds if w.create_seconds else 0.0
            print(
                f"| {w.store} | {w.tasks:,} | {w.create_seconds:.2f} | {rate:,.0f} | {w.rss_before_mb:.1f} | "
                f"{w.rss_after_mb:.1f} | {w.growth_mb:.1f} | {per_task:.1f} | {w.still_working:,} | "
                f"{w.holding_cpu_pct:.1f} | {redis} | "
                f"{w.errors} |"
            )

    print("\n### Goals\n")
    print("| goal | store | measured | verdict |")
    print("|---|---|--:|---|")

    def goal(name: str, store: str, measured: str, ok: bool, value: float) -> None:
        ref = " (reference)" if store == "memory" else ""
        print(f"| {name} | {store}{ref} | {measured} | {_verdict(ok)} |")
        goals.append({"goal": name, "store": store, "measured": value, "meets": ok})

    for store in stores:
        creates = by(store, "create")
        if creates and store == "sqlite":
            rate = statistics.fmean(r.rate for r in creates)
            goal(
                f"task creations >= {GOAL_CREATES_PER_S:,.0f}/s",
                store,
                f"{rate:,.0f}/s",
                rate >= GOAL_CREATES_PER_S,
                rate,
            )
    for store in stores:
        if store in ratios:
            ratio = ratios[store]["get"]
            goal(
                f"tasks/get >= {GOAL_GET_VS_PLAIN:.0%} of plain calls/s",
                store,
                f"{ratio:.0%} (by server CPU per answer: {ratios[store]['get_by_cpu']:.0%})",
                ratio >= GOAL_GET_VS_PLAIN,
                ratio,
            )
    for w in results.working:
        goal(
            f"RSS growth < {GOAL_RSS_MB:g} MB for {args.working_tasks:,} working tasks",
            w.store,
            f"{w.growth_mb:.1f} MB",
            w.growth_mb < GOAL_RSS_MB and w.still_working == w.tasks == args.working_tasks,
            w.growth_mb,
        )
    if results.failures:
        print("\nFAILURES:\n" + "\n".join(f"- {f}" for f in results.failures))
    return {
        "throughput": [{**asdict(r), "rate": round(r.rate, 1)} for r in runs],
        "ratios": ratios,
        "latency": [
            {
                "store": lat.store,
                "samples": len(lat.task_ms),
                "plain_p50_ms": _ms(lat.plain_ms, 50),
                "plain_p99_ms": _ms(lat.plain_ms, 99),
                "task_p50_ms": _ms(lat.task_ms, 50),
                "task_p99_ms": _ms(lat.task_ms, 99),
                "create_p50_ms": _ms(lat.create_ms, 50),
                "create_p99_ms": _ms(lat.create_ms, 99),
                "polls_mean": statistics.fmean(lat.polls) if lat.polls else None,
                "polls_max": max(lat.polls) if lat.polls else None,
                "errors": lat.errors,
                "error_samples": lat.error_samples,
            }
            for lat in results.latency
        ],
        "working": [{**asdict(w), "growth_mb": w.growth_mb} for w in results.working],
        "goals": goals,
        "failures": results.failures,
    }


# -- orchestration -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--stores", default="sqlite,redis,memory", help="subset of sqlite,redis,memory (default all)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per throughput measurement (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each (default 1)")
    p.add_argument("--rounds", type=int, default=2, help="throughput rounds, alternating stores (default 2)")
    p.add_argument("--conns", type=int, default=64, help="keep-alive connections for throughput (default 64)")
    p.add_argument("--samples", type=int, default=3_000, help="sequential latency samples per store (default 3000)")
    p.add_argument("--working-tasks", type=int, default=10_000, help="tasks held at once (default 10000)")
    p.add_argument("--hold", type=float, default=300.0, help="seconds each held task sleeps (default 300)")
    p.add_argument("--get-pool", type=int, default=50_000, help="created tasks the tasks/get run cycles over")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 round x 2 s, 300 samples, 1,000 tasks")
    p.add_argument("--out", metavar="FILE.json", help="write the raw numbers here")
    p.add_argument("--dir", default=None, help="where the state dirs go (default: the system temp folder)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument(
        "--max-other-cpu",
        type=float,
        default=25.0,
        help="re-measure a throughput run when other processes took more than this %% of the server's core or of "
        "the client's (of all cores when unpinned) during it; also the calm threshold before a run (default 25)",
    )
    p.add_argument("--retries", type=int, default=1, help="re-measurements allowed per throughput run (default 1)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.rounds = 2.0, 0.5, 1
        args.samples, args.working_tasks = 300, 1_000
    stores = [s for s in args.stores.split(",") if s]
    unknown = set(stores) - {"sqlite", "redis", "memory"}
    if unknown or not stores:
        p.error(f"--stores: unknown {sorted(unknown)}; pick from sqlite,redis,memory")
    args.store_list = stores
    if args.no_pin or not c.can_pin((args.server_cpu, args.client_cpu)):
        if not args.no_pin:
            print("note: cannot pin to the requested CPUs; running unpinned", file=sys.stderr)
        args.server_cpu = args.client_cpu = None
    return args


def _fs_type(path: Path) -> str:
    best, fstype = "", "?"
    for part in psutil.disk_partitions(all=True):
        if str(path).startswith(part.mountpoint) and len(part.mountpoint) > len(best):
            best, fstype = part.mountpoint, part.fstype
    return f"{fstype} at {best}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stores: list[str] = args.store_list
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    if "redis" in stores and shutil.which("redis-server") is None:
        print("redis-server is not installed (apt-get install redis-server); leave redis out of --stores")
        return 2
    c.pin_self(args.client_cpu)
    results = Results()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bemcp-bench-tasks-", dir=args.dir) as folder:
        tmp = Path(folder)
        app = tmp / "bench_tasks_app.py"
        app.write_text(APP_SOURCE)
        with contextlib.ExitStack() as stack:
            redis_url = stack.enter_context(redis_server(tmp)) if "redis" in stores else None
            redis_pid = find_redis_pid() if redis_url else None
            if redis_pid is not None:
                pin_all_threads(redis_pid, args.client_cpu)
            store_args = {"sqlite": "sqlite", "memory": "memory", "redis": redis_url or ""}
            try:
                with contextlib.ExitStack() as servers:
                    live = {
                        s: servers.enter_context(serving(s, store_args[s], app, tmp / f"state-{s}", args.server_cpu))
                        for s in stores
                    }
                    for rnd in range(args.rounds):
                        order = stores if rnd % 2 == 0 else stores[::-1]
                        for store in order:  # one store's three back to back: its ratios pair close runs
                            for kind in ("plain", "create", "get"):
                                throughput(live[store], kind, rnd, args, results, redis_pid)
                    for store in stores:
                        latency(live[store], args.samples, max(50, args.samples // 10), results)
            except RuntimeError as e:
                results.failures.append(f"throughput/latency aborted: {e}")
                print(f"ABORTED: {e}", file=sys.stderr)
            for store in stores:
                try:
                    working(store, store_args[store], app, tmp, args, results, redis_pid)
                except RuntimeError as e:
                    results.failures.append(f"{store} working tasks aborted: {e}")
                    print(f"ABORTED: {e}", file=sys.stderr)
        fs = _fs_type(tmp)
    pinning = (
        f"server on CPU {args.server_cpu}, client and redis-server on CPU {args.client_cpu}"
        if args.server_cpu is not None
        else "not pinned"
    )
    header = [
        "## MCP tasks over HTTP (2026-07-28 io.modelcontextprotocol/tasks), one run",
        "",
        f"command: `{command}`",
        "",
        f"bemcp {bemcp.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, {pinning}; "
        f"SQLite state dir on {fs}; run took {time.time() - started:.0f} s",
    ]
    payload = report(results, args, stores, header)
    if args.out:
        settings = {k: v for k, v in vars(args).items() if k != "store_list"}
        c.write_json(args.out, {"benchmark": "tasks", "command": command, "settings": settings, **payload})
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
