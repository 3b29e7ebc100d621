"""How many CPUs this process may use: the default worker count of a process pool.

os.cpu_count() counts the machine's CPUs. A process may be allowed fewer: its affinity mask
(taskset, cpusets, a scheduler's allocation) and its cgroup's CPU quota (a container started with
--cpus=2, a systemd unit with CPUQuota=). One worker per usable CPU is what keeps every core busy
without workers taking turns on the same ones. Read each time it is asked: affinity and quotas
change while a process runs.
"""
from __future__ import annotations

import math
import os

CGROUP_ROOT = "/sys/fs/cgroup"


def parse_cpu_max(text: str) -> float | None:
    """The CPUs a cgroup v2 `cpu.max` file allows ("QUOTA PERIOD" in microseconds, QUOTA "max"
    for no limit; PERIOD defaults to 100000), or None for no limit or an unreadable line."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """The CPUs a cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us pair allows (quota -1: none)."""
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _own_cgroup_v2(root: str) -> str | None:
    """The folder of this process's cgroup v2 under root (from /proc/self/cgroup's "0::" line)."""
    text = _read("/proc/self/cgroup")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            path = os.path.join(root, line[3:].strip().lstrip("/"))
            return os.path.normpath(path)
    return None


def cgroup_cpu_limit(root: str = CGROUP_ROOT) -> tuple[float, str] | None:
    """The smallest CPU quota over this process's cgroup and its ancestors, and the file that set
    it; None when no quota applies (or cgroups are not mounted)."""
    best: tuple[float, str] | None = None
    here = _own_cgroup_v2(root)
    if here is not None:
        # A parent's quota caps its children's: the tightest one along the path counts. Inside a
        # container the process's cgroup is the namespace's root, so the walk starts there.
        root = os.path.normpath(root)
        while True:
            path = os.path.join(here, "cpu.max")
            text = _read(path)
            limit = parse_cpu_max(text) if text is not None else None
            if limit is not None and (best is None or limit < best[0]):
                best = (limit, path)
            if here == root or not here.startswith(root + os.sep):
                break
            here = os.path.dirname(here)
    if best is None:
        for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            base = os.path.join(root, sub)
            quota = _read(os.path.join(base, "cpu.cfs_quota_us"))
            period = _read(os.path.join(base, "cpu.cfs_period_us"))
            if quota is not None and period is not None:
                limit = parse_cfs(quota, period)
                if limit is not None:
                    best = (limit, os.path.join(base, "cpu.cfs_quota_us"))
                break
    return best


def usable_cpus() -> tuple[int, str]:
    """(count, where it came from): the fewest of the machine's CPUs, the affinity mask and the
    cgroup quota (rounded up: a quota of 1.5 CPUs keeps 2 workers busy part of the time)."""
    count = os.cpu_count() or 1
    source = "the machine's CPU count"
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = count
    if affinity < count:
        count, source = affinity, "the CPU affinity mask (sched_getaffinity)"
    limit = cgroup_cpu_limit()
    if limit is not None:
        quota = max(1, math.ceil(limit[0]))
        if quota < count:
            count, source = quota, f"the cgroup CPU quota ({limit[1]}: {limit[0]:g} CPUs)"
    return max(1, count), source


def default_workers() -> int:
    """The worker count of a process pool created without one."""
    return usable_cpus()[0]
