"""The sampler: Prometheus parsing, a real BE-MCP server's /metrics, psutil on a child pid, the client's own CPU."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from bemcp.stress.sampler import (
    CLIENT_BOUND_PERCENT,
    Sampler,
    TargetSample,
    fetch_text,
    parse_prometheus,
)
from tests.procs import HttpServer, free_port, http_server, post_call, stop

pytestmark = pytest.mark.timeout(60)


# -- parsing -------------------------------------------------------------------------------------

EXPOSITION = """\
# HELP bemcp_in_flight Calls running now.
# TYPE bemcp_in_flight gauge
bemcp_in_flight 3
bemcp_rejected_total{reason="concurrency_limit"} 12
bemcp_rejected_total{reason="queue_timeout",extra="a \\"quoted\\" \\\\ value\\nline"} 0
bemcp_call_duration_seconds_bucket{method="tools/call",le="+Inf"} 40
process_cpu_seconds_total 1.5e1 1700000000000
process_resident_memory_bytes 123456789
weird_nan NaN
not a metric line at all
broken_value{a="b"} twelve
"""


def test_parse_prometheus_text() -> None:
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in parse_prometheus(EXPOSITION)}
    assert samples[("bemcp_in_flight", ())] == 3
    assert samples[("bemcp_rejected_total", (("reason", "concurrency_limit"),))] == 12
    quoted = (("extra", 'a "quoted" \\ value\nline'), ("reason", "queue_timeout"))
    assert samples[("bemcp_rejected_total", quoted)] == 0
    assert samples[("bemcp_call_duration_seconds_bucket", (("le", "+Inf"), ("method", "tools/call")))] == 40
    assert samples[("process_cpu_seconds_total", ())] == 15.0  # the timestamp is ignored
    assert math.isnan(samples[("weird_nan", ())])
    assert len(samples) == 7  # the two malformed lines are skipped


# -- a real BE-MCP server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    # One slot and no queue: a second concurrent call is refused, which /metrics must show.
    args = ("--stress-tools", "--max-concurrency", "1", "--queue-size", "0")
    with http_server(*args, tmp=tmp_path_factory.mktemp("sampler")) as s:
        yield s


async def test_samples_a_bemcp_server_through_metrics_and_psutil(server: HttpServer) -> None:
    sampler = Sampler(metrics_url=f"{server.base}/metrics", pid=server.proc.pid, interval=0.1)
    async with sampler:
        assert sampler.running
        statuses = await asyncio.gather(*(post_call(server.port, "sleep", {"seconds": 0.4}, i) for i in range(4)))
        await asyncio.sleep(0.2)
    assert not sampler.running
    assert sorted(statuses) == [200, 503, 503, 503]
    samples = sampler.target_samples
    assert len(samples) >= 6  # baseline, ~0.6 s at 0.1 s, final
    assert sampler.metrics_available is True
    assert all(s.alive and s.error is None for s in samples)
    assert all(s.source == "metrics" for s in samples)
    assert all(s.rss_bytes is not None and s.rss_bytes > 10e6 for s in samples)
    assert all(s.memory_budget_bytes is not None and s.memory_budget_bytes > 0 for s in samples)
    # CPU is a rate, from the second sample on (from process_cpu_seconds_total, or psutil without it).
    assert samples[0].cpu_percent is None and all(s.cpu_percent is not None for s in samples[1:])
    assert samples[0].concurrency_limit == 1
    assert max(s.in_flight or 0 for s in samples) == 1  # the one admitted sleep was seen running
    assert samples[0].memory_level == 0 and "uptime_seconds" not in samples[0].gauges
    assert "bemcp_uptime_seconds" in samples[0].gauges
    events = sampler.protection_events()
    assert events["rejected"] == {"concurrency_limit": 3}
    assert events["source"] == "metrics"
    assert events["watchdog"] == {} and events["memory_levels_seen"] == ["normal"]
    assert samples[-1].completed.get("ok", 0) - samples[0].completed.get("ok", 0) == 1
    assert not sampler.target_died()
    d = sampler.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert len(d["target_samples"]) == len(samples) and d["metrics_available"] is True


async def test_a_server_without_metrics_falls_back_to_psutil(server: HttpServer) -> None:
    sampler = Sampler(metrics_url=f"{server.base}/no-metrics-here", pid=server.proc.pid, interval=0.1)
    first, _ = await sampler.sample()
    assert sampler.metrics_available is False
    assert first.error is not None and "404" in first.error
    second, _ = await sampler.sample()
    assert second.error is None  # not scraped again
    assert second.source == "psutil" and second.alive is True
    assert second.rss_bytes is not None and second.rss_bytes > 10e6
    assert second.cpu_percent is not None and second.in_flight is None


# -- psutil on a child pid ---------------------------------------------------------------------------


@pytest.fixture
def busy_child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield proc
    finally:
        stop(proc, timeout=5)


async def test_psutil_sampling_of_a_child_and_its_death(busy_child: subprocess.Popen[bytes]) -> None:
    sampler = Sampler(pid=busy_child.pid, interval=0.1)
    await sampler.start()
    await asyncio.sleep(0.5)
    await sampler.stop()
    samples = list(sampler.target_samples)
    assert all(s.source == "psutil" and s.alive for s in samples)
    assert all(s.rss_bytes is not None and s.rss_bytes > 0 for s in samples)
    assert (samples[-1].rss_bytes or 0) > 1e6  # the first sample may catch the child before Python loaded
    busy = [s.cpu_percent for s in samples[1:] if s.cpu_percent is not None]
    assert busy and max(busy) > 10  # a busy loop: near 100% of a core, or its share of a loaded machine
    busy_child.kill()
    busy_child.wait()
    dead, _ = await sampler.sample()
    assert dead.alive is False and dead.rss_bytes is None and dead.source == "psutil"
    assert sampler.target_died()
    again, _ = await sampler.sample()  # a dead target is not an error for the sampler
    assert again.alive is False


async def test_no_source_at_all() -> None:
    sampler = Sampler()
    target, client = await sampler.sample()
    assert target.source == "none" and target.alive is None and target.rss_bytes is None
    assert sampler.metrics_available is False
    assert client.processes == 1
    assert sampler.target_samples == [] and len(sampler.client_samples) == 1  # an empty sample is not kept
    assert sampler.protection_events() == {"source": "none", "rejected": {}, "watchdog": {}, "memory_levels_seen": []}


async def test_unreachable_metrics_leave_liveness_unknown() -> None:
    sampler = Sampler(metrics_url=f"http://127.0.0.1:{free_port()}/metrics", scrape_timeout=0.5)
    target, _ = await sampler.sample()
    assert target.error is not None and target.alive is None
    assert sampler.metrics_available is False
    assert sampler.scrape_failures == 1 and sampler.target_samples == []
    assert not sampler.target_died()


# -- the load generator's CPU ---------------------------------------------------------------------------


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def own_cpu_percent(cpu_before: float, wall_before: float) -> float:
    """What the OS says this process used since then, in % of one core (the truth to compare with)."""
    return (time.process_time() - cpu_before) / (time.monotonic() - wall_before) * 100


# Assertions compare with the OS's own accounting rather than with absolute numbers: on a loaded
# machine a busy loop gets only a share of a core, and the sampler must report that share.
# Percentage points: psutil reads clock ticks (10 ms at each end of a ~0.4-0.8 s window), and on a loaded
# machine the two clocks are not read at quite the same instant.
TOLERANCE = 15.0


async def test_client_cpu_of_this_process_and_a_worker(busy_child: subprocess.Popen[bytes]) -> None:
    sampler = Sampler()
    idle_then_busy: list[Callable[[], None]] = [lambda: None, lambda: spin(0.4)]
    for work in idle_then_busy:
        cpu0, wall0 = time.process_time(), time.monotonic()
        mark = sampler.cpu_mark()
        work()
        await asyncio.sleep(0.4)
        measured = sampler.cpu_since(mark)
        truth = own_cpu_percent(cpu0, wall0)
        assert measured.percent == pytest.approx(truth, abs=TOLERANCE), (measured, truth)
        assert measured.bound == (measured.percent >= CLIENT_BOUND_PERCENT)

    sampler.add_client_pid(busy_child.pid)
    mark = sampler.cpu_mark()
    await asyncio.sleep(0.4)
    both = sampler.cpu_since(mark)
    assert set(both.per_process) == {busy_child.pid, *mark.cpu} and len(both.per_process) == 2
    assert both.per_process[busy_child.pid] > 10  # busy, if sharing the machine
    assert both.percent == max(both.per_process.values())
    assert both.percent_total >= both.percent


async def test_client_samples_add_up_to_the_cpu_used() -> None:
    sampler = Sampler(interval=0.1)
    cpu0 = time.process_time()
    async with sampler:
        spin(0.25)
        await asyncio.sleep(0.15)
    used = time.process_time() - cpu0
    samples = sampler.client_samples
    assert len(samples) >= 3 and sampler.target_samples == []  # no target: only the client is sampled
    assert samples[0].cpu_percent == 0.0  # no earlier reading to compare with
    integral = sum(c.cpu_percent / 100 * (c.t - prev.t) for prev, c in itertools.pairwise(samples))
    assert integral == pytest.approx(used, abs=0.05)


# -- lifecycle and summaries -------------------------------------------------------------------------


async def test_lifecycle() -> None:
    sampler = Sampler(interval=0.05)
    await sampler.start()
    with pytest.raises(RuntimeError):
        await sampler.start()
    await asyncio.sleep(0.3)
    await sampler.stop()
    n = len(sampler.client_samples)
    assert 4 <= n <= 10  # baseline + about 6 on schedule + final
    ts = [s.t for s in sampler.client_samples]
    assert ts == sorted(ts)
    await sampler.stop()  # a second stop is harmless and takes no sample
    assert len(sampler.client_samples) == n
    with pytest.raises(ValueError):
        Sampler(interval=0.0)


def synthetic(t: float, rss: int, level: int = 0, rejected: float = 0, stalls: float = 0) -> TargetSample:
    return TargetSample(
        t=t,
        source="metrics",
        alive=True,
        rss_bytes=rss,
        memory_level=level,
        rejected={"concurrency_limit": rejected, "draining": 0.0},
        watchdog={"loop_stall": stalls} if stalls else {},
    )


def test_rss_slope_protection_events_and_death() -> None:
    sampler = Sampler(t0=0.0)
    assert sampler.rss_slope() is None
    sampler.target_samples += [
        synthetic(float(t), 50_000_000 + 1000 * t, level=t % 3, rejected=2 * t) for t in range(10)
    ]
    sampler.target_samples.append(synthetic(10.0, 50_010_000, level=1, rejected=25, stalls=2))
    assert sampler.rss_slope() == pytest.approx(1000.0)
    assert sampler.rss_slope(start=5.0, end=8.0) == pytest.approx(1000.0)
    assert sampler.rss_slope(start=9.5) is None  # too few points
    events = sampler.protection_events()
    assert events == {
        "source": "metrics",
        "rejected": {"concurrency_limit": 25},
        "watchdog": {"loop_stall": 2},
        "memory_levels_seen": ["normal", "elevated", "high"],
    }
    assert not sampler.target_died()
    sampler.target_samples.append(TargetSample(t=11.0, source="psutil", alive=False))
    assert sampler.target_died()


# -- the tiny HTTP client -------------------------------------------------------------------------------


@pytest.fixture
async def chunked_server() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if request.startswith(b"GET /missing"):
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b"bemcp_in_flight 2\n", b"bemcp_queued 5\n"):
                writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


async def test_fetch_text_reads_chunked_bodies_and_refuses_errors(chunked_server: int) -> None:
    text = await fetch_text(f"http://127.0.0.1:{chunked_server}/metrics", 2.0)
    assert text == "bemcp_in_flight 2\nbemcp_queued 5\n"
    with pytest.raises(ValueError, match="404"):
        await fetch_text(f"http://127.0.0.1:{chunked_server}/missing", 2.0)
    with pytest.raises(ValueError):
        await fetch_text("https://example.invalid/metrics", 2.0)
    sampler = Sampler(metrics_url=f"http://127.0.0.1:{chunked_server}/metrics")
    sample, _ = await sampler.sample()
    assert sample.in_flight == 2 and sample.queued == 5 and sample.source == "metrics"
