"""The Smart Memory Manager: container-aware memory budgets, pressure levels and reservations.

The budget is a fraction of the binding limit that `cgroup.py` finds (the tightest cgroup limit above the
process, else physical RAM). A sampler thread turns usage
(plus outstanding reservations) and PSI into a level; the hot path reads that
level without a syscall to decide whether to shed a call.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import enum
import gc
import logging
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from bemcp.errors import ToolError
from bemcp.runtime.cgroup import (
    LimitSource,
    MemoryLimit,
    MemoryPressure,
    detect_memory_limit,
    read_pressure,
    read_working_set,
)

log = logging.getLogger("bemcp.memory")

MiB = 1024 * 1024


class MemoryLevel(enum.IntEnum):
    """Ordered so that `level >= MemoryLevel.HIGH` reads naturally."""

    NORMAL = 0
    ELEVATED = 1
    HIGH = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class MemoryBudgetExceeded(ToolError):
    """A reservation would take usage past the budget; nothing was reserved.

    A `ToolError`: a tool that lets it propagate answers the caller with its message (isError), which is the
    expected, clean refusal rather than a failure of the tool.
    """

    def __init__(self, requested: int, available: int, budget: int) -> None:
        self.requested = requested
        self.available = available
        self.budget = budget
        super().__init__(
            f"memory reservation of {requested / MiB:.1f} MiB refused: "
            f"only {available / MiB:.1f} MiB of the {budget / MiB:.1f} MiB budget is available"
        )


# -- limit detection -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageSample:
    rss: int
    working_set: int | None = None
    psi: MemoryPressure | None = None

    @property
    def usage(self) -> int:
        # Each figure misses something the other counts: the working set adds sibling processes
        # in the cgroup, kernel memory and active page cache; RSS adds pages charged to another
        # cgroup (charged before a move, or shared mappings first touched elsewhere). The larger
        # errs towards shedding early rather than being OOM-killed.
        return self.rss if self.working_set is None else max(self.rss, self.working_set)


# -- the manager ---------------------------------------------------------------


@dataclass(slots=True)
class MemoryConfig:
    memory_fraction: float = 0.8  # of the limit; the rest is headroom for what we cannot see
    interval: float = 0.25  # seconds between samples once the level is elevated or above
    # Seconds between samples at normal (None: 2 x interval). Each sample takes the GIL from the serving
    # thread, which costs it more than the sample itself (measured: ~1 % of stdio throughput at 4/s).
    normal_interval: float | None = None
    elevated: float = 0.70  # fractions of the budget
    high: float = 0.85
    critical: float = 0.95
    hysteresis: float = 0.05  # a level is left only this far (fraction of budget) below its threshold
    psi_some_elevated: float = 20.0  # `some avg10` percent that forces at least ELEVATED
    psi_full_high: float = 10.0  # `full avg10` percent that forces at least HIGH
    reaction_interval: float = 5.0  # seconds between gc/trim rounds while the level stays high
    cgroup_root: Path = field(default_factory=lambda: Path("/sys/fs/cgroup"))
    proc_root: Path = field(default_factory=lambda: Path("/proc"))

    def __post_init__(self) -> None:
        if not 0.0 < self.memory_fraction <= 1.0:
            raise ValueError(f"memory_fraction must be in (0, 1], got {self.memory_fraction}")
        if not 0.0 < self.elevated < self.high < self.critical:
            raise ValueError("thresholds must satisfy 0 < elevated < high < critical")
        if not 0.0 <= self.hysteresis < self.elevated:
            raise ValueError("hysteresis must be in [0, elevated)")
        if self.interval <= 0:
            raise ValueError("interval must be positive")
        if self.normal_interval is not None and self.normal_interval < self.interval:
            raise ValueError("normal_interval must be at least interval")


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    limit: int
    source: LimitSource
    container: bool
    physical: int
    budget: int
    rss: int
    working_set: int | None
    usage: int
    reserved: int
    level: MemoryLevel
    psi: MemoryPressure | None
    reservations_granted: int
    reservations_refused: int
    gc_runs: int
    trims: int  # trimmer calls
    malloc_trims: int
    level_changes: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["level"] = self.level.label
        return data


Listener = Callable[[MemoryLevel, MemoryLevel], None]
Trimmer = Callable[[], object]


class Reservation:
    """Holds `nbytes` of the budget between enter and exit; usable with `with` and `async with`.

    Nothing is reserved until entered, so a reservation that is created but
    never entered cannot leak budget.

    Held bytes count against the budget on top of the sampled usage. Once the
    holder has allocated them they are in the usage too; `resident()` says so,
    and from the next sample on they are counted once, through the usage.
    Without it the reservation stays counted twice until released, which errs
    on the safe side but can shed calls the memory could still serve.
    """

    def __init__(self, manager: MemoryManager, nbytes: int) -> None:
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        self._manager = manager
        self.nbytes = nbytes
        self._held = False
        self._resident = False

    def resident(self) -> None:
        """The reserved bytes are allocated now (in RSS): stop counting them apart from the usage."""
        if self._held and not self._resident:
            self._resident = True
            self._manager._settle(self.nbytes)

    def __enter__(self) -> Reservation:
        if self._held:
            raise RuntimeError("reservation already held")
        self._manager._acquire(self.nbytes)
        self._held = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._held:
            self._held = False
            if not self._resident:
                self._manager._release(self.nbytes)

    # The check is a few arithmetic operations under a lock held only for them, so it is
    # fine on the loop; async is offered so callers can write `async with` in coroutines.
    async def __aenter__(self) -> Reservation:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class MemoryManager:
    """Owns the memory sampler thread, the budget and its reservations.

    `start()` and `stop()` are explicit and idempotent; `stop()` joins the
    thread. Level listeners and trimmers run on the thread that samples — the
    sampler thread once started, or the caller of `refresh()` — so they must be
    cheap, must not block, and must not touch the event loop except through
    `call_soon_threadsafe`.
    """

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        limit: MemoryLimit | None = None,
        usage_fn: Callable[[], UsageSample] | None = None,
        malloc_trim: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or MemoryConfig()
        self.limit = limit or detect_memory_limit(self.config.cgroup_root, self.config.proc_root)
        self.budget = max(1, int(self.limit.limit * self.config.memory_fraction))
        self._usage_fn = usage_fn or self._read_usage
        self._malloc_trim = malloc_trim
        self._malloc_trim_loaded = malloc_trim is not None
        self._clock = clock
        self._process: psutil.Process | None = None
        self._lock = threading.Lock()  # guards the numbers below
        self._tick_lock = threading.RLock()  # one sample/transition at a time; a listener may refresh()
        self._listeners: list[Listener] = []
        self._trimmers: list[Trimmer] = []
        self._reserved = 0
        # Bytes declared resident, still counted until a sample taken after the declaration shows them:
        # (declared at, nbytes), oldest first.
        self._settling: collections.deque[tuple[float, int]] = collections.deque()
        self._settling_bytes = 0
        self._granted = 0
        self._refused = 0
        self._gc_runs = 0
        self._trims = 0
        self._malloc_trims = 0
        self._level_changes = 0
        self._last_reaction: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # A first sample here so reservations and shedding are meaningful before start();
        # the level is set silently because nobody can have subscribed yet.
        self._sample = self._usage_fn()
        self._usage_level = self._usage_level_for(self._ratio(self._sample.usage, 0), MemoryLevel.NORMAL)
        self._level = max(self._usage_level, self._psi_floor(self._sample.psi))

    # -- lifecycle -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bemcp-memory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()

    def _run(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception:  # the sampler must outlive a bad read or a buggy listener
                log.exception("memory sample failed")
            if self._stop.wait(self.period):
                return

    @property
    def period(self) -> float:
        """Seconds until the next sample: longer while the level is normal."""
        cfg = self.config
        if self._level >= MemoryLevel.ELEVATED:
            return cfg.interval
        return cfg.normal_interval if cfg.normal_interval is not None else 2 * cfg.interval

    # -- hot path: no syscalls, no locks -------------------------------------

    @property
    def level(self) -> MemoryLevel:
        return self._level

    def is_critical(self) -> bool:
        return self._level >= MemoryLevel.CRITICAL

    def should_shed(self, read_only: bool, is_health: bool = False) -> str | None:
        """Why a new call must be refused now, or None to admit it.

        At HIGH only calls that may write are shed (reads are cheap and let
        clients see what is going on); at CRITICAL everything but the health
        tool is, so operators can still observe the server.
        """
        level = self._level
        if level >= MemoryLevel.CRITICAL:
            return None if is_health else "memory_pressure"
        if level >= MemoryLevel.HIGH and not read_only and not is_health:
            return "memory_pressure"
        return None

    def admit(self, read_only: bool, is_health: bool = False) -> bool:
        return self.should_shed(read_only, is_health) is None

    # -- registration --------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(old, new)` on each level change, on the sampling thread."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.remove(listener)

    def add_trimmer(self, trimmer: Trimmer) -> None:
        """Call `trimmer()` to drop caches when memory is high, on the sampling thread."""
        with self._lock:
            self._trimmers.append(trimmer)

    def remove_trimmer(self, trimmer: Trimmer) -> None:
        with self._lock:
            self._trimmers.remove(trimmer)

    # -- reservations --------------------------------------------------------

    def reserve(self, nbytes: int) -> Reservation:
        """`async with manager.reserve(n):` — raises MemoryBudgetExceeded at once when it does not fit."""
        return Reservation(self, nbytes)

    def reserve_sync(self, nbytes: int) -> Reservation:
        """`with manager.reserve_sync(n):` for worker threads; same rules as `reserve`."""
        return Reservation(self, nbytes)

    @property
    def reserved(self) -> int:
        """Bytes counted against the budget apart from the usage: held, or resident but not yet sampled."""
        return self._reserved + self._settling_bytes

    def _acquire(self, nbytes: int) -> None:
        # Uses the last sample rather than a fresh read: this runs on the event loop.
        with self._lock:
            available = max(0, self.budget - self._sample.usage - self._reserved - self._settling_bytes)
            if nbytes > available:
                self._refused += 1
                raise MemoryBudgetExceeded(nbytes, available, self.budget)
            self._reserved += nbytes
            self._granted += 1

    def _release(self, nbytes: int) -> None:
        with self._lock:
            self._reserved -= nbytes

    def _settle(self, nbytes: int) -> None:
        with self._lock:
            self._reserved -= nbytes
            self._settling.append((self._clock(), nbytes))
            self._settling_bytes += nbytes

    # -- sampling and levels -------------------------------------------------

    def refresh(self) -> MemorySnapshot:
        """Take one sample, update the level (notifying listeners) and react; returns the snapshot."""
        with self._tick_lock:
            taken = self._clock()
            sample = self._usage_fn()
            with self._lock:
                self._sample = sample
                settling = self._settling
                while settling and settling[0][0] < taken:  # this sample shows them in the usage
                    self._settling_bytes -= settling.popleft()[1]
                ratio = self._ratio(sample.usage, self._reserved + self._settling_bytes)
                self._usage_level = self._usage_level_for(ratio, self._usage_level)
                old, new = self._level, max(self._usage_level, self._psi_floor(sample.psi))
                self._level = new
                if new != old:
                    self._level_changes += 1
                listeners = list(self._listeners)
            if new != old:
                self._announce(old, new, ratio, sample, listeners)
            if new >= MemoryLevel.HIGH:
                self._maybe_react(entered=old < MemoryLevel.HIGH)
        return self.snapshot()

    def _ratio(self, usage: int, reserved: int) -> float:
        return (usage + reserved) / self.budget

    def _usage_level_for(self, ratio: float, previous: MemoryLevel) -> MemoryLevel:
        cfg = self.config
        thresholds = {
            MemoryLevel.ELEVATED: cfg.elevated,
            MemoryLevel.HIGH: cfg.high,
            MemoryLevel.CRITICAL: cfg.critical,
        }
        raw = MemoryLevel.NORMAL
        for level, threshold in thresholds.items():
            if ratio >= threshold:
                raw = level
        if raw >= previous:
            return raw
        # Going down one level at a time, each only once usage is clearly below its threshold,
        # so usage hovering at a threshold does not flap the level (and shedding) every sample.
        level = previous
        while level > raw and ratio < thresholds[level] - cfg.hysteresis:
            level = MemoryLevel(level - 1)
        return level

    def _psi_floor(self, psi: MemoryPressure | None) -> MemoryLevel:
        # Stalls mean the kernel is already reclaiming hard, whatever our own numbers say
        # (page cache of neighbours, swap, a limit we could not see).
        if psi is None:
            return MemoryLevel.NORMAL
        if psi.full is not None and psi.full.avg10 > self.config.psi_full_high:
            return MemoryLevel.HIGH
        if psi.some.avg10 > self.config.psi_some_elevated:
            return MemoryLevel.ELEVATED
        return MemoryLevel.NORMAL

    def _announce(
        self, old: MemoryLevel, new: MemoryLevel, ratio: float, sample: UsageSample, listeners: list[Listener]
    ) -> None:
        log.log(
            logging.WARNING if new >= MemoryLevel.HIGH else logging.INFO,
            "memory level %s -> %s (%.0f%% of %.1f MiB budget, usage %.1f MiB, reserved %.1f MiB)",
            old.label,
            new.label,
            ratio * 100,
            self.budget / MiB,
            sample.usage / MiB,
            (self._reserved + self._settling_bytes) / MiB,
        )
        for listener in listeners:
            try:
                listener(old, new)
            except Exception:
                log.exception("memory level listener failed")

    def _maybe_react(self, *, entered: bool) -> None:
        now = self._clock()
        last = self._last_reaction
        if not entered and last is not None and now - last < self.config.reaction_interval:
            return
        self._last_reaction = now
        self.reclaim()

    def reclaim(self) -> None:
        """Free what can be freed: a full gc, then registered trimmers, then malloc_trim."""
        gc.collect()
        with self._lock:
            self._gc_runs += 1
            trimmers = list(self._trimmers)
        for trimmer in trimmers:
            try:
                trimmer()
            except Exception:
                log.exception("memory trimmer failed")
            with self._lock:
                self._trims += 1
        # gc returns freed blocks to the allocator, not to the OS; malloc_trim hands glibc's
        # free arena pages back so RSS (and the cgroup charge) actually drops.
        trim = self._load_malloc_trim()
        if trim is not None:
            trim()
            with self._lock:
                self._malloc_trims += 1

    def _load_malloc_trim(self) -> Callable[[], object] | None:
        if not self._malloc_trim_loaded:
            self._malloc_trim_loaded = True
            self._malloc_trim = _glibc_malloc_trim()
        return self._malloc_trim

    def _read_usage(self) -> UsageSample:
        if self._process is None:
            self._process = psutil.Process()
        rss = self._process.memory_info().rss
        working_set = read_working_set(self.limit) if self.limit.container else None
        return UsageSample(rss, working_set, read_pressure(self.limit, self.config.proc_root))

    def snapshot(self) -> MemorySnapshot:
        """The last sample and counters; no syscalls."""
        with self._lock:
            s = self._sample
            return MemorySnapshot(
                limit=self.limit.limit,
                source=self.limit.source,
                container=self.limit.container,
                physical=self.limit.physical,
                budget=self.budget,
                rss=s.rss,
                working_set=s.working_set,
                usage=s.usage,
                reserved=self._reserved + self._settling_bytes,
                level=self._level,
                psi=s.psi,
                reservations_granted=self._granted,
                reservations_refused=self._refused,
                gc_runs=self._gc_runs,
                trims=self._trims,
                malloc_trims=self._malloc_trims,
                level_changes=self._level_changes,
            )


def _glibc_malloc_trim() -> Callable[[], object] | None:
    """`malloc_trim(0)` from glibc, or None on musl, macOS and anything else without it."""
    if platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: fn(0)
