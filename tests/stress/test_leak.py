"""The soak's leak verdict (`bemcp.stress.leak.leak_verdict`) on synthetic RSS series, and on real servers.

Synthetic: (t, RSS) samples every 0.5 s, as the sampler takes them, with seeded noise and RSS in whole 4 KiB pages:
a steady leak is `leak` whatever the noise; a flat series, a warm-up that levels off and a shrinking one are
`no_leak`; a single late step is at most `possible_leak`; too few samples are `inconclusive`.

Real: `tests.stress.leak_app:leaky` keeps 1 KiB per call; `clean` is the same tool keeping nothing. The quick
profile's 8 s soak, alone (`--phases soak`), says `leak` for the first and not for the second.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from bemcp.stress.leak import MiB, leak_verdict, threshold
from tests.procs import http_server
from tests.stress.cli_run import check_outputs, no_traceback, stress

BASE = 60 * MiB
PAGE = 4096


def series(
    rss: Callable[[float], float], *, seconds: float = 8.0, noise: float = 0.0, seed: int = 0
) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    n = int(seconds / 0.5)
    return [(i * 0.5, int(rss(i * 0.5) + rng.gauss(0, noise)) // PAGE * PAGE) for i in range(n + 1)]


@pytest.mark.parametrize("seed", range(20))
def test_a_steady_leak_is_a_leak_whatever_the_noise(seed: int) -> None:
    # 1 MiB/s (1 KiB per call at 1,000 calls/s), in 300 KiB of noise per sample.
    got = leak_verdict(series(lambda t: BASE + MiB * t, noise=300 * 1024, seed=seed))
    assert got.verdict == "leak", got
    assert got.slope == pytest.approx(MiB, rel=0.2)


@pytest.mark.parametrize("seed", range(20))
def test_flat_rss_is_no_leak(seed: int) -> None:
    got = leak_verdict(series(lambda t: BASE, noise=16 * 1024, seed=seed))
    assert got.verdict == "no_leak", got


@pytest.mark.parametrize("seed", range(20))
def test_noisy_flat_rss_is_never_a_leak(seed: int) -> None:
    """±1 MiB a sample over 8 s: too noisy to rule a leak out at 1 MiB/min, and too noisy to claim one."""
    got = leak_verdict(series(lambda t: BASE, noise=MiB, seed=seed))
    assert got.verdict in ("no_leak", "inconclusive"), got


def test_a_warm_up_that_levels_off_is_no_leak() -> None:
    # +40 MiB within the first second or so (caches, buffers, arenas), then nothing.
    got = leak_verdict(series(lambda t: BASE + 40 * MiB * (1 - math.exp(-4 * t)), seed=1))
    assert got.verdict == "no_leak", got
    assert got.slope is not None and got.slope > threshold(BASE)  # a straight line through it would have said leak


def test_one_late_step_is_at_most_a_possible_leak() -> None:
    got = leak_verdict(series(lambda t: BASE + (8 * MiB if t >= 6 else 0), seed=2))
    assert got.verdict == "possible_leak", got


def test_shrinking_rss_is_no_leak() -> None:
    assert leak_verdict(series(lambda t: BASE - MiB * t, seed=3)).verdict == "no_leak"


def test_growth_below_the_threshold_is_no_leak() -> None:
    slow = threshold(BASE) / 3  # steady, but a third of θ: 1 MiB/min at 60 MiB
    got = leak_verdict(series(lambda t: BASE + slow * t, seed=4))
    assert got.verdict == "no_leak", got


def test_the_threshold_grows_with_the_process() -> None:
    assert threshold(60 * MiB) == MiB / 60  # the floor, 1 MiB/min
    assert threshold(1024 * MiB) == pytest.approx(0.01 * 1024 * MiB / 60)  # 1% per minute


@pytest.mark.parametrize(
    ("points", "why"),
    [
        ([], "0 RSS samples"),
        ([(i * 0.5, BASE) for i in range(11)], "fewer than 12"),
        ([(i * 0.1, BASE) for i in range(30)], "under 4 s"),
        ([(0.0, BASE), (0.1, BASE), *[(5.0 + i * 0.1, BASE) for i in range(20)]], "fewer than 2 RSS samples"),
    ],
)
def test_too_little_to_go_on_is_inconclusive(points: list[tuple[float, int]], why: str) -> None:
    got = leak_verdict(points)
    assert got.verdict == "inconclusive" and why in got.reason, got


@pytest.mark.parametrize(("app", "leaks"), [("leaky", True), ("clean", False)])
def test_a_soak_tells_a_leaking_tool_from_a_clean_twin(tmp_path: Path, app: str, leaks: bool) -> None:
    out = tmp_path / app
    with http_server(app=f"tests.stress.leak_app:{app}", tmp=tmp_path) as server:
        proc = stress("--profile", "quick", "--phases", "soak", "--target", server.url, "--out", str(out))
    no_traceback(proc)
    report = check_outputs(out, proc)
    results = report["phases"]["soak"]["results"]
    assert report["target"]["tools_used"] == ["lookup"]
    assert results["rss_samples"] >= 12, results  # enough for a verdict in the quick profile's 8 s soak
    if leaks:
        assert results["leak_verdict"] == "leak", results
        assert report["verdict"]["status"] == "FAIL"
        crit = next(c for c in report["verdict"]["criteria"] if c["name"] == "no memory leak in soak")
        assert crit["passed"] is False
    else:
        assert results["leak_verdict"] == "no_leak", results
