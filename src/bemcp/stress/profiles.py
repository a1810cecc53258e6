"""Run profiles: how long and how hard each phase pushes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    tsunami_start: int
    tsunami_max: int
    tsunami_step_s: float
    tsunami_resolution: int
    avalanche_start_mb: float
    avalanche_max_mb: float  # never allocate more than this, whatever the budget
    chaos_s: float
    chaos_concurrency: int
    rate_fractions: tuple[float, ...]  # of the tsunami's sustained throughput
    rate_step_s: float
    soak_s: float
    soak_fraction: float  # of the max sustainable concurrency
    call_timeout_s: float


PROFILES = {
    # About a minute in all against a fast server.
    "quick": Profile(
        "quick", 4, 256, 2.0, 16, 16.0, 4096.0, 8.0, 16, (0.25, 0.5, 0.75, 1.0, 1.5, 2.0), 1.5, 8.0, 0.5, 10.0
    ),
    # About five minutes.
    "standard": Profile(
        "standard",
        4,
        1024,
        6.0,
        8,
        16.0,
        16384.0,
        45.0,
        32,
        (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0),
        6.0,
        120.0,
        0.5,
        30.0,
    ),
    # Long and far: for finding what breaks.
    "extreme": Profile(
        "extreme",
        8,
        4096,
        10.0,
        4,
        16.0,
        65536.0,
        120.0,
        128,
        (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0),
        10.0,
        600.0,
        0.75,
        60.0,
    ),
}
