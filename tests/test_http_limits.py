"""HTTP limits through a real `bemcp serve`: header size, header and body timeouts, the connection cap and the
per-client session cap, each driven over raw sockets (the client must control every byte and every wait).

Waits are event-driven: read until the server answers or closes, with a deadline far above the limit under test.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import orjson
import psutil
import pytest

from bemcp.transports.sessions import client_key
from tests.procs import HttpServer, http_server

DEMO = "tests.apps.demo:app"
LEGACY = "2025-11-25"
DEADLINE = 20.0  # far above every limit these tests set


def _head(port: int, extra: str = "") -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()


async def _read_all(reader: asyncio.StreamReader, deadline: float = DEADLINE) -> bytes:
    """Everything until the server closes; fails if it keeps the connection open past `deadline`."""
    return await asyncio.wait_for(reader.read(), deadline)


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _metric(server: HttpServer, name: str, labels: str = "") -> float:
    text = httpx.get(f"{server.base}/metrics", timeout=10).text
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert m is not None, f"{name}{labels} not in /metrics"
    return float(m.group(1))


async def _healthz(server: HttpServer) -> int:
    async with httpx.AsyncClient(timeout=10) as c:
        return (await c.get(f"{server.base}/healthz")).status_code


def _wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# -- header size -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_heads() -> Iterator[HttpServer]:
    with http_server("--max-header-bytes", "8192", app=DEMO) as s:
        yield s


async def test_a_huge_header_gets_431_and_is_never_buffered(small_heads: HttpServer) -> None:
    proc = psutil.Process(small_heads.proc.pid)
    rss_before = proc.memory_info().rss
    reader, writer = await asyncio.open_connection("127.0.0.1", small_heads.port)
    chunk = b"a" * (64 * 1024)
    total = 64 * 1024 * 1024

    async def send() -> int:
        sent = 0
        writer.write(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        try:
            while sent < total:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        except (ConnectionError, OSError):
            pass  # the server closed: expected once it has answered
        return sent

    sender = asyncio.create_task(send())
    raw = await _read_all(reader)
    await asyncio.wait_for(sender, DEADLINE)
    writer.close()
    status, headers, body = _parse(raw)
    assert status == 431
    assert headers["connection"] == "close"
    err = orjson.loads(body)["error"]
    assert err["code"] == -32600
    assert "exceed 8192 bytes" in err["message"] and "--max-header-bytes" in err["message"]
    # The server kept none of it: a buffered header would have grown it by the 64 MiB sent.
    assert proc.memory_info().rss - rss_before < 32 * 1024 * 1024
    assert _metric(small_heads, "bemcp_http_refused_total", '{reason="header_too_large"}') >= 1
    assert await _healthz(small_heads) == 200


async def test_many_small_headers_count_together(small_heads: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", small_heads.port)
    many = "".join(f"X-H{i}: {'v' * 90}\r\n" for i in range(200))  # 20 KB in 200 headers of 100 bytes
    writer.write(_head(small_heads.port, many))
    raw = await _read_all(reader)
    writer.close()
    assert _parse(raw)[0] == 431


async def test_a_head_under_the_cap_is_served(small_heads: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", small_heads.port)
    writer.write(_head(small_heads.port, f"X-Fits: {'a' * 7000}\r\nConnection: close\r\n"))
    raw = await _read_all(reader)
    writer.close()
    status, _, body = _parse(raw)
    assert (status, orjson.loads(body)) == (200, {"status": "ok"})


async def test_a_head_split_over_many_reads_is_counted_whole(small_heads: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", small_heads.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    await writer.drain()
    answered = asyncio.create_task(_read_all(reader))
    for _ in range(20):  # 20 writes of 1 KiB: no single read is over the cap, the head is
        if answered.done():
            break
        writer.write(b"b" * 1024)
        await writer.drain()
        await asyncio.sleep(0.01)
    raw = await answered
    writer.close()
    assert _parse(raw)[0] == 431


async def test_a_pipelined_head_is_held_to_the_cap(small_heads: HttpServer) -> None:
    """A head that begins in the read that ended the request before it is still held to the cap, and the
    request before it keeps its answer. (The server reads both from one write of the client's.)"""
    first = _head(small_heads.port)
    second = _head(small_heads.port, f"X-Pad: {'q' * 9000}\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", small_heads.port)
    writer.write(first + second)
    raw = await _read_all(reader)
    writer.close()
    status, headers, rest = _parse(raw)
    assert status == 200
    answer, more = rest[: int(headers["content-length"])], rest[int(headers["content-length"]) :]
    assert orjson.loads(answer) == {"status": "ok"}
    assert _parse(more)[0] == 431


# -- header and body timeouts ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_timeouts() -> Iterator[HttpServer]:
    with http_server("--header-timeout", "1", "--body-timeout", "1", app=DEMO) as s:
        yield s


async def _trickle(writer: asyncio.StreamWriter, until: asyncio.Task[bytes], byte: bytes = b"x") -> None:
    """Send one byte every 0.1 s until the server answers: a connection that is never idle."""
    while not until.done():
        try:
            writer.write(byte)
            await writer.drain()
        except (ConnectionError, OSError):
            return
        await asyncio.wait({until}, timeout=0.1)


async def test_trickled_headers_get_408(quick_timeouts: HttpServer) -> None:
    conns = [await asyncio.open_connection("127.0.0.1", quick_timeouts.port) for _ in range(50)]
    answers = []
    for reader, writer in conns:
        writer.write(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trickle: ")
        answers.append(asyncio.create_task(_read_all(reader)))
    trickles = [asyncio.create_task(_trickle(w, a)) for (_, w), a in zip(conns, answers, strict=True)]
    raws = await asyncio.gather(*answers)
    await asyncio.gather(*trickles)
    for _, writer in conns:
        writer.close()
    for raw in raws:
        status, headers, body = _parse(raw)
        assert status == 408 and headers["connection"] == "close"
        assert "did not arrive within 1 s (--header-timeout)" in orjson.loads(body)["error"]["message"]
    assert _metric(quick_timeouts, "bemcp_http_refused_total", '{reason="header_timeout"}') >= 50


async def test_a_connection_that_sends_nothing_is_closed(quick_timeouts: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", quick_timeouts.port)
    assert await _read_all(reader) == b""  # closed, with nothing to answer
    writer.close()


async def test_a_trickled_body_gets_408_and_never_reaches_the_tool(quick_timeouts: HttpServer) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    reader, writer = await asyncio.open_connection("127.0.0.1", quick_timeouts.port)
    writer.write(
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body) + 1000}\r\n\r\n".encode()
        + body
    )
    answer = asyncio.create_task(_read_all(reader))
    await _trickle(writer, answer, b" ")
    raw = await answer
    writer.close()
    status, _, payload = _parse(raw)
    assert status == 408
    assert "body did not arrive within 1 s (--body-timeout)" in orjson.loads(payload)["error"]["message"]
    assert _metric(quick_timeouts, "bemcp_http_refused_total", '{reason="body_timeout"}') >= 1
    assert await _healthz(quick_timeouts) == 200


async def test_a_slow_but_whole_request_is_served(quick_timeouts: HttpServer) -> None:
    """Headers and body in several reads, each inside its limit: served as usual."""
    reader, writer = await asyncio.open_connection("127.0.0.1", quick_timeouts.port)
    for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"Connection: close\r\n", b"\r\n"):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.05)
    raw = await _read_all(reader)
    writer.close()
    assert _parse(raw)[0] == 200


# -- the connection cap -------------------------------------------------------------------------------------------


@pytest.fixture
async def capped() -> AsyncIterator[HttpServer]:
    with http_server("--max-connections", "4", app=DEMO) as s:
        yield s


def _init_session(base: str) -> str:
    r = httpx.post(
        f"{base}/mcp",
        content=orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
            }
        ),
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.headers["mcp-session-id"]


async def _open_stream(port: int, sid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A GET stream that holds its connection; retried while a just-closed connection is still counted."""
    end = time.monotonic() + DEADLINE
    while True:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nMcp-Session-Id: {sid}\r\n"
            f"MCP-Protocol-Version: {LEGACY}\r\n\r\n".encode()
        )
        status = await asyncio.wait_for(reader.readline(), DEADLINE)
        if b" 200 " in status:
            await asyncio.wait_for(reader.readuntil(b": stream open\n\n"), DEADLINE)
            return reader, writer
        writer.close()
        assert b" 503 " in status and time.monotonic() < end, status
        await asyncio.sleep(0.05)


async def test_past_the_connection_cap_a_connection_gets_503(capped: HttpServer) -> None:
    sids = [_init_session(capped.base) for _ in range(4)]
    streams = [await _open_stream(capped.port, sid) for sid in sids]  # 4 connections held open
    reader, writer = await asyncio.open_connection("127.0.0.1", capped.port)
    writer.write(_head(capped.port))
    raw = await _read_all(reader)
    writer.close()
    status, headers, body = _parse(raw)
    assert status == 503
    assert headers["retry-after"] == "1" and headers["connection"] == "close"
    err = orjson.loads(body)["error"]
    assert err["code"] == -32050
    assert err["data"]["reason"] == "connection_limit" and err["data"]["limit"] == 4
    # A slot frees when a connection ends.
    streams[0][1].close()

    def served() -> bool:
        try:
            return httpx.get(f"{capped.base}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    await asyncio.to_thread(_wait_for, served, DEADLINE, "a freed connection slot")
    for _, w in streams[1:]:
        w.close()
    assert _metric(capped, "bemcp_http_refused_total", '{reason="connection_limit"}') >= 1


# -- sessions per client ---------------------------------------------------------------------------------------


def _initialize(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post(
        url,
        content=orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
            }
        ),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **(headers or {}),
        },
    )


def _from(address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z is loopback on Linux)."""
    return httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address=address))


def test_one_client_cannot_take_every_session() -> None:
    with http_server("--max-sessions-per-client", "2", "--max-sessions", "100", app=DEMO) as s:
        with _from("127.0.0.1") as a, _from("127.0.0.2") as b:
            first = _initialize(a, s.url).headers["mcp-session-id"]
            assert _initialize(a, s.url).status_code == 200
            r = _initialize(a, s.url)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "mcp-session-id" not in r.headers
            err = r.json()["error"]
            assert err["code"] == -32050
            assert err["data"] == {"reason": "client_session_limit", "retry_after_ms": 1000, "limit": 2}
            assert "127.0.0.1" in err["message"] and "--max-sessions-per-client" in err["message"]
            # Another client is still served.
            assert _initialize(b, s.url).status_code == 200
            # Ending a session gives its client the slot back.
            assert a.delete(s.url, headers={"Mcp-Session-Id": first}).status_code == 200
            assert _initialize(a, s.url).status_code == 200
            assert _initialize(a, s.url).status_code == 503
        assert _metric(s, "bemcp_sessions_refused_total", '{reason="client_session_limit"}') == 2


def test_a_trusted_proxy_names_the_client() -> None:
    """Behind a proxy, the client is whom X-Forwarded-For names, if the proxy is in --forwarded-allow-ips."""
    with http_server("--max-sessions-per-client", "1", app=DEMO) as s, _from("127.0.0.1") as proxy:
        assert _initialize(proxy, s.url, {"X-Forwarded-For": "198.51.100.7"}).status_code == 200
        assert _initialize(proxy, s.url, {"X-Forwarded-For": "198.51.100.8"}).status_code == 200
        r = _initialize(proxy, s.url, {"X-Forwarded-For": "198.51.100.7"})
        assert r.status_code == 503 and "198.51.100.7" in r.json()["error"]["message"]
    # Not a trusted proxy: its header is ignored, and every request is the connecting address's.
    untrusted = ("--max-sessions-per-client", "1", "--forwarded-allow-ips", "192.0.2.1")
    with http_server(*untrusted, app=DEMO) as s, _from("127.0.0.1") as proxy:
        assert _initialize(proxy, s.url, {"X-Forwarded-For": "198.51.100.7"}).status_code == 200
        r = _initialize(proxy, s.url, {"X-Forwarded-For": "198.51.100.8"})
        assert r.status_code == 503 and "127.0.0.1" in r.json()["error"]["message"]


def test_client_key_groups_an_ipv6_host_by_its_64() -> None:
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::5") != client_key("2001:db8:1:2::5")
    assert client_key("::ffff:192.0.2.4") == client_key("192.0.2.4") == "192.0.2.4"
    assert client_key(None) == client_key("") == ""
    assert client_key("not-an-address") == "not-an-address"
