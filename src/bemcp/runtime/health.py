"""`HealthSnapshot`: the runtime at one moment, built from its parts' snapshots.

`server_health` and `/metrics` both read their call figures (admitted,
refused by reason, in flight, queued, completed) from this one snapshot, so
they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bemcp.runtime.admission import AdmissionSnapshot
from bemcp.runtime.memory import MemoryLevel, MemorySnapshot
from bemcp.runtime.registry import RegistrySnapshot
from bemcp.runtime.tasklog import TaskLogSnapshot
from bemcp.runtime.watchdog import WatchdogSnapshot


def rejections(*counts: Mapping[str, int]) -> dict[str, int]:
    """Refusals by reason, summed over whoever refused: admission, the sheds before it (draining, memory), the
    refusals after it (workers_exhausted). A refused call is counted once, by the part that refused it."""
    out: dict[str, int] = {}
    for part in counts:
        for reason, n in part.items():
            out[reason] = out.get(reason, 0) + int(n)
    return out


@dataclass(frozen=True, slots=True)
class SyncThreads:
    workers: int
    running: int
    abandoned: int  # threads whose call is already answered


@dataclass(frozen=True, slots=True)
class TasksSnapshot:
    """The MCP tasks this process runs (see bemcp.tasks.runner): None in health when it runs none."""

    store: str  # sqlite | redis | memory
    worker: str
    working: int  # unfinished here, running or waiting for a slot
    input_required: int  # unfinished here, waiting for the client
    max_tasks: int
    counts: dict[str, int]  # since start: created, completed, failed, cancelled, refused, resumed, interrupted

    def to_wire(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "worker": self.worker,
            "working": self.working,
            "input_required": self.input_required,
            "max_tasks": self.max_tasks,
            **self.counts,
        }


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    status: str  # ok | degraded (memory high) | draining
    ready: bool
    uptime_s: float
    admission: AdmissionSnapshot
    calls: RegistrySnapshot
    rejected: dict[str, int]
    memory: MemorySnapshot
    watchdog: WatchdogSnapshot
    task_log: TaskLogSnapshot
    sync_threads: SyncThreads
    loop_tasks: int | None
    pid: int
    tasks: TasksSnapshot | None = None

    @property
    def in_flight(self) -> int:
        return self.calls.in_flight

    @property
    def limit(self) -> int:
        return self.admission.limit

    @property
    def queued(self) -> int:
        return self.admission.queued

    @property
    def admitted(self) -> int:
        return self.admission.admitted

    def to_wire(self, exclude_caller: bool = False) -> dict[str, Any]:
        """What `server_health` answers; `exclude_caller`: the asking call is in flight, count only the others."""
        mem = self.memory
        return {
            "status": self.status,
            "ready": self.ready,
            "uptime_s": round(self.uptime_s, 3),
            "limit": self.limit,
            "in_flight": self.in_flight - (1 if exclude_caller else 0),
            "queued": self.queued,
            "admitted": self.admitted,
            "rejected": dict(self.rejected),
            "completed": dict(self.calls.completed),
            "memory": {
                "limit_bytes": mem.limit,
                "source": mem.source,
                "container": mem.container,
                "budget_bytes": mem.budget,
                "rss_bytes": mem.rss,
                "usage_bytes": mem.usage,
                "reserved_bytes": mem.reserved,
                "level": MemoryLevel(mem.level).label,
            },
            "loop_lag_ms": self.watchdog.loop_lag_ms,
            "watchdog": self.watchdog.to_dict(),
            "sync_threads": {
                "workers": self.sync_threads.workers,
                "running": self.sync_threads.running,
                "abandoned": self.sync_threads.abandoned,
            },
            "abandoned": {
                "calls": self.calls.abandoned.calls,
                "total": self.calls.abandoned.total,
                "tools": list(self.calls.abandoned.tools),
            },
            "task_log": {"enabled": self.task_log.enabled, "dropped": self.task_log.dropped},
            "loop_tasks": self.loop_tasks,
            "pid": self.pid,
            "tasks": self.tasks.to_wire() if self.tasks is not None else None,
        }
