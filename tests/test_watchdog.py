"""The Task Watchdog's own thread on a real event loop: stalls seen from outside, with the blocking stack."""

from __future__ import annotations

import asyncio
import threading
import time

from bemcp.runtime.watchdog import Watchdog, WatchdogConfig


def _block_the_loop_here(seconds: float) -> None:
    time.sleep(seconds)  # a blocking call on the loop thread, as a careless tool would make


async def test_a_blocked_loop_is_recorded_once_with_its_stack_within_a_check_interval() -> None:
    cfg = WatchdogConfig(interval=0.02, stall_threshold=0.2, check_interval=0.05)
    watchdog = Watchdog(cfg)
    watchdog.start(asyncio.get_running_loop())
    try:
        await asyncio.sleep(0.1)
        _block_the_loop_here(0.6)
        await asyncio.sleep(0.15)  # the loop beats again: the stall has ended
    finally:
        watchdog.stop()
    stalls = [e for e in watchdog.events if e.kind == "loop_stall"]
    assert len(stalls) == 1  # one stall, recorded once however many checks saw it
    assert "_block_the_loop_here" in stalls[0].detail["stack"]
    # Seen at most one check interval (plus slack for a busy machine) after passing the threshold.
    assert cfg.stall_threshold <= stalls[0].detail["stalled_s"] <= cfg.stall_threshold + cfg.check_interval + 0.25
    assert watchdog.max_loop_lag >= 0.5
    assert not watchdog.snapshot().stalled
    assert not any(t.name == "bemcp-watchdog" for t in threading.enumerate())
