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
    # The tasks phase: N concurrent tasks, N doubling from tasks_start to tasks_max; each task works tasks_seconds.
    tasks_start: int = 8
    tasks_max: int = 128
    tasks_seconds: float = 0.2
    tasks_ask_fraction: float = 0.2  # tasks that ask their client a question (answered with tasks/update)
    tasks_cancel_fraction: float = 0.1  # tasks the tester cancels while they work
    tasks_create_concurrency: int = 64  # creations in flight at once
    tasks_poll_concurrency: int = 64  # polls (tasks/get, tasks/update, tasks/cancel) in flight at once
    tasks_deadline_s: float = 30.0  # past the step's last creation and the work: a task not ended by then is lost
    tasks_restart_n: int = 64  # tasks in flight when --chaos-restart kills the server
    tasks_restart_seconds: float = 2.0  # their work, long enough to be running at the kill


PROFILES = {
    # About a minute in all against a fast server.
    "quick": Profile(
        "quick",
        4,
        256,
        2.0,
        16,
        16.0,
        4096.0,
        8.0,
        16,
        (0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
        1.5,
        8.0,
        0.5,
        10.0,
        tasks_start=8,
        tasks_max=128,
        tasks_seconds=0.2,
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
        tasks_start=16,
        tasks_max=1024,
        tasks_seconds=0.5,
        tasks_create_concurrency=256,
        tasks_poll_concurrency=256,
        tasks_deadline_s=60.0,
        tasks_restart_n=500,
        tasks_restart_seconds=3.0,
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
        tasks_start=20,
        tasks_max=10240,
        tasks_seconds=1.0,
        tasks_create_concurrency=512,
        tasks_poll_concurrency=512,
        tasks_deadline_s=180.0,
        tasks_restart_n=2000,
        tasks_restart_seconds=5.0,
    ),
}
