"""The Smart Memory Manager: limit detection, levels, reservations, shedding and reactions.

Limit detection is tested against FAKE cgroup and /proc trees built in
`tmp_path`: a real cgroup hierarchy with chosen limits (nested v2 limits, v1
sentinels, hybrid mounts) cannot be created portably on a test machine. One
test at the end does use a real child cgroup when this machine allows it, and
skips with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bemcp.errors import ToolError
from bemcp.runtime.cgroup import (
    MemoryLimit,
    MemoryPressure,
    PsiLine,
    detect_memory_limit,
    parse_proc_cgroup,
    parse_psi,
    read_pressure,
    read_working_set,
)
from bemcp.runtime.memory import MemoryBudgetExceeded, MemoryConfig, MemoryLevel, MemoryManager, UsageSample

MiB = 1024 * 1024
GiB = 1024 * MiB
PHYSICAL = 16 * GiB
V1_UNLIMITED = "9223372036854771712"
ROOT = Path(__file__).resolve().parent.parent
N, E, H, C = MemoryLevel.NORMAL, MemoryLevel.ELEVATED, MemoryLevel.HIGH, MemoryLevel.CRITICAL


# -- fake trees ----------------------------------------------------------------


class FakeHost:
    """A fake `/sys/fs/cgroup` and `/proc` under a temporary directory."""

    def __init__(self, base: Path) -> None:
        self.cgroup = base / "cgroup"
        self.proc = base / "proc"
        self.cgroup.mkdir()
        (self.proc / "self").mkdir(parents=True)

    def proc_cgroup(self, text: str) -> None:
        (self.proc / "self" / "cgroup").write_text(text)

    def write(self, rel: str, name: str, value: str) -> Path:
        directory = self.cgroup / rel.strip("/") if rel.strip("/") else self.cgroup
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(value + "\n")
        return directory

    def v2(self, cgroup_path: str, limits: dict[str, str]) -> None:
        """A pure v2 host; `limits` maps cgroup paths to `memory.max` contents."""
        self.proc_cgroup(f"0::{cgroup_path}\n")
        self.write("", "cgroup.controllers", "cpu io memory pids")
        (self.cgroup / cgroup_path.strip("/")).mkdir(parents=True, exist_ok=True)
        for rel, value in limits.items():
            self.write(rel, "memory.max", value)

    def v1(self, cgroup_path: str, limits: dict[str, str]) -> None:
        """A v1 host; `limits` maps memory-controller paths to `memory.limit_in_bytes`."""
        self.proc_cgroup(f"5:cpu,cpuacct:{cgroup_path}\n4:memory:{cgroup_path}\n1:name=systemd:{cgroup_path}\n")
        self.write("memory", "memory.limit_in_bytes", V1_UNLIMITED)
        (self.cgroup / "memory" / cgroup_path.strip("/")).mkdir(parents=True, exist_ok=True)
        for rel, value in limits.items():
            self.write(f"memory/{rel}", "memory.limit_in_bytes", value)

    def psi(self, text: str) -> None:
        (self.proc / "pressure").mkdir(exist_ok=True)
        (self.proc / "pressure" / "memory").write_text(text)

    def detect(self) -> MemoryLimit:
        return detect_memory_limit(self.cgroup, self.proc, physical=PHYSICAL)


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


# -- limit detection -------------------------------------------------------------


def test_v2_single_limit(host: FakeHost) -> None:
    host.v2("/app", {"app": str(512 * MiB)})
    limit = host.detect()
    assert limit == MemoryLimit(512 * MiB, "cgroup2", True, PHYSICAL, host.cgroup / "app")


def test_v2_nested_parent_smaller_wins(host: FakeHost) -> None:
    host.v2("/a/b/c", {"a": str(256 * MiB), "a/b": str(1 * GiB), "a/b/c": "max"})
    limit = host.detect()
    assert (limit.limit, limit.source, limit.container) == (256 * MiB, "cgroup2", True)
    assert limit.cgroup_dir == host.cgroup / "a"  # the binding cgroup, whose usage counts


def test_v2_nested_child_smaller_wins(host: FakeHost) -> None:
    host.v2("/a/b", {"a": str(1 * GiB), "a/b": str(300 * MiB)})
    assert host.detect().limit == 300 * MiB


def test_v2_max_everywhere_is_physical(host: FakeHost) -> None:
    host.v2("/a/b", {"a": "max", "a/b": "max"})
    assert host.detect() == MemoryLimit(PHYSICAL, "physical", False, PHYSICAL)


def test_v2_limit_above_physical_is_clamped(host: FakeHost) -> None:
    host.v2("/app", {"app": str(64 * GiB)})
    assert host.detect() == MemoryLimit(PHYSICAL, "physical", False, PHYSICAL)


def test_v2_namespaced_container_uses_mount_root(host: FakeHost) -> None:
    # Without a cgroup namespace /proc shows the host path, but the mount root is our cgroup.
    host.proc_cgroup("0::/kubepods/pod1/ctr\n")
    host.write("", "cgroup.controllers", "memory")
    host.write("", "memory.max", str(200 * MiB))
    limit = host.detect()
    assert (limit.limit, limit.cgroup_dir) == (200 * MiB, host.cgroup)


def test_v1_limit(host: FakeHost) -> None:
    host.v1("/docker/abc", {"docker/abc": str(300 * MiB)})
    limit = host.detect()
    assert limit == MemoryLimit(300 * MiB, "cgroup1", True, PHYSICAL, host.cgroup / "memory" / "docker" / "abc")


@pytest.mark.parametrize("value", [V1_UNLIMITED, str(2**62), str(2**63 - 1)])
def test_v1_unlimited_sentinel_is_physical(host: FakeHost, value: str) -> None:
    host.v1("/docker/abc", {"docker/abc": value, "docker": value})
    assert host.detect() == MemoryLimit(PHYSICAL, "physical", False, PHYSICAL)


def test_v1_parent_limit_applies(host: FakeHost) -> None:
    host.v1("/svc/worker", {"svc": str(128 * MiB), "svc/worker": V1_UNLIMITED})
    assert host.detect().limit == 128 * MiB


def test_hybrid_host_reads_memory_from_v1(host: FakeHost) -> None:
    host.v1("/job", {"job": str(700 * MiB)})
    host.proc_cgroup("4:memory:/job\n0::/\n")
    host.write("unified", "cgroup.controllers", "")  # v2 mounted without the memory controller
    limit = host.detect()
    assert (limit.limit, limit.source) == (700 * MiB, "cgroup1")


def test_no_cgroup_information_is_physical(host: FakeHost) -> None:
    assert host.detect() == MemoryLimit(PHYSICAL, "physical", False, PHYSICAL)


def test_garbage_limit_files_are_ignored(host: FakeHost) -> None:
    host.v2("/a/b", {"a": "lots", "a/b": str(90 * MiB)})
    assert host.detect().limit == 90 * MiB


def test_parse_proc_cgroup() -> None:
    assert parse_proc_cgroup("0::/user.slice/x.scope\n") == ("/user.slice/x.scope", None)
    assert parse_proc_cgroup("7:cpu,cpuacct:/a\n4:memory,hugetlb:/m\n0::/\n") == ("/", "/m")
    assert parse_proc_cgroup("") == (None, None)


def test_detect_with_real_roots_never_exceeds_physical() -> None:
    limit = detect_memory_limit()
    assert 0 < limit.limit <= limit.physical


# -- working set and PSI ---------------------------------------------------------


def test_working_set_v2(host: FakeHost) -> None:
    host.v2("/app", {"app": str(1 * GiB)})
    host.write("app", "memory.current", str(400 * MiB))
    host.write("app", "memory.stat", f"anon {250 * MiB}\nfile {150 * MiB}\ninactive_file {100 * MiB}\nactive_file 1")
    assert read_working_set(host.detect()) == 300 * MiB


def test_working_set_v1(host: FakeHost) -> None:
    host.v1("/job", {"job": str(1 * GiB)})
    host.write("memory/job", "memory.usage_in_bytes", str(500 * MiB))
    host.write("memory/job", "memory.stat", f"inactive_file {1 * MiB}\ntotal_inactive_file {120 * MiB}")
    assert read_working_set(host.detect()) == 380 * MiB  # the hierarchical total wins over the local one


def test_working_set_missing_files(host: FakeHost) -> None:
    host.v2("/app", {"app": str(1 * GiB)})
    assert read_working_set(host.detect()) is None
    assert read_working_set(MemoryLimit(PHYSICAL, "physical", False, PHYSICAL)) is None


def test_usage_is_larger_of_rss_and_working_set() -> None:
    assert UsageSample(rss=10).usage == 10
    assert UsageSample(rss=10, working_set=30).usage == 30
    assert UsageSample(rss=50, working_set=30).usage == 50


def test_manager_reads_fake_cgroup_usage(host: FakeHost) -> None:
    host.v2("/app", {"app": str(512 * MiB)})
    host.write("app", "memory.current", str(8 * GiB))  # far above our own RSS
    host.write("app", "memory.stat", f"inactive_file {1 * GiB}")
    host.psi("some avg10=1.50 avg60=0.50 avg300=0.10 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n")
    manager = MemoryManager(MemoryConfig(cgroup_root=host.cgroup, proc_root=host.proc), limit=host.detect())
    snap = manager.refresh()
    assert snap.working_set == 7 * GiB
    assert snap.usage == 7 * GiB and snap.rss > 0
    assert snap.psi is not None and snap.psi.some.total == 1234
    assert snap.level is MemoryLevel.CRITICAL


def test_parse_psi() -> None:
    psi = parse_psi(
        "some avg10=12.50 avg60=3.00 avg300=1.25 total=987654\nfull avg10=4.00 avg60=1.00 avg300=0.50 total=42\n"
    )
    assert psi == MemoryPressure(PsiLine(12.5, 3.0, 1.25, 987654), PsiLine(4.0, 1.0, 0.5, 42))
    some_only = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert some_only is not None and some_only.full is None
    assert parse_psi("") is None
    assert parse_psi("nonsense\n") is None


def test_read_pressure_prefers_cgroup_file(host: FakeHost) -> None:
    host.psi("some avg10=1.00 avg60=0 avg300=0 total=1\n")
    limit = MemoryLimit(PHYSICAL, "physical", False, PHYSICAL)
    system = read_pressure(limit, host.proc)
    assert system is not None and system.some.avg10 == 1.0
    host.v2("/app", {"app": str(1 * GiB)})
    host.write("app", "memory.pressure", "some avg10=33.00 avg60=0 avg300=0 total=9\n")
    own = read_pressure(host.detect(), host.proc)
    assert own is not None and own.some.avg10 == 33.0
    assert read_pressure(limit, host.proc / "missing") is None


# -- levels ----------------------------------------------------------------------


class FakeUsage:
    """An injectable usage function: tests set `rss` and `psi` and call `refresh()`."""

    def __init__(self, rss: int = 0) -> None:
        self.rss = rss
        self.psi: MemoryPressure | None = None
        self.calls = 0

    def __call__(self) -> UsageSample:
        self.calls += 1
        return UsageSample(self.rss, None, self.psi)


def make_manager(
    usage: FakeUsage, *, limit: int = 1000, fraction: float = 1.0, **config: Any
) -> tuple[MemoryManager, list[int]]:
    trims: list[int] = []
    manager = MemoryManager(
        MemoryConfig(memory_fraction=fraction, **config),
        limit=MemoryLimit(limit, "cgroup2", True, PHYSICAL),
        usage_fn=usage,
        malloc_trim=lambda: trims.append(1),
    )
    return manager, trims


def psi(some: float, full: float) -> MemoryPressure:
    return MemoryPressure(PsiLine(some, 0.0, 0.0, 0), PsiLine(full, 0.0, 0.0, 0))


def test_levels_thresholds_and_hysteresis() -> None:
    usage = FakeUsage()
    manager, _ = make_manager(usage)  # budget 1000 bytes, so usage reads as thousandths
    changes: list[tuple[MemoryLevel, MemoryLevel]] = []
    manager.add_listener(lambda old, new: changes.append((old, new)))
    steps = [
        (690, N),
        (700, E),
        (849, E),
        (850, H),
        (950, C),
        (930, C),  # below 0.95 but inside the 5% band: stays
        (901, C),
        (899, H),  # out of the band; also above high-0.05, so stops at high
        (801, H),
        (799, E),
        (651, E),
        (649, N),
        (960, C),
        (100, N),  # a large drop leaves every band at once
    ]
    for rss, expected in steps:
        usage.rss = rss
        assert manager.refresh().level is expected, rss
    assert changes == [(N, E), (E, H), (H, C), (C, H), (H, E), (E, N), (N, C), (C, N)]
    assert manager.snapshot().level_changes == len(changes)


def test_hovering_at_threshold_does_not_flap() -> None:
    usage = FakeUsage()
    manager, _ = make_manager(usage)
    changes: list[tuple[MemoryLevel, MemoryLevel]] = []
    manager.add_listener(lambda old, new: changes.append((old, new)))
    for rss in [851, 849, 852, 840, 853, 820] * 5:
        usage.rss = rss
        manager.refresh()
    assert changes == [(MemoryLevel.NORMAL, MemoryLevel.HIGH)]


def test_initial_level_is_set_without_listeners() -> None:
    manager, _ = make_manager(FakeUsage(960))
    assert manager.level is MemoryLevel.CRITICAL and manager.is_critical()


def test_psi_raises_level() -> None:
    usage = FakeUsage(100)
    manager, _ = make_manager(usage)
    usage.psi = psi(some=5.0, full=1.0)
    assert manager.refresh().level is MemoryLevel.NORMAL
    usage.psi = psi(some=25.0, full=1.0)
    assert manager.refresh().level is MemoryLevel.ELEVATED
    usage.psi = psi(some=25.0, full=15.0)
    assert manager.refresh().level is MemoryLevel.HIGH
    usage.rss = 960  # PSI is a floor, never a ceiling
    assert manager.refresh().level is MemoryLevel.CRITICAL
    usage.rss, usage.psi = 100, psi(some=0.0, full=0.0)
    assert manager.refresh().level is MemoryLevel.NORMAL


def test_reservations_count_toward_level() -> None:
    usage = FakeUsage(600)
    manager, _ = make_manager(usage)
    assert manager.refresh().level is MemoryLevel.NORMAL
    with manager.reserve_sync(300):
        assert manager.refresh().level is MemoryLevel.HIGH
    assert manager.refresh().level is MemoryLevel.NORMAL


def test_a_resident_reservation_is_counted_once_from_the_next_sample() -> None:
    """Held bytes count on top of the usage until the holder says they are allocated (`resident()`); from the
    first sample taken after that they count once, through the usage, instead of twice."""
    usage = FakeUsage(100)
    now = [0.0]
    manager = MemoryManager(
        MemoryConfig(memory_fraction=1.0),
        limit=MemoryLimit(1000, "cgroup2", True, PHYSICAL),
        usage_fn=usage,
        malloc_trim=lambda: None,
        clock=lambda: now[0],
    )
    with manager.reserve_sync(500) as held:
        usage.rss = 600  # the holder allocated its 500 bytes
        now[0] = 1.0
        assert manager.refresh().level is MemoryLevel.CRITICAL  # 600 + 500 reserved: counted twice
        with pytest.raises(MemoryBudgetExceeded):
            manager.reserve_sync(300).__enter__()
        held.resident()
        held.resident()  # idempotent
        # Until a sample taken after the declaration shows them, the bytes still count apart from the usage.
        assert manager.reserved == 500
        with pytest.raises(MemoryBudgetExceeded):
            manager.reserve_sync(300).__enter__()
        now[0] = 2.0
        assert manager.refresh().level is MemoryLevel.NORMAL  # 600 of 1000: counted once
        assert manager.reserved == 0
        with manager.reserve_sync(300):  # 400 free
            assert manager.reserved == 300
    usage.rss = 100  # freed
    now[0] = 3.0
    assert manager.refresh().level is MemoryLevel.NORMAL and manager.reserved == 0
    snap = manager.snapshot()
    assert (snap.reservations_granted, snap.reservations_refused) == (2, 2)


def test_a_budget_refusal_is_a_tool_error() -> None:
    """Propagated out of a tool, the refusal is the clean isError answer with its message, not a tool failure."""
    assert issubclass(MemoryBudgetExceeded, ToolError)


# -- reservations ----------------------------------------------------------------


async def test_reservation_grant_and_refuse_exact_numbers() -> None:
    usage = FakeUsage(50 * MiB)
    manager, _ = make_manager(usage, limit=100 * MiB, fraction=0.8)
    assert manager.budget == 80 * MiB
    async with manager.reserve(20 * MiB):
        assert manager.reserved == 20 * MiB
        with pytest.raises(MemoryBudgetExceeded) as info:
            async with manager.reserve(20 * MiB):
                pytest.fail("must not be granted")
        err = info.value
        assert (err.requested, err.available, err.budget) == (20 * MiB, 10 * MiB, 80 * MiB)
        assert "20.0 MiB" in str(err) and "10.0 MiB" in str(err) and "80.0 MiB" in str(err)
        async with manager.reserve(10 * MiB):  # exactly reaching the budget is allowed
            assert manager.reserved == 30 * MiB
    assert manager.reserved == 0
    snap = manager.snapshot()
    assert (snap.reservations_granted, snap.reservations_refused) == (2, 1)


def test_reservation_released_on_error_and_validated() -> None:
    manager, _ = make_manager(FakeUsage(0))
    with pytest.raises(KeyError), manager.reserve_sync(400):
        assert manager.reserved == 400
        raise KeyError("boom")
    assert manager.reserved == 0
    with pytest.raises(ValueError):
        manager.reserve_sync(-1)
    pending = manager.reserve_sync(10**9)  # nothing is taken until entered
    assert manager.reserved == 0 and pending.nbytes == 10**9


async def test_concurrent_reservations_never_overshoot() -> None:
    manager, _ = make_manager(FakeUsage(50 * MiB), limit=100 * MiB, fraction=0.8)
    peak = 0

    async def one() -> bool:
        nonlocal peak
        try:
            async with manager.reserve(5 * MiB):
                peak = max(peak, manager.reserved)
                await asyncio.sleep(0.01)
                return True
        except MemoryBudgetExceeded:
            return False

    results = await asyncio.gather(*(one() for _ in range(20)))
    assert sum(results) == 6  # 30 MiB free / 5 MiB each
    assert peak == 30 * MiB
    assert manager.reserved == 0


def test_threaded_reservations_never_overshoot() -> None:
    manager, _ = make_manager(FakeUsage(50 * MiB), limit=100 * MiB, fraction=0.8)
    barrier = threading.Barrier(16)
    peak = 0
    peak_lock = threading.Lock()

    def one() -> bool:
        nonlocal peak
        barrier.wait()
        try:
            with manager.reserve_sync(5 * MiB):
                with peak_lock:
                    peak = max(peak, manager.reserved)
                time.sleep(0.05)
                return True
        except MemoryBudgetExceeded:
            return False

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: one(), range(16)))
    assert sum(results) == 6
    assert peak <= 30 * MiB
    assert manager.reserved == 0


# -- shedding --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rss", "level", "write", "read", "health"),
    [
        (100, MemoryLevel.NORMAL, None, None, None),
        (750, MemoryLevel.ELEVATED, None, None, None),
        (900, MemoryLevel.HIGH, "memory_pressure", None, None),
        (990, MemoryLevel.CRITICAL, "memory_pressure", "memory_pressure", None),
    ],
)
def test_should_shed_matrix(
    rss: int, level: MemoryLevel, write: str | None, read: str | None, health: str | None
) -> None:
    manager, _ = make_manager(FakeUsage(rss))
    assert manager.level is level
    assert manager.should_shed(read_only=False) == write
    assert manager.should_shed(read_only=True) == read
    assert manager.should_shed(read_only=False, is_health=True) == health
    assert manager.should_shed(read_only=True, is_health=True) == health
    assert manager.admit(read_only=True) is (read is None)
    assert manager.admit(read_only=False) is (write is None)


def test_should_shed_does_not_sample() -> None:
    usage = FakeUsage(100)
    manager, _ = make_manager(usage)
    calls = usage.calls
    for _ in range(1000):
        manager.should_shed(read_only=False)
    assert usage.calls == calls


# -- reactions -------------------------------------------------------------------


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    seen: list[int] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(1)

    gc.callbacks.append(callback)
    yield seen
    gc.callbacks.remove(callback)


def test_reactions_on_high(full_collections: list[int]) -> None:
    now = [0.0]
    usage = FakeUsage(100)
    trims: list[int] = []
    manager = MemoryManager(
        MemoryConfig(memory_fraction=1.0, reaction_interval=5.0),
        limit=MemoryLimit(1000, "cgroup2", True, PHYSICAL),
        usage_fn=usage,
        malloc_trim=lambda: trims.append(1),
        clock=lambda: now[0],
    )
    trimmed: list[int] = []
    manager.add_trimmer(lambda: trimmed.append(1))

    def broken() -> None:
        raise RuntimeError("a buggy cache")

    manager.add_trimmer(broken)
    manager.refresh()
    assert (manager.snapshot().gc_runs, trimmed) == (0, [])  # normal: nothing to do

    usage.rss = 900
    snap = manager.refresh()  # enters high
    assert (snap.gc_runs, snap.trims, snap.malloc_trims, len(trimmed), len(trims)) == (1, 2, 1, 1, 1)
    assert full_collections

    now[0] = 2.0
    manager.refresh()  # still high, too soon
    assert manager.snapshot().gc_runs == 1
    now[0] = 6.0
    usage.rss = 990
    manager.refresh()  # critical, and the interval has passed
    assert (manager.snapshot().gc_runs, len(trimmed)) == (2, 2)
    now[0] = 7.0
    usage.rss = 100
    manager.refresh()
    usage.rss = 900
    manager.refresh()  # re-entering high reacts at once
    assert (manager.snapshot().gc_runs, len(trimmed), len(trims)) == (3, 3, 3)


def test_real_malloc_trim_is_safe() -> None:
    manager = MemoryManager(limit=MemoryLimit(GiB, "physical", False, GiB), usage_fn=FakeUsage(0))
    manager.reclaim()
    snap = manager.snapshot()
    assert snap.gc_runs == 1 and snap.malloc_trims in (0, 1)  # 0 where libc is not glibc


# -- lifecycle -------------------------------------------------------------------


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bemcp-memory"]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_start_stop_twice_and_thread_joined() -> None:
    usage = FakeUsage(100)
    manager, _ = make_manager(usage, interval=0.01)
    before = len(sampler_threads())
    seen_on: list[str] = []
    manager.add_listener(lambda old, new: seen_on.append(threading.current_thread().name))
    manager.start()
    manager.start()
    assert manager.running and len(sampler_threads()) == before + 1
    wait_for(lambda: usage.calls > 3)
    usage.rss = 900
    wait_for(lambda: manager.level is MemoryLevel.HIGH)
    wait_for(lambda: bool(seen_on))
    assert seen_on == ["bemcp-memory"]
    manager.stop()
    manager.stop()
    assert not manager.running and len(sampler_threads()) == before
    calls = usage.calls
    time.sleep(0.05)
    assert usage.calls == calls
    manager.start()  # restartable
    wait_for(lambda: usage.calls > calls)
    manager.stop()
    assert len(sampler_threads()) == before


def test_sampler_survives_failures() -> None:
    usage = FakeUsage(100)
    manager, _ = make_manager(usage, interval=0.01)
    fails = [0]

    def flaky() -> UsageSample:
        fails[0] += 1
        raise OSError("cgroup file vanished")

    manager._usage_fn = flaky  # swap in after construction: the first sample must succeed
    manager.start()
    wait_for(lambda: fails[0] >= 3)
    manager.stop()
    assert not manager.running


def test_config_validation() -> None:
    for fraction in (0.0, -0.1, 1.01):
        with pytest.raises(ValueError):
            MemoryConfig(memory_fraction=fraction)
    assert MemoryConfig(memory_fraction=1.0).memory_fraction == 1.0
    with pytest.raises(ValueError):
        MemoryConfig(elevated=0.9, high=0.85)
    with pytest.raises(ValueError):
        MemoryConfig(interval=0)
    with pytest.raises(ValueError, match="normal_interval"):
        MemoryConfig(interval=0.5, normal_interval=0.25)


def test_sampling_is_slower_while_the_level_is_normal() -> None:
    """Each sample takes the GIL from the serving thread: at normal it samples half as often, under
    pressure at the configured interval."""
    usage = FakeUsage(100)
    manager, _ = make_manager(usage, interval=0.25)
    manager.refresh()
    assert manager.level == N and manager.period == 0.5
    usage.rss = 700
    manager.refresh()
    assert manager.level == E and manager.period == 0.25
    usage.rss = 960
    manager.refresh()
    assert manager.level == C and manager.period == 0.25
    fixed, _ = make_manager(FakeUsage(100), interval=0.25, normal_interval=1.0)
    fixed.refresh()
    assert fixed.period == 1.0


def test_snapshot_to_dict() -> None:
    usage = FakeUsage(900)
    usage.psi = psi(1.0, 0.0)
    manager, _ = make_manager(usage)
    data = manager.refresh().to_dict()
    assert data["level"] == "high" and data["budget"] == 1000 and data["usage"] == 900
    assert data["psi"]["some"]["avg10"] == 1.0
    assert {"limit", "source", "rss", "working_set", "reserved", "gc_runs", "trims"} <= data.keys()


# -- a real cgroup -----------------------------------------------------------------


def _real_memory_cgroup() -> tuple[str, Path]:
    """(source, directory to create a child in) for this process's memory controller, or skip."""
    if not sys.platform.startswith("linux"):
        pytest.skip("cgroups are Linux-only")
    if os.geteuid() != 0:
        pytest.skip("creating a cgroup needs root")
    root = Path("/sys/fs/cgroup")
    try:
        v2, v1 = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    except OSError:
        pytest.skip("/proc/self/cgroup is unreadable")
    if v1 is not None and (root / "memory").is_dir():
        directory = root / "memory" / v1.strip("/")
        if not (directory / "memory.limit_in_bytes").exists() or not os.access(directory, os.W_OK):
            pytest.skip(f"v1 memory cgroup {directory} is not writable")
        return "cgroup1", directory
    if v2 is not None:
        base = root if (root / "cgroup.controllers").exists() else root / "unified"
        directory = base / v2.strip("/")
        try:
            subtree = (directory / "cgroup.subtree_control").read_text().split()
        except OSError:
            pytest.skip(f"no cgroup2 hierarchy at {directory}")
        if "memory" not in subtree:
            pytest.skip(f"memory controller not enabled in {directory}/cgroup.subtree_control ({subtree})")
        if not os.access(directory, os.W_OK):
            pytest.skip(f"cgroup2 directory {directory} is not writable")
        return "cgroup2", directory
    pytest.skip("no memory cgroup controller for this process")


def test_real_child_cgroup_limit_is_detected() -> None:
    source, parent = _real_memory_cgroup()
    child = parent / f"bemcp-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    limit_file = "memory.limit_in_bytes" if source == "cgroup1" else "memory.max"
    try:
        child.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a child cgroup in {parent}: {exc}")
    proc: subprocess.Popen[str] | None = None
    try:
        (child / limit_file).write_text(str(256 * MiB))
        # The child waits for a line on stdin so it is moved before it looks at its cgroup.
        code = (
            "import sys; sys.stdin.readline()\n"
            "from bemcp.runtime.cgroup import detect_memory_limit\n"
            "l = detect_memory_limit(); print(l.limit, l.source, l.container)\n"
        )
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        (child / "cgroup.procs").write_text(str(proc.pid))
        out, _ = proc.communicate("go\n", timeout=60)
        assert proc.returncode == 0
        assert out.split() == [str(256 * MiB), source, "True"]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        deadline = time.monotonic() + 10
        while True:  # the kernel empties the cgroup slightly after the child is reaped
            try:
                child.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
