"""The machine a figure came from, and where the CPU went during a phase.

On a 2-core machine the service, Postgres, RabbitMQ and the load generator all share the same cores, so a throughput
figure is only explained by saying who used them: the per-component CPU breakdown is the cheapest "profile" there is.
"""
from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import psutil

# System services recognised by process name; everything the bench launched is recognised by its session id.
SERVICE_NAMES = {"postgres": "postgres", "beam.smp": "rabbitmq", "erl_child_setup": "rabbitmq", "epmd": "rabbitmq",
                 "inet_gethost": "rabbitmq", "redis-server": "redis", "py-spy": "py-spy"}


def describe_machine() -> dict[str, str]:
    """nproc, CPU model and RAM, as printed with every result."""
    model = "unknown"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    ram_gib = psutil.virtual_memory().total / 2**30
    return {"nproc": str(os.cpu_count() or 0), "cpu": model, "ram": f"{ram_gib:.1f} GiB",
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy_s: float  # all cores, from /proc/stat
    per_process: dict[tuple[int, float], tuple[str, float]] = field(default_factory=dict)  # (pid, ctime) → (group, s)


@dataclass(frozen=True)
class CpuBreakdown:
    wall_s: float
    cores_busy: float
    by_group: dict[str, float]  # group → cores used on average over the window

    def describe(self) -> str:
        parts = ", ".join(f"{name} {cores:.2f}" for name, cores in
                          sorted(self.by_group.items(), key=lambda item: -item[1]) if cores >= 0.01)
        return f"{self.cores_busy:.2f} of {os.cpu_count()} cores busy — {parts}"


def background_load(seconds: float = 1.0) -> float:
    """Cores busy before the bench starts anything: other work on the machine skews every figure, so it is
    reported (a shared 2-core box is rarely idle)."""
    start_busy, start = _busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (_busy_seconds() - start_busy) / (time.monotonic() - start)


def _busy_seconds() -> float:
    with open("/proc/stat", encoding="utf-8") as stat:
        fields = [float(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _launched_label(proc: psutil.Process, sessions: Mapping[int, str]) -> str | None:
    try:
        return sessions.get(os.getsid(proc.pid))
    except OSError:
        return None


def snapshot(sessions: Mapping[int, str]) -> CpuSnapshot:
    """CPU seconds of every process, grouped by what it is. For the processes the bench launched, reaped children
    count too (the worker's short-lived handler processes); for anything else they do not, because a process that
    reaps a long-lived child would book that child's whole lifetime into the window."""
    per_process: dict[tuple[int, float], tuple[str, float]] = {}
    for proc in psutil.process_iter():
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                used = times.user + times.system
                label = _launched_label(proc, sessions)
                if label is not None:
                    used += times.children_user + times.children_system
                elif proc.pid == os.getpid():
                    label = "bench process"
                group = label or SERVICE_NAMES.get(proc.name(), "other")
                per_process[(proc.pid, proc.create_time())] = (group, used)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return CpuSnapshot(wall=time.monotonic(), busy_s=_busy_seconds(), per_process=per_process)


def breakdown(before: CpuSnapshot, after: CpuSnapshot, extra_s: Mapping[str, float] | None = None) -> CpuBreakdown:
    """Average cores used per group between two snapshots; `extra_s` adds processes that ended in between (wrk)."""
    wall = max(after.wall - before.wall, 1e-9)
    used: dict[str, float] = {}
    for key, (group, seconds) in after.per_process.items():
        previous = before.per_process.get(key, (group, 0.0))[1]
        used[group] = used.get(group, 0.0) + max(0.0, seconds - previous)
    for group, seconds in (extra_s or {}).items():
        used[group] = used.get(group, 0.0) + seconds
    return CpuBreakdown(wall_s=wall, cores_busy=(after.busy_s - before.busy_s) / wall,
                        by_group={group: seconds / wall for group, seconds in used.items()})
