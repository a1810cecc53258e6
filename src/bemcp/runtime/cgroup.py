"""What the kernel says about this process's memory: the binding cgroup limit, the working set and PSI.

A server in a container is killed by the kernel when its cgroup passes `memory.max` (v2) or
`memory.limit_in_bytes` (v1), whatever the host has free, so the limit is the tightest one above the process,
falling back to physical RAM when there is none. Everything here only reads files under roots the caller can
point at a fake tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import psutil

# cgroup v1 reports "no limit" as PAGE_COUNTER_MAX rounded to pages (9223372036854771712 on 4 KiB
# pages); anything this large cannot be a real limit on any machine.
_V1_UNLIMITED = 1 << 62

LimitSource = Literal["cgroup2", "cgroup1", "physical", "configured"]


@dataclass(frozen=True, slots=True)
class MemoryLimit:
    limit: int  # bytes; never above `physical`
    source: LimitSource
    container: bool  # True when a cgroup limit (not the machine) is what binds
    physical: int  # bytes of RAM in the machine
    cgroup_dir: Path | None = None  # the cgroup whose limit binds; its usage is read for the working set


def detect_memory_limit(
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    proc_root: Path = Path("/proc"),
    *,
    physical: int | None = None,
) -> MemoryLimit:
    """Find the memory limit that applies to this process.

    Pure apart from reading files under the two roots (and psutil when
    `physical` is not given), so tests can point it at a fake tree.
    """
    ram = physical if physical is not None else psutil.virtual_memory().total
    v2_path, v1_path = parse_proc_cgroup(_read_text(proc_root / "self" / "cgroup") or "")
    candidates: list[tuple[LimitSource, tuple[int, Path] | None]] = []
    # Hybrid hosts list both; the memory controller then lives on v1 and v2 has none, so v1 first.
    if v1_path is not None:
        candidates.append(("cgroup1", _min_limit(cgroup_root / "memory", v1_path, "memory.limit_in_bytes")))
    if v2_path is not None:
        base = cgroup_root if (cgroup_root / "cgroup.controllers").exists() else cgroup_root / "unified"
        candidates.append(("cgroup2", _min_limit(base, v2_path, "memory.max")))
    for source, found in candidates:
        # A cgroup limit above the machine's RAM never binds: the machine runs out first.
        if found is not None and found[0] <= ram:
            return MemoryLimit(found[0], source, True, ram, found[1])
    return MemoryLimit(ram, "physical", False, ram)


def parse_proc_cgroup(text: str) -> tuple[str | None, str | None]:
    """(`0::` v2 path, v1 memory-controller path) from /proc/<pid>/cgroup."""
    v2: str | None = None
    v1: str | None = None
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _min_limit(base: Path, cgroup_path: str, filename: str) -> tuple[int, Path] | None:
    """The smallest finite limit from the process's cgroup up to the mount root.

    Limits are hierarchical: a child may declare more than its parent allows,
    and the parent's limit is the one the kernel enforces.
    """
    best: tuple[int, Path] | None = None
    for directory in _ancestors(base, cgroup_path):
        value = _parse_limit(_read_text(directory / filename))
        if value is not None and (best is None or value < best[0]):
            best = (value, directory)
    return best


def _ancestors(base: Path, cgroup_path: str) -> list[Path]:
    """`base/<path>` and each parent up to `base`, leaf first; missing directories are skipped.

    Inside a container without a cgroup namespace, /proc shows the host path
    while the mount root is the container's own cgroup; the host path's
    directories are then missing and the walk ends at the mount root, which is
    the right cgroup. A path with `..` (the process sits outside its cgroup
    namespace) cannot be mapped under the mount, so only the root is used.
    """
    parts = [p for p in PurePosixPath(cgroup_path).parts if p not in ("/", ".")]
    if ".." in parts:
        parts = []
    dirs = [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
    return [d for d in dirs if d.is_dir()]


def _parse_limit(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _V1_UNLIMITED or value <= 0 else value


def _read_int(path: Path) -> int | None:
    try:
        return int((_read_text(path) or "").strip())
    except ValueError:
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


# -- usage and pressure --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PsiLine:
    avg10: float  # percent of wall time stalled, averaged over 10 s
    avg60: float
    avg300: float
    total: int  # microseconds stalled since boot


@dataclass(frozen=True, slots=True)
class MemoryPressure:
    some: PsiLine  # at least one task stalled on memory
    full: PsiLine | None  # every non-idle task stalled at once


def parse_psi(text: str) -> MemoryPressure | None:
    """Parse a PSI file (`some avg10=… avg60=… avg300=… total=…` and `full …`)."""
    lines: dict[str, PsiLine] = {}
    for line in text.splitlines():
        kind, _, rest = line.strip().partition(" ")
        fields = dict(token.split("=", 1) for token in rest.split() if "=" in token)
        try:
            lines[kind] = PsiLine(
                float(fields.get("avg10", 0.0)),
                float(fields.get("avg60", 0.0)),
                float(fields.get("avg300", 0.0)),
                int(fields.get("total", 0)),
            )
        except ValueError:
            continue
    some = lines.get("some")
    return None if some is None else MemoryPressure(some, lines.get("full"))


def read_pressure(limit: MemoryLimit, proc_root: Path = Path("/proc")) -> MemoryPressure | None:
    """The cgroup's own PSI on v2 when it has one, else the system-wide file.

    System-wide PSI also counts stalls of other tenants on a shared host, so
    the cgroup's own file is preferred when the kernel provides it.
    """
    if limit.source == "cgroup2" and limit.cgroup_dir is not None:
        text = _read_text(limit.cgroup_dir / "memory.pressure")
        if text is not None:
            return parse_psi(text)
    text = _read_text(proc_root / "pressure" / "memory")
    return None if text is None else parse_psi(text)


def parse_memory_stat(text: str) -> dict[str, int]:
    stats: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            stats[key] = int(value)
        except ValueError:
            continue
    return stats


def read_working_set(limit: MemoryLimit) -> int | None:
    """Cgroup usage minus inactive page cache, the number container runtimes evict and OOM on.

    Inactive file pages are reclaimed before the OOM killer runs, so counting
    them would make a cache-heavy but healthy container look full.
    """
    directory = limit.cgroup_dir
    if directory is None:
        return None
    inactive_keys: tuple[str, ...]
    if limit.source == "cgroup2":
        usage = _read_int(directory / "memory.current")
        inactive_keys = ("inactive_file",)
    else:
        usage = _read_int(directory / "memory.usage_in_bytes")
        inactive_keys = ("total_inactive_file", "inactive_file")
    if usage is None:
        return None
    stats = parse_memory_stat(_read_text(directory / "memory.stat") or "")
    inactive = next((stats[k] for k in inactive_keys if k in stats), 0)
    return max(0, usage - inactive)
