"""A realistic synthetic `bemcp stress` report, generated from a small model of a server (not copied from a run).

The model: a server with a service capacity (calls/s) and a base latency. In the closed model N callers see a mean
latency W = max(base, N / capacity) and a throughput N / W (so Little's law holds by construction); the tail grows
with N. Every count is then spread over 1-s buckets with exact integer totals, and the target's RSS follows the
avalanche's allocations. `slow` scales the server down (capacity / slow, latency * slow) for the compare tests.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("ok", "tool_error", "overload", "protocol_error", "timeout", "transport_error")
MIB = 1024 * 1024


@dataclass
class _Step:
    data: dict[str, Any]
    start: float
    end: float
    in_flight: float


@dataclass
class _Builder:
    capacity: float
    base_s: float
    steps: list[tuple[str, _Step]] = field(default_factory=list)


def _latency(mean_ms: float, tail: float) -> dict[str, float]:
    p99 = mean_ms * max(2.0, tail)
    return {
        "p50": round(mean_ms * 0.85, 3),
        "p90": round(mean_ms * 1.6, 3),
        "p99": round(p99, 3),
        "p999": round(p99 * 1.4, 3),
        "max": round(p99 * 2.0, 3),
        "mean": round(mean_ms, 3),
    }


def _outcomes(calls: int, **shares: float) -> dict[str, int]:
    out = {o: 0 for o in OUTCOMES}
    for name, share in shares.items():
        out[name] = int(calls * share)
    out["ok"] = calls - sum(out.values())
    return out


def _step(
    level: float,
    model: str,
    duration: float,
    outcomes: dict[str, int],
    lat: dict[str, float],
    *,
    concurrency: int | None,
    offered: float | None,
    cpu: float,
    kinds: dict[str, Any] | None = None,
    details: dict[str, int] | None = None,
) -> dict[str, Any]:
    calls = sum(outcomes.values())
    step: dict[str, Any] = {
        "level": level,
        "model": model,
        "concurrency": concurrency,
        "offered_rate": offered,
        "duration_s": round(duration, 6),
        "calls": calls,
        "outcomes": outcomes,
        "throughput": outcomes["ok"] / duration,
        "achieved_rate": calls / duration,
        "latency_ms": lat,
        "client_cpu_percent": cpu,
        "client_bound": cpu >= 90,
    }
    step["kinds"] = kinds or {"echo": {"calls": calls, "outcomes": dict(outcomes), "latency_ms": dict(lat)}}
    if details:
        step["details"] = details
    return step


def _tsunami(b: _Builder, t0: float) -> tuple[dict[str, Any], float]:
    t = t0
    steps = []
    for n in (4, 8, 16, 32, 64, 48, 56):
        w = max(b.base_s, n / b.capacity)
        duration = 3.0
        calls = round(n / w * duration)
        shares = {"overload": 0.02, "timeout": 0.005} if n == 64 else {}
        st = _step(
            n,
            "closed",
            duration,
            _outcomes(calls, **shares),
            _latency(w * 1000, 1 + n / 16),
            concurrency=n,
            offered=None,
            cpu=round(18 + n * 1.2, 1),
            details={"overload:concurrency_limit": int(calls * 0.02)} if n == 64 else None,
        )
        b.steps.append(("tsunami", _Step(st, t, t + duration, n)))
        steps.append(st)
        t += duration
    slo = 100.0
    good = [s["level"] for s in steps if s["latency_ms"]["p99"] <= slo]
    bad = [s["level"] for s in steps if s["latency_ms"]["p99"] > slo]
    phase = {
        "status": "completed",
        "level_unit": "concurrency",
        "steps": steps,
        "results": {
            "max_sustainable_concurrency": max(good) if good else None,
            "first_bad_concurrency": min(bad) if bad else None,
            "stop_reason": "resolution reached",
        },
    }
    return phase, t - t0 + 0.4


def _avalanche(b: _Builder, t0: float) -> tuple[dict[str, Any], float]:
    t = t0 + 0.5
    steps = []
    for mb in (64, 128, 256, 512, 1024):
        refused = mb > 800
        duration = 0.02 if refused else 1.0 + mb / 2000
        lat = {k: round(duration * 1000, 3) for k in ("p50", "p90", "p99", "p999", "max", "mean")}
        outcomes = _outcomes(1, overload=1.0) if refused else _outcomes(1)
        kinds = {"allocate_memory": {"calls": 1, "outcomes": dict(outcomes), "latency_ms": dict(lat)}}
        st = _step(
            mb,
            "closed",
            duration,
            outcomes,
            lat,
            concurrency=1,
            offered=None,
            cpu=3.0,
            kinds=kinds,
            details={"overload:memory_pressure": 1} if refused else None,
        )
        b.steps.append(("avalanche", _Step(st, t, t + duration, 1)))
        steps.append(st)
        t += duration + 0.3
    phase = {
        "status": "completed",
        "level_unit": "MB",
        "steps": steps,
        "results": {
            "largest_accepted_mb": 512,
            "rejected_above_mb": 1024,
            "rss_before_bytes": 96 * MIB,
            "rss_peak_bytes": (96 + 512) * MIB,
            "rss_after_bytes": 101 * MIB,
            "alive_after": True,
        },
    }
    return phase, t - t0 + 1.5


def _chaos(b: _Builder, t0: float) -> tuple[dict[str, Any], float]:
    n = 8
    mix = {  # kind: (calls, mean latency ms, outcome shares)
        "echo": (900, b.base_s * 1000, {}),
        "cpu_burn": (300, 40.0 * b.base_s / 0.008, {}),
        "sleep": (200, 120.0, {}),
        "fail": (100, b.base_s * 1000, {"tool_error": 1.0}),
        "chaos:malformed": (60, 1.0, {"protocol_error": 1.0}),
        "chaos:oversized": (40, 3.0, {"protocol_error": 1.0}),
        "chaos:disconnect": (30, 50.0, {"transport_error": 1.0}),
        "chaos:hang-cancel": (20, 500.0, {"timeout": 1.0}),
    }
    kinds = {}
    total_ms = 0.0
    for kind, (calls, mean, shares) in mix.items():
        kinds[kind] = {"calls": calls, "outcomes": _outcomes(calls, **shares), "latency_ms": _latency(mean, 3)}
        total_ms += calls * mean
    calls = sum(k["calls"] for k in kinds.values())
    outcomes = {o: sum(k["outcomes"][o] for k in kinds.values()) for o in OUTCOMES}
    mean = total_ms / calls
    duration = calls * mean / 1000 / n
    lat = {
        "p50": round(b.base_s * 1000, 3),
        "p90": 130.0,
        "p99": 520.0,
        "p999": 1400.0,
        "max": 1500.0,
        "mean": round(mean, 3),
    }
    st = _step(n, "closed", duration, outcomes, lat, concurrency=n, offered=None, cpu=35.0, kinds=kinds)
    b.steps.append(("chaos", _Step(st, t0 + 0.2, t0 + 0.2 + duration, n)))
    ops = {k: v["calls"] for k, v in kinds.items()}
    phase = {
        "status": "completed",
        "level_unit": "concurrency",
        "steps": [st],
        "results": {"survived": True, "answered_all": True, "unanswered": 0, "operations": ops},
    }
    return phase, duration + 0.6


def _rate(b: _Builder, t0: float) -> tuple[dict[str, Any], float]:
    t = t0
    steps = []
    for offered in (250.0, 500.0, 1000.0, 2000.0, 4000.0):
        duration = 3.0
        calls = round(offered * duration)
        util = offered / (b.capacity * 1.2)
        if util < 1:
            outcomes = _outcomes(calls)
            w = b.base_s / (1 - min(util, 0.95))
            lat = _latency(w * 1000, 2 + 2 * util)
        else:
            outcomes = _outcomes(calls, overload=1 - 1 / util)
            lat = _latency(80.0 * util, 4)
        st = _step(
            offered,
            "open",
            duration,
            outcomes,
            lat,
            concurrency=None,
            offered=offered,
            cpu=round(10 + offered / 80, 1),
            details={"overload:concurrency_limit": outcomes["overload"]} if outcomes["overload"] else None,
        )
        b.steps.append(("rate", _Step(st, t, t + duration, offered * lat["mean"] / 1000)))
        steps.append(st)
        t += duration
    # Saturated: the ok rate fell short of the offered rate, or p99 passed the SLO (100 ms).
    saturated = [s["level"] for s in steps if s["throughput"] < 0.95 * s["level"] or s["latency_ms"]["p99"] > 100]
    sat = min(saturated, default=None)
    good = [s["level"] for s in steps if sat is None or s["level"] < sat]
    phase = {
        "status": "completed",
        "level_unit": "calls/s",
        "steps": steps,
        "results": {"saturation_rate": sat, "max_good_rate": max(good, default=None)},
    }
    return phase, t - t0 + 0.3


def _soak(b: _Builder, t0: float) -> tuple[dict[str, Any], float]:
    n, duration = 16, 20.0
    w = max(b.base_s, n / b.capacity)
    calls = round(n / w * duration)
    st = _step(n, "closed", duration, _outcomes(calls), _latency(w * 1000, 2.5), concurrency=n, offered=None, cpu=40.0)
    b.steps.append(("soak", _Step(st, t0, t0 + duration, n)))
    phase = {
        "status": "completed",
        "level_unit": "concurrency",
        "steps": [st],
        "results": {"rss_slope_bytes_per_s": 1800.0, "leak_verdict": "no_leak", "rss_samples": 20},
    }
    return phase, duration + 0.2


def _spread(total: int, spans: list[tuple[int, float]]) -> dict[int, int]:
    """Split an integer over buckets in proportion to overlap, keeping the exact total (largest remainder)."""
    weight = sum(w for _, w in spans)
    if not total or weight <= 0:
        return {}
    raw = [(i, total * w / weight) for i, w in spans]
    out = {i: math.floor(v) for i, v in raw}
    left = total - sum(out.values())
    for i, _ in sorted(raw, key=lambda iv: iv[1] - math.floor(iv[1]), reverse=True)[:left]:
        out[i] += 1
    return out


def _timeseries(b: _Builder, run_s: float) -> list[dict[str, Any]]:
    nb = math.ceil(run_s)
    buckets: list[dict[str, Any]] = [
        {
            "t": float(i),
            "phase": None,
            "offered": 0,
            "achieved": 0,
            "errors": {o: 0 for o in OUTCOMES[1:]},
            "in_flight": 0.0,
            "p50_ms": None,
            "p99_ms": None,
        }
        for i in range(nb)
    ]
    best: dict[int, float] = {}
    for phase, s in b.steps:
        spans = [(i, min(i + 1, s.end) - max(i, s.start)) for i in range(int(s.start), min(nb, math.ceil(s.end)))]
        spans = [(i, w) for i, w in spans if w > 0]
        for i, n in _spread(s.data["calls"], spans).items():
            buckets[i]["offered"] += n
        for i, n in _spread(s.data["outcomes"]["ok"], spans).items():
            buckets[i]["achieved"] += n
        for o in OUTCOMES[1:]:
            for i, n in _spread(s.data["outcomes"][o], spans).items():
                buckets[i]["errors"][o] += n
        for i, w in spans:
            buckets[i]["in_flight"] = round(buckets[i]["in_flight"] + s.in_flight * w, 3)
            if w > best.get(i, 0):
                best[i] = w
                buckets[i]["phase"] = phase
                buckets[i]["p50_ms"] = s.data["latency_ms"]["p50"]
                buckets[i]["p99_ms"] = s.data["latency_ms"]["p99"]
    return buckets


def _samples(b: _Builder, phases: dict[str, Any], run_s: float) -> list[dict[str, Any]]:
    samples = []
    soak = phases["soak"]
    for i in range(int(run_s) + 1):
        t = float(i)
        rss = 96 * MIB + (i % 3) * 256 * 1024
        level = 0
        for phase, s in b.steps:
            if phase == "avalanche" and s.start <= t + 0.5 <= s.end + 0.3 and s.data["outcomes"]["ok"]:
                rss += int(s.data["level"]) * MIB
                level = 2 if s.data["level"] >= 512 else 1 if s.data["level"] >= 256 else 0
        if t > phases["avalanche"]["offset_s"] + phases["avalanche"]["duration_s"]:
            rss += 5 * MIB
        if t >= soak["offset_s"]:
            rss += int(1800 * (t - soak["offset_s"]))
        busy = sum(s.data["throughput"] for _, s in b.steps if s.start <= t < s.end)
        samples.append(
            {
                "t": t,
                "source": "metrics",
                "rss_bytes": rss,
                "cpu_percent": round(min(busy / 25, 98), 1),
                "in_flight": 0.0,
                "queued": 0.0,
                "memory_level": level,
                "loop_lag_ms": 0.4,
            }
        )
    return samples


def _load(phases: dict[str, Any]) -> dict[str, Any]:
    """The `load` section the runner writes, from the steps' kinds: echo carried the load phases."""
    counts: dict[str, int] = {}
    for phase in phases.values():
        for st in phase["steps"]:
            for kind, stats in st["kinds"].items():
                if not kind.startswith("chaos:"):
                    counts[kind] = counts.get(kind, 0) + stats["calls"]
    total = sum(counts.values())
    return {
        "source": "ranked",
        "note": "echo, the cheapest-looking of the target's 8 callable tools (--tool picks others, or a mix)",
        "hint": None,
        "mix": [{"name": "echo", "kind": "tool", "weight": 1.0, "share": 1.0, "arguments": "generated"}],
        "tool_calls": total,
        "tools": [
            {"name": k, "calls": n, "share": n / total} for k, n in sorted(counts.items(), key=lambda kv: -kv[1])
        ],
        "method_calls": 0,
        "methods": [],
    }


def make_report(*, slow: float = 1.0, seed: int = 7) -> dict[str, Any]:
    """A report as the runner hands it over: everything but summary, consistency and verdict."""
    b = _Builder(capacity=2000.0 / slow, base_s=0.008 * slow)
    phases: dict[str, Any] = {}
    t = 1.2  # discovery and revision detection come first
    for name, make in (
        ("tsunami", _tsunami),
        ("avalanche", _avalanche),
        ("chaos", _chaos),
        ("rate", _rate),
        ("soak", _soak),
    ):
        phase, duration = make(b, t)
        phase["offset_s"] = round(t, 3)
        phase["duration_s"] = round(duration, 3)
        phase["started_at"] = (
            f"2026-03-01T12:00:{int(t):02d}.000+00:00" if t < 60 else f"2026-03-01T12:01:{int(t) - 60:02d}.000+00:00"
        )
        phases[name] = {
            k: phase[k] for k in ("status", "started_at", "offset_s", "duration_s", "level_unit", "steps", "results")
        }
        t += duration + 0.5
    run_s = round(t + 0.5, 3)
    end_min, end_s = divmod(run_s, 60)
    first_bad = phases["tsunami"]["results"]["first_bad_concurrency"]
    return {
        "schema_version": 1,
        "tool": {"name": "bemcp stress", "version": "0.1.0"},
        "run": {
            "id": f"20260301T120000Z-{seed}",
            "started_at": "2026-03-01T12:00:00+00:00",
            "finished_at": f"2026-03-01T12:{int(end_min):02d}:{end_s:06.3f}+00:00",
            "duration_s": run_s,
            "seed": seed,
            "profile": "quick",
            "phases": list(phases),
            "command": "bemcp stress --profile quick",
            "workers": 1,
            "timeseries_interval_s": 1.0,
        },
        "target": {
            "spec": "embedded",
            "kind": "embedded",
            "revision": "2026-07-28",
            "server_info": {"name": "bemcp", "version": "0.1.0"},
            "pid": 4242,
            "tools_discovered": [
                "echo",
                "sleep",
                "cpu_burn",
                "allocate_memory",
                "io_write",
                "fail",
                "hang",
                "recursive_fanout",
                "block_event_loop",
                "server_health",
            ],
            "tools_used": ["echo", "sleep", "cpu_burn", "allocate_memory", "fail"],
            "skipped_tools": {
                "io_write": "writes: not readOnlyHint and no --allow-writes",
                "block_event_loop": "destructiveHint",
            },
            "memory_budget_bytes": 800 * MIB,
            "alive_at_end": True,
            "deaths": [],
        },
        "environment": {
            "hostname": "ci-runner-3",
            "os": "Linux 6.1.0 x86_64",
            "python": "3.11.9",
            "cpu_count": 8,
            "memory_bytes": 16 * 1024 * MIB,
            "container_limit_bytes": None,
        },
        "thresholds": {"slo_p99_ms": 100.0, "error_budget": 0.01},
        "load": _load(phases),
        "phases": phases,
        "timeseries": _timeseries(b, run_s),
        "target_samples": _samples(b, phases, run_s),
        "protection_events": {
            "source": "metrics",
            "rejected": {"concurrency_limit": 12345, "memory_pressure": 1},
            "watchdog": {"stall": 2},
            "memory_levels_seen": ["normal", "elevated", "high"],
        },
        "limits": [
            {
                "name": "max sustainable concurrency",
                "value": phases["tsunami"]["results"]["max_sustainable_concurrency"],
                "unit": "callers",
                "phase": "tsunami",
                "confidence": "high",
                "how": f"bisection between the last good level and the first bad one ({first_bad})",
            },
            {
                "name": "saturation rate",
                "value": phases["rate"]["results"]["saturation_rate"],
                "unit": "calls/s",
                "phase": "rate",
                "confidence": "medium",
                "how": "the first offered rate whose ok rate fell short",
            },
            {
                "name": "largest accepted allocation",
                "value": 512,
                "unit": "MB",
                "phase": "avalanche",
                "confidence": "high",
                "how": "doubling allocate_memory until the server refused",
            },
            {
                "name": "memory budget",
                "value": 800 * MIB,
                "unit": "bytes",
                "phase": "run",
                "confidence": "high",
                "how": "read from the target's /metrics",
            },
        ],
        "findings": [
            {
                "severity": "warning",
                "phase": "tsunami",
                "message": "The step at 64 callers was client-bound (96.8% CPU): its throughput is a lower bound.",
                "data": {"level": 64, "client_cpu_percent": 96.8},
            },
            {
                "severity": "info",
                "phase": "avalanche",
                "message": "A 1024 MB allocation was refused cleanly (memory_pressure).",
                "data": {"mb": 1024},
            },
        ],
    }


def fresh(report: dict[str, Any]) -> dict[str, Any]:
    """A deep copy without the derived sections, to be finalized again after doctoring."""
    out = copy.deepcopy(report)
    for key in ("consistency", "verdict"):
        out.pop(key, None)
    return out
