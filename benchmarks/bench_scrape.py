"""What one /metrics scrape costs the serving thread, in microseconds.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_scrape.py                 # 2000 scrapes per format
    .venv/bin/python benchmarks/bench_scrape.py --scrapes 10000 --calls 100000

A scrape runs on the event loop, so its time is time no call is served. This builds the metrics a served HTTP
server has (a `Server` and an `HttpTransport` on one `Runtime`), counts `--calls` calls into the latency histogram
the way the call path does, and times `RuntimeMetrics.scrape()` in the text format and in OpenMetrics: the whole
scrape, and the `bemcp_*` part alone (the rest is prometheus_client's process_* and python_* collectors, which read
/proc). The median and the 99th percentile of single scrapes are printed; the figure does not grow with `--calls`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import generate_latest

from bemcp.app import App
from bemcp.protocol.server import Server
from bemcp.runtime.runtime import Runtime
from bemcp.transports.http import HttpTransport

OPENMETRICS = "application/openmetrics-text"


def _time(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """Median and p99 of `n` single runs of `fn`, in microseconds."""
    for _ in range(min(n, 100)):  # warm-up
        fn()
    runs = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        runs.append((time.perf_counter_ns() - t0) / 1000)
    runs.sort()
    return statistics.median(runs), runs[min(len(runs) - 1, int(len(runs) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=10_000, help="calls counted into the histogram first")
    args = parser.parse_args()

    runtime = Runtime()
    HttpTransport(Server(App("bench-scrape"), runtime))  # registers what a served HTTP server has (bemcp_sessions)
    metrics = runtime.metrics
    lat = metrics.latency
    cells = lat.cells("tools/call")
    for i in range(args.calls):  # as the call path counts: one bucket cell and the sum
        duration = 0.00005 * (1 + i % 200)
        cells[0 if duration <= lat.first else bisect_left(lat.buckets, duration)] += 1
        cells[lat.sum_at] += duration

    body, _ = metrics.scrape("")
    print(f"{args.calls} calls counted; text body {len(body)} bytes, {len(body.splitlines())} lines")
    rows = [
        ("text 0.0.4, whole scrape", lambda: metrics.scrape("")),
        ("OpenMetrics, whole scrape", lambda: metrics.scrape(OPENMETRICS)),
        ("text 0.0.4, bemcp_* only", lambda: generate_latest(metrics.registry)),
    ]
    for name, fn in rows:
        median, p99 = _time(fn, args.scrapes)
        print(f"{name:28} median {median:7.1f} us   p99 {p99:7.1f} us")


if __name__ == "__main__":
    main()
