"""Background sampling of the target's health and of the load generator's own CPU.

Target side, in order of preference:

1. the target's Prometheus `/metrics` (BE-MCP's `bemcp_*` metrics, and the
   generic `process_*` ones any Prometheus client library exports);
2. psutil on the target's pid (RSS and CPU), used for whatever the metrics
   lack (a server without `process_cpu_seconds_total`) or alone when there are
   no metrics;
3. nothing, when neither is available (a remote server without /metrics).

Client side: psutil on this process and on any worker processes. A step is
client-bound when the busiest load-generator process used ≥ 90% of one core:
its measurements then say more about the tester than about the server.

`Sampler` owns one asyncio task, started by `start()` and stopped by `stop()`
(or `async with`); both also take a sample, so even a short run has a
baseline and a final reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import psutil

from bemcp.runtime.memory import MemoryLevel

CLIENT_BOUND_PERCENT: Final = 90.0
_MAX_METRICS_BYTES: Final = 4 * 1024 * 1024

# ---- Prometheus text format ----

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = re.compile(r"\\(.)")


def _unescape(value: str) -> str:
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


@dataclass(frozen=True, slots=True)
class MetricSample:
    name: str
    labels: dict[str, str]
    value: float


def parse_prometheus(text: str) -> list[MetricSample]:
    """The samples of a Prometheus text exposition (version 0.0.4); comments and malformed lines are skipped."""
    out: list[MetricSample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        name, labels_text, value_text = m.groups()
        try:
            value = float(value_text)  # float() reads "+Inf", "-Inf" and "NaN" as Prometheus writes them
        except ValueError:
            continue
        labels: dict[str, str] = {}
        if labels_text:
            labels = {k: _unescape(v) for k, v in _LABEL.findall(labels_text[1:-1])}
        out.append(MetricSample(name, labels, value))
    return out


# ---- samples ----


@dataclass(slots=True)
class TargetSample:
    """One reading of the target. Fields the source did not provide are None."""

    t: float  # seconds since the sampler's origin
    # "metrics" (psutil may have filled in what the metrics lack, like BE-MCP's CPU), "psutil",
    # or "none" (nothing to measure with: such samples are returned but not kept).
    source: str
    alive: bool | None  # None: cannot tell (no pid, and a scrape proves nothing about liveness)
    rss_bytes: int | None = None
    cpu_percent: float | None = None  # of one core
    in_flight: int | None = None
    queued: int | None = None
    concurrency_limit: int | None = None
    memory_level: int | None = None  # BE-MCP: 0 normal, 1 elevated, 2 high, 3 critical
    memory_usage_bytes: int | None = None
    memory_budget_bytes: int | None = None
    loop_lag_seconds: float | None = None
    rejected: dict[str, float] = field(default_factory=dict)  # bemcp_rejected_total by reason (cumulative)
    watchdog: dict[str, float] = field(default_factory=dict)  # bemcp_watchdog_events_total by kind (cumulative)
    completed: dict[str, float] = field(default_factory=dict)  # bemcp_calls_completed_total by outcome
    gauges: dict[str, float] = field(default_factory=dict)  # every other unlabelled bemcp_* / process_* value
    error: str | None = None  # why the scrape failed, when it did

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ClientSample:
    t: float
    cpu_percent: float  # the busiest load-generator process, in % of one core
    cpu_percent_total: float  # all load-generator processes together
    processes: int


@dataclass(frozen=True, slots=True)
class CpuMark:
    """Cumulative CPU seconds of each load-generator process at one moment."""

    at: float  # time.monotonic()
    cpu: dict[int, float]


@dataclass(frozen=True, slots=True)
class ClientCpu:
    percent: float  # the busiest process, in % of one core
    percent_total: float
    per_process: dict[int, float]

    @property
    def bound(self) -> bool:
        return self.percent >= CLIENT_BOUND_PERCENT


def _level_name(level: int) -> str:
    try:
        return MemoryLevel(level).name.lower()
    except ValueError:
        return str(level)


def _cpu_seconds(proc: psutil.Process) -> float | None:
    try:
        t = proc.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return float(t.user + t.system)


# Metric name -> TargetSample field, for the unlabelled gauges we know.
_FIELDS: Final = {
    "bemcp_rss_bytes": "rss_bytes",
    "bemcp_in_flight": "in_flight",
    "bemcp_queued": "queued",
    "bemcp_concurrency_limit": "concurrency_limit",
    "bemcp_memory_level": "memory_level",
    "bemcp_memory_usage_bytes": "memory_usage_bytes",
    "bemcp_memory_budget_bytes": "memory_budget_bytes",
    "bemcp_loop_lag_seconds": "loop_lag_seconds",
}
_INT_FIELDS: Final = frozenset(_FIELDS.values()) - {"loop_lag_seconds"}
# Labelled counters we keep per label: metric -> (label, TargetSample field).
_LABELLED: Final = {
    "bemcp_rejected_total": ("reason", "rejected"),
    "bemcp_watchdog_events_total": ("kind", "watchdog"),
    "bemcp_calls_completed_total": ("outcome", "completed"),
}


async def fetch_text(url: str, timeout: float) -> str:
    """GET `url` (plain http) and return the body; raises OSError/ValueError/TimeoutError on any failure.

    A few lines of HTTP/1.1 on asyncio streams rather than a thread running
    urllib: nothing to outlive `stop()`, and cancellation just closes the socket.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// metrics URLs are supported, got {url!r}")
    port = parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(parts.hostname, port)
        try:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = status_line.split(" ", 2)
            if len(status) < 2 or not status[1].isdigit():
                raise ValueError(f"bad HTTP status line {status_line!r}")
            if status[1] != "200":
                raise ValueError(f"HTTP {status[1]}")
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = await _read_chunked(reader)
            elif "content-length" in headers:
                length = int(headers["content-length"])
                if length > _MAX_METRICS_BYTES:
                    raise ValueError(f"metrics body too large ({length} bytes)")
                body = await reader.readexactly(length)
            else:
                body = await reader.read(_MAX_METRICS_BYTES)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return body.decode("utf-8", "replace")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    size_total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return b"".join(chunks)
        size_total += size
        if size_total > _MAX_METRICS_BYTES:
            raise ValueError("metrics body too large")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


class Sampler:
    """Samples the target and the load generator every `interval` seconds in an owned task.

    `metrics_url` (e.g. ``http://127.0.0.1:8000/metrics``) and `pid` are both
    optional. If the first scrape fails or the body holds no metric at all,
    `/metrics` is taken to be absent and not scraped again
    (`metrics_available` is False). `t0` (a `time.monotonic()` value) is the
    origin of sample times; pass the recorder's so the two line up.
    """

    def __init__(
        self,
        *,
        metrics_url: str | None = None,
        pid: int | None = None,
        client_pids: Iterable[int] = (),
        interval: float = 0.5,
        scrape_timeout: float = 1.0,
        t0: float | None = None,
    ) -> None:
        if not 0.05 <= interval <= 10.0:
            raise ValueError(f"interval must be in [0.05, 10] s, got {interval}")
        self.metrics_url = metrics_url
        self.metrics_available: bool | None = None if metrics_url else False  # None: not tried yet
        self.pid = pid
        self.interval = interval
        self.scrape_timeout = scrape_timeout
        self.t0 = time.monotonic() if t0 is None else t0
        self.target_samples: list[TargetSample] = []
        self.client_samples: list[ClientSample] = []
        self.errors: list[str] = []  # unexpected failures of the sampling task (it keeps going)
        self.scrape_failures = 0  # /metrics scrapes that failed (a slow or dying target, or no /metrics)
        self._target_proc: psutil.Process | None = None
        self._target_gone = False
        self._target_cpu_last: tuple[float, float] | None = None  # (monotonic, cpu seconds)
        self._process_cpu_last: tuple[float, float] | None = None  # the same from process_cpu_seconds_total
        self._clients: dict[int, psutil.Process] = {}
        self._client_last: CpuMark | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self.add_client_pid(os.getpid())
        for p in client_pids:
            self.add_client_pid(p)
        if pid is not None:
            try:
                self._target_proc = psutil.Process(pid)
            except psutil.Error:
                self._target_gone = True

    # ---- lifecycle ----

    async def start(self) -> None:
        """Take the baseline sample, then sample every `interval` until `stop()`."""
        if self._task is not None:
            raise RuntimeError("sampler already started")
        await self.sample()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stopping), name="bemcp-stress-sampler")

    async def stop(self) -> None:
        """Stop the task (waiting for it) and take a final sample. Safe to call twice."""
        task, self._task = self._task, None
        if task is None:
            return
        assert self._stopping is not None
        self._stopping.set()
        # On a timeout wait_for has already cancelled the task: a sample stuck past its own timeout is not worth more.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, self.scrape_timeout + self.interval + 1.0)
        await self.sample()

    async def __aenter__(self) -> Sampler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.interval
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), max(next_at - loop.time(), 0.0))
            if stopping.is_set():
                return
            # A fixed schedule, not "interval after the last sample": a slow scrape must not stretch the series.
            next_at = max(next_at + self.interval, loop.time())
            try:
                await self.sample()
            except Exception as exc:
                # A sampler bug must not take the run down with it: keep sampling, and say so in the report.
                self.errors.append(f"{type(exc).__name__}: {exc}")

    # ---- one sample ----

    async def sample(self) -> tuple[TargetSample, ClientSample]:
        """Take one target and one client sample now, and append them to the series.

        A target sample with nothing in it (source "none": no metrics, no
        pid) is returned but not kept.
        """
        target = await self._sample_target()
        client = self._sample_client()
        if target.source != "none":
            self.target_samples.append(target)
        self.client_samples.append(client)
        return target, client

    async def _sample_target(self) -> TargetSample:
        metrics: list[MetricSample] | None = None
        error: str | None = None
        if self.metrics_url and self.metrics_available is not False:
            try:
                metrics = parse_prometheus(await fetch_text(self.metrics_url, self.scrape_timeout))
                if not metrics:
                    raise ValueError("no metrics in the body")
            except (OSError, ValueError, EOFError, TimeoutError, asyncio.LimitOverrunError) as exc:
                metrics = None
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self.scrape_failures += 1
                if self.metrics_available is None:
                    self.metrics_available = False  # never answered: treat /metrics as absent
            else:
                self.metrics_available = True
        now = time.monotonic()
        sample = TargetSample(t=now - self.t0, source="none", alive=None, error=error)
        if metrics is not None:
            sample.source = "metrics"
            sample.alive = True
            self._apply_metrics(sample, metrics, now)
        if self._target_proc is not None:
            self._apply_psutil(sample, now)
        # Without a pid a failed scrape leaves `alive` unknown: under heavy load /metrics may just be slow.
        return sample

    def _apply_metrics(self, sample: TargetSample, metrics: list[MetricSample], now: float) -> None:
        for m in metrics:
            labelled = _LABELLED.get(m.name)
            if labelled is not None:
                label, attr = labelled
                getattr(sample, attr)[m.labels.get(label, "")] = m.value
            elif m.labels:
                continue
            elif m.name in _FIELDS:
                name = _FIELDS[m.name]
                if name not in _INT_FIELDS:
                    setattr(sample, name, m.value)
                elif math.isfinite(m.value):
                    setattr(sample, name, int(m.value))
            elif m.name.startswith(("bemcp_", "process_")):
                sample.gauges[m.name] = m.value
        generic_rss = sample.gauges.get("process_resident_memory_bytes")
        if sample.rss_bytes is None and generic_rss is not None and math.isfinite(generic_rss):
            sample.rss_bytes = int(generic_rss)
        cpu_total = sample.gauges.get("process_cpu_seconds_total")
        if cpu_total is not None:
            last, self._process_cpu_last = self._process_cpu_last, (now, cpu_total)
            if last is not None and now > last[0]:
                sample.cpu_percent = max(0.0, (cpu_total - last[1]) / (now - last[0]) * 100)

    def _apply_psutil(self, sample: TargetSample, now: float) -> None:
        proc = self._target_proc
        if sample.source == "none":
            sample.source = "psutil"
        if proc is None or self._target_gone:
            sample.alive = False
            return
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(proc.pid)
            rss = int(proc.memory_info().rss)
        except psutil.Error:
            self._target_gone = True  # a pid, once dead, may be reused: never look at it again
            sample.alive = False
            return
        sample.alive = True
        if sample.rss_bytes is None:
            sample.rss_bytes = rss
        cpu = _cpu_seconds(proc)
        if cpu is not None:
            last, self._target_cpu_last = self._target_cpu_last, (now, cpu)
            if sample.cpu_percent is None and last is not None and now > last[0]:
                sample.cpu_percent = max(0.0, (cpu - last[1]) / (now - last[0]) * 100)

    # ---- client CPU ----

    def add_client_pid(self, pid: int) -> None:
        """Also count a load-generator worker process."""
        if pid in self._clients:
            return
        with contextlib.suppress(psutil.Error):
            self._clients[pid] = psutil.Process(pid)

    def cpu_mark(self) -> CpuMark:
        """The load generator's CPU now; pass it to `cpu_since` at the end of a step."""
        cpu: dict[int, float] = {}
        for pid, proc in self._clients.items():
            seconds = _cpu_seconds(proc)
            if seconds is not None:
                cpu[pid] = seconds
        return CpuMark(time.monotonic(), cpu)

    def cpu_since(self, mark: CpuMark) -> ClientCpu:
        """The load generator's CPU use between `mark` and now (a worker started later counts from zero)."""
        return self.cpu_between(mark, self.cpu_mark())

    def _sample_client(self) -> ClientSample:
        mark = self.cpu_mark()
        last, self._client_last = self._client_last, mark
        if last is None:
            return ClientSample(mark.at - self.t0, 0.0, 0.0, len(mark.cpu))
        cpu = self.cpu_between(last, mark)
        return ClientSample(mark.at - self.t0, cpu.percent, cpu.percent_total, len(mark.cpu))

    @staticmethod
    def cpu_between(start: CpuMark, end: CpuMark) -> ClientCpu:
        elapsed = end.at - start.at
        per: dict[int, float] = {}
        if elapsed > 0:
            for pid, seconds in end.cpu.items():
                per[pid] = round(max(0.0, seconds - start.cpu.get(pid, 0.0)) / elapsed * 100, 1)
        return ClientCpu(max(per.values(), default=0.0), round(sum(per.values()), 1), per)

    # ---- summaries ----

    def protection_events(self) -> dict[str, Any]:
        """What the target's protections did while sampled, from its counters (report.json's protection_events).

        rejected and watchdog are last minus first reading (only what grew);
        memory_levels_seen names the levels in the order first seen. source is
        "metrics", or "none" without metrics (the runner may then fall back
        on the overload answers it saw).
        """
        with_metrics = [s for s in self.target_samples if s.source == "metrics"]
        levels = list(dict.fromkeys(_level_name(s.memory_level) for s in with_metrics if s.memory_level is not None))
        if not with_metrics:
            return {"source": "none", "rejected": {}, "watchdog": {}, "memory_levels_seen": levels}
        first, last = with_metrics[0], with_metrics[-1]

        def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, int]:
            return {k: int(b[k] - a.get(k, 0.0)) for k in sorted(b) if b[k] - a.get(k, 0.0) > 0}

        return {
            "source": "metrics",
            "rejected": delta(first.rejected, last.rejected),
            "watchdog": delta(first.watchdog, last.watchdog),
            "memory_levels_seen": levels,
        }

    def rss_slope(self, start: float | None = None, end: float | None = None) -> float | None:
        """Least-squares slope of target RSS in bytes/s over samples with start <= t <= end (None: too few)."""
        points = [
            (s.t, s.rss_bytes)
            for s in self.target_samples
            if s.rss_bytes is not None and (start is None or s.t >= start) and (end is None or s.t <= end)
        ]
        if len(points) < 3:
            return None
        n = len(points)
        mean_t = sum(t for t, _ in points) / n
        mean_r = sum(r for _, r in points) / n
        var = sum((t - mean_t) ** 2 for t, _ in points)
        if var <= 0:
            return None
        return sum((t - mean_t) * (r - mean_r) for t, r in points) / var

    def target_died(self) -> bool:
        """Whether a sample saw the target dead after it had been seen alive."""
        seen_alive = False
        for s in self.target_samples:
            if s.alive:
                seen_alive = True
            elif s.alive is False and seen_alive:
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics_url": self.metrics_url,
            "metrics_available": bool(self.metrics_available),
            "pid": self.pid,
            "interval_s": self.interval,
            "target_samples": [s.to_dict() for s in self.target_samples],
            "client_samples": [asdict(c) for c in self.client_samples],
            "protection_events": self.protection_events(),
            "scrape_failures": self.scrape_failures,
            "errors": list(self.errors),
        }
