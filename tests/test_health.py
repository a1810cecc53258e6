"""`/metrics` and `server_health` read one health snapshot: after an overload storm and a drain they report the
same admitted, refused-by-reason, in-flight and queued figures.

A real server with two slots and a queue of two: two long calls run, two wait, six more are refused at once
(`concurrency_limit`). Then SIGTERM: the two waiting are refused by admission (`draining`), and calls that
arrive during the drain are shed before it (`draining` too); both kinds count under the one reason.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from tests.procs import http_server
from tests.test_protection import Reply, call, health, metrics, wait_until

pytestmark = pytest.mark.timeout(120)

HOLD_S = 6.0  # long enough for both comparisons to happen while the first two calls run


def figures_from_metrics(m: dict[str, float]) -> dict[str, Any]:
    rejected = {
        key.split('reason="', 1)[1].split('"', 1)[0]: int(v)
        for key, v in m.items()
        if key.startswith("bemcp_rejected_total{")
    }
    return {
        "admitted": int(m["bemcp_admitted_total"]),
        "rejected": rejected,
        "in_flight": int(m["bemcp_in_flight"]),
        "queued": int(m["bemcp_queued"]),
    }


def figures_from_health(h: dict[str, Any]) -> dict[str, Any]:
    return {
        "admitted": h["admitted"],
        "rejected": h["rejected"],
        "in_flight": h["in_flight"],  # server_health leaves itself out: it is not an admitted call
        "queued": h["queued"],
    }


async def both(port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return figures_from_metrics(await metrics(port)), figures_from_health(await health(port))


async def test_metrics_and_server_health_agree_after_a_storm_and_a_drain() -> None:
    args = ["--stress-tools", "--max-concurrency", "2", "--queue-size", "2", "--queue-timeout-ms", "30000"]
    with http_server(*args, "--drain-timeout", "30") as srv:
        port = srv.port
        running = [asyncio.create_task(call(port, "sleep", {"seconds": HOLD_S}, timeout=60)) for _ in range(2)]
        await wait_until(lambda: metrics(port), lambda m: m["bemcp_in_flight"] == 2, 10, "two calls running")
        waiting = [asyncio.create_task(call(port, "sleep", {"seconds": 0.01}, timeout=60)) for _ in range(2)]
        await wait_until(lambda: metrics(port), lambda m: m["bemcp_queued"] == 2, 10, "two calls queued")
        refused = await asyncio.gather(*(call(port, "sleep", {"seconds": 0.01}) for _ in range(6)))
        assert [r.status for r in refused] == [503] * 6

        from_metrics, from_health = await both(port)
        assert from_metrics == from_health
        assert from_health["in_flight"] == 2 and from_health["queued"] == 2 and from_health["admitted"] == 2
        assert from_health["rejected"]["concurrency_limit"] == 6

        srv.proc.send_signal(signal.SIGTERM)
        queued_out: list[Reply] = await asyncio.gather(*waiting)  # refused by admission as the drain begins
        assert [r.status for r in queued_out] == [503, 503]
        shed = await asyncio.gather(*(call(port, "sleep", {"seconds": 0.01}) for _ in range(3)))
        assert [r.status for r in shed] == [503] * 3  # shed before admission: the server is draining

        from_metrics, from_health = await both(port)
        assert from_metrics == from_health
        assert from_health["rejected"]["draining"] == 5  # 2 by admission + 3 shed, each counted once
        assert from_health["in_flight"] == 2 and from_health["queued"] == 0
        assert not any(t.done() for t in running), "the long calls ended before the comparison"
        assert [(await t).status for t in running] == [200, 200]  # the drain let them finish
