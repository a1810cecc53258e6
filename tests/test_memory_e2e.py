"""Memory shedding end to end: a real server's own RSS driven to `high`, then `critical`, then freed.

The server runs with `--memory-limit-mb 300`: a budget of 240 MiB, so `high` (85 %) is 204 MiB and `critical`
(95 %) 228 MiB, about 160 MiB above an idle server. tests/apps/pressure.py grows a cache in small steps of
touched pages, and everything is observed through the server: the calls' answers, /readyz, /metrics and
server_health. Memory critical for 10 s is an emergency exit (75), so the checks at `critical` are a handful
of local calls and the cache is dropped right after them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.procs import http_server
from tests.test_protection import Reply, call, get, health, metrics, result_of, wait_until

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
LIMIT_MB = 300
BUDGET = int(LIMIT_MB * MiB * 0.8)
STEP_MB = 8  # well under the 24 MiB between high and critical, so no step skips a level
LEVELS = ("normal", "elevated", "high", "critical")
OVERLOADED = -32050
SHED = 'bemcp_calls_shed_total{reason="memory_pressure"}'
REJECTED = 'bemcp_rejected_total{reason="memory_pressure"}'


def assert_memory_pressure(reply: Reply) -> None:
    """The documented overload answer: 503, Retry-After, -32050 with reason memory_pressure."""
    assert reply.status == 503, (reply.status, reply.body)
    assert int(reply.headers["retry-after"]) >= 1
    error = reply.json()["error"]
    assert error["code"] == OVERLOADED
    assert error["data"]["reason"] == "memory_pressure"
    assert {"retry_after_ms", "limit", "in_flight", "queued"} <= set(error["data"])


async def level(port: int) -> str:
    value: str = (await health(port))["memory"]["level"]
    return value


async def grow_until(port: int, target: str, seen: list[str]) -> tuple[dict[str, Any], int]:
    """Grow the cache a step at a time until server_health shows `target`; returns that health and the cache size.

    After each step, wait for a memory sample that includes it (RSS at least what the tool saw after
    touching its pages) before reading the level, so every level the server passes through is seen.
    """
    for _ in range(BUDGET // (STEP_MB * MiB) + 2):
        step = result_of(await call(port, "cache", {"megabytes": STEP_MB}))["structuredContent"]
        after = int(step["rss_bytes"]) - MiB
        h = await wait_until(
            lambda: health(port),
            lambda h, after=after: h["memory"]["rss_bytes"] >= after,  # type: ignore[misc]
            10,
            f"a memory sample after caching {step['cached_bytes'] // MiB} MiB",
        )
        now = h["memory"]["level"]
        if now != seen[-1]:
            assert LEVELS.index(now) == LEVELS.index(seen[-1]) + 1, f"level jumped from {seen[-1]} to {now}"
            seen.append(now)
        if now == target:
            return h, int(step["cached_bytes"])
    raise AssertionError(f"{target} not reached; levels seen {seen}")


async def test_memory_pressure_sheds_writes_at_high_everything_at_critical_and_recovers(tmp_path: Path) -> None:
    with http_server("--memory-limit-mb", str(LIMIT_MB), app="tests.apps.pressure:app", tmp=tmp_path) as srv:
        port = srv.port
        start = await health(port)
        assert start["memory"]["source"] == "configured"
        assert start["memory"]["budget_bytes"] == BUDGET
        assert start["memory"]["level"] == "normal"
        assert start["memory"]["usage_bytes"] < 0.6 * BUDGET, "an idle server must start well below elevated"
        assert (await get(port, "/readyz")).status == 200
        seen = ["normal"]

        # -- high: writes are shed, reads are served, the server stays ready ---------------------
        at_high, _ = await grow_until(port, "high", seen)
        assert seen == ["normal", "elevated", "high"]
        assert at_high["status"] == "degraded"
        assert at_high["ready"] is True
        assert (await get(port, "/readyz")).status == 200
        m = await metrics(port)
        assert m["bemcp_memory_level"] == 2
        assert m["bemcp_ready"] == 1
        assert m.get(SHED, 0) == 0

        assert_memory_pressure(await call(port, "note", {"text": "shed at high"}))
        read = result_of(await call(port, "peek"))["structuredContent"]
        assert read["notes"] == 0  # the refused write never ran
        assert read["cached_bytes"] > 0
        m = await metrics(port)
        assert m[SHED] == 1
        assert m[REJECTED] == 1
        assert (await health(port))["rejected"]["memory_pressure"] == 1

        # -- critical: everything but health is refused, /readyz says so ----------------------
        # `cache` is read-only, so it is still served at high and can take the level on to critical.
        at_critical, cached = await grow_until(port, "critical", seen)
        assert seen == list(LEVELS)
        assert at_critical["ready"] is False
        ready = await get(port, "/readyz")
        assert ready.status == 503
        assert ready.json() == {"ready": False, "reason": "memory_critical"}
        for tool, args in (("peek", {}), ("note", {"text": "shed at critical"}), ("cache", {"megabytes": 1})):
            assert_memory_pressure(await call(port, tool, args))
        m = await metrics(port)
        assert m["bemcp_memory_level"] == 3
        assert m["bemcp_ready"] == 0
        assert m[SHED] == 4
        assert m[REJECTED] == 4

        # -- freed: the level comes down, the server is ready and takes writes again --------------
        dropped = result_of(await call(port, "drop_cache"))["structuredContent"]
        assert dropped["freed_bytes"] == cached
        recovered = await wait_until(
            lambda: health(port), lambda h: h["memory"]["level"] == "normal", 10, "memory level back to normal"
        )
        assert recovered["ready"] is True
        assert recovered["status"] == "ok"
        assert (await get(port, "/readyz")).status == 200
        assert result_of(await call(port, "note", {"text": "after"}))["structuredContent"] == {"result": 1}
        assert result_of(await call(port, "peek"))["structuredContent"] == {"cached_bytes": 0, "notes": 1}
        m = await metrics(port)
        assert m["bemcp_memory_level"] == 0
        assert m["bemcp_ready"] == 1
        assert m[SHED] == 4  # nothing shed once recovered
        final = await health(port)
        assert final["in_flight"] == 0
        assert "emergency" not in final["watchdog"]["events"]
        assert srv.alive()
