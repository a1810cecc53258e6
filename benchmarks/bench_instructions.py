"""What the protections cost, counted in instructions: a figure this machine's noise cannot move.

Usage (from the repository root; needs valgrind, which `make bench` installs):

    .venv/bin/python benchmarks/bench_instructions.py                        # HTTP and stdio, 3000 calls each
    .venv/bin/python benchmarks/bench_instructions.py --transports stdio --calls 10000 --revision 2025-11-25

Throughput on this shared VM moves by several percent from one minute to the next, which is as much as the
protections cost. So each server (`--protections on` and `off`, same code) also runs under callgrind, with
instrumentation switched on only for exactly `--calls` `tools/call noop` requests after a warm-up, and the
instructions its event-loop thread executed are divided by the calls. Two runs of the same server agree to
about 0.1 %.

Instructions are not time (cache misses and branch mispredictions weigh differently), but the protections add
the same kind of work as the rest of the call (interpreted Python), so the ratio of the counts is a fair
estimate of the throughput ratio of a CPU-bound server. Two things differ under valgrind, both making the
"on" count an upper bound: calls run ~50x slower, so fewer of them fit in the latency histogram's first
bucket (<= 100 us) and more take the bisect path; and the background threads (watchdog heartbeat, memory
sampler), which run on a timer and not per call, get 50x more wall time per call. They are shown
separately, per second of wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c
from benchmarks.bench_http import modern_headers, open_session
from benchmarks.bench_stdio import Pipe, Stdio, await_reply, prepare

GOAL = 0.95
READY_TIMEOUT = 120.0  # python starting under valgrind
HTTP_CONNS = 8
STDIO_WINDOW = 16


@dataclass
class Count:
    transport: str
    protections: str
    calls: int
    loop_instructions: int  # the event loop's thread, over the measured calls
    other_instructions: int  # every other thread
    seconds: float  # wall time of the measured calls

    @property
    def per_call(self) -> float:
        return self.loop_instructions / self.calls


def serve_args(transport: str, protections: str, port: int | None) -> list[str]:
    args = ["-m", "bemcp", "serve", "--transport", transport, "--app", "benchmarks.apps:bemcp_app"]
    args += ["--log-level", "warning", "--protections", protections]
    return args + (["--port", str(port)] if port is not None else [])


def valgrind(out: Path) -> list[str]:
    # Instrumentation starts off (startup and warm-up run uncounted) and is toggled with callgrind_control.
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--separate-threads=yes",
        f"--callgrind-out-file={out}.%p",
    ]


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=60)


def totals(out: Path, pid: int) -> tuple[int, int]:
    """(event-loop thread, other threads) instructions of the one explicit dump."""
    loop = other = 0
    for f in out.parent.glob(f"{out.name}.{pid}.1-*"):
        m = re.search(r"^totals: (\d+)", f.read_text(errors="replace"), re.M)
        n = int(m.group(1)) if m else 0
        if f.name.endswith("-01"):  # thread 1: the main thread, which runs the event loop
            loop += n
        else:
            other += n
    if not loop:
        raise RuntimeError(f"no callgrind dump for pid {pid} under {out.parent}")
    return loop, other


@contextlib.contextmanager
def counted(proc: subprocess.Popen[bytes]) -> Iterator[list[float]]:
    """Instrumentation on for the body; yields a list that receives the body's wall time."""
    spent: list[float] = []
    control(proc.pid, "-i", "on")
    t0 = time.monotonic()
    yield spent
    spent.append(time.monotonic() - t0)
    control(proc.pid, "-i", "off")
    control(proc.pid, "-d")


# -- HTTP ---------------------------------------------------------------------------------------------------


def http_calls(port: int, revision: str, session: str | None, first_id: int, n: int) -> None:
    """`n` calls over HTTP_CONNS keep-alive connections, one call at a time on each; every answer is checked."""
    head, tail = c.call_body_parts(revision)
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if revision == c.MODERN:
        headers.update(modern_headers())
    else:
        assert session is not None
        headers.update({"MCP-Protocol-Version": c.LEGACY, "Mcp-Session-Id": session})
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    errors: list[str] = []

    def worker(k: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s, s.makefile("rb") as f:
            for i in range(first_id + k, first_id + n, HTTP_CONNS):
                body = head + str(i).encode() + tail
                s.sendall(
                    f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                status = f.readline()
                length = 0
                while (line := f.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                answer = f.read(length)
                if b" 200 " not in status or not c.is_good_result(answer):
                    errors.append(f"{status!r} {answer[:200]!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(HTTP_CONNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} bad answers, e.g. {errors[0]}")


def wait_port(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"server not listening in {READY_TIMEOUT:.0f}s")


def count_http(protections: str, args: argparse.Namespace, workdir: Path) -> Count:
    port = c.free_port()
    out = workdir / f"http-{protections}"
    log = workdir / f"http-{protections}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [*valgrind(out), c.PYTHON, *serve_args("http", protections, port)],
            stdout=err,
            stderr=subprocess.STDOUT,
            env=c.child_env(),
            cwd=c.ROOT,
        )
    try:
        wait_port(proc, port)
        session = open_session(port) if args.revision == c.LEGACY else None
        http_calls(port, args.revision, session, 1, args.warmup)
        with counted(proc) as spent:
            http_calls(port, args.revision, session, 1_000_000, args.calls)
    finally:
        c.stop(proc, timeout=60)
    loop, other = totals(out, proc.pid)
    return Count("http", protections, args.calls, loop, other, spent[0])


# -- stdio --------------------------------------------------------------------------------------------------


def stdio_calls(server: Stdio, revision: str, first_id: int, n: int) -> None:
    """`n` calls with STDIO_WINDOW in flight; every answer is checked."""
    sent = done = 0
    while done < n:
        batch = b""
        while sent < n and sent - done < STDIO_WINDOW:
            batch += c.call_body(first_id + sent, revision) + b"\n"
            sent += 1
        if batch:
            server.pipe.write(batch)
        for line in server.pipe.read_lines(60.0):
            if not c.is_good_result(line):
                raise RuntimeError(f"bad answer: {line[:200]!r}")
            done += 1
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited ({server.proc.returncode})")


def count_stdio(protections: str, args: argparse.Namespace, workdir: Path) -> Count:
    out = workdir / f"stdio-{protections}"
    log = workdir / f"stdio-{protections}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [*valgrind(out), c.PYTHON, *serve_args("stdio", protections, None)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=c.child_env(),
            cwd=c.ROOT,
        )
    server = Stdio(f"bemcp ({protections})", proc, Pipe(proc), log)
    try:
        prepare(server, args.revision)
        stdio_calls(server, args.revision, 1, args.warmup)
        with counted(proc) as spent:
            stdio_calls(server, args.revision, 1_000_000, args.calls)
        server.pipe.write(c.call_body("last", args.revision) + b"\n")
        await_reply(server, "last")
    finally:
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            c.stop(proc)
    loop, other = totals(out, proc.pid)
    return Count("stdio", protections, args.calls, loop, other, spent[0])


# -- main ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--transports", default="http,stdio", help="comma-separated: http, stdio (default both)")
    p.add_argument("--calls", type=int, default=3000, help="calls counted per server (default 3000)")
    p.add_argument("--warmup", type=int, default=300, help="uncounted calls first (default 300)")
    p.add_argument("--revision", default=c.MODERN, choices=[c.MODERN, c.LEGACY])
    c.add_source_arg(p)
    args = p.parse_args(argv)
    c.use_bemcp_src(args.bemcp_src)
    args.transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if not args.transports or set(args.transports) - {"http", "stdio"}:
        p.error("--transports takes http and/or stdio")
    if args.calls < 1 or args.warmup < 1:
        p.error("--calls and --warmup must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"needs {', '.join(missing)} (apt-get install valgrind)", file=sys.stderr)
        return 2
    counters = {"http": count_http, "stdio": count_stdio}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bemcp-instructions-") as tmp:
        for transport in args.transports:
            on, off = (counters[transport](mode, args, Path(tmp)) for mode in ("on", "off"))
            rows.append((on, off))
            print(f"{transport}: on {on.per_call:,.0f}, off {off.per_call:,.0f} instructions per call", flush=True)
    print()
    print(f"Instructions per `tools/call noop` in the event-loop thread ({args.revision}, {args.calls} calls each,")
    print(f"code {c.git_revision()}):")
    print()
    print("| transport | protections on | protections off | the protections | off / on | other threads on, per s |")
    print("|---|---|---|---|---|---|")
    verdict = True
    for on, off in rows:
        ratio = off.per_call / on.per_call
        verdict &= ratio >= GOAL
        print(
            f"| {on.transport} | {on.per_call:,.0f} | {off.per_call:,.0f} | {on.per_call - off.per_call:+,.0f} "
            f"({(on.per_call - off.per_call) / off.per_call:.1%}) | {ratio:.1%} "
            f"| {on.other_instructions / on.seconds:,.0f} |"
        )
    print()
    print(f"goal >= {GOAL:.0%} (off / on instructions, every transport): {'meets' if verdict else 'MISSES'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
