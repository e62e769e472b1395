"""How many CPUs this process may really use: the affinity mask, capped by a container's CPU quota.

Inside a container `os.cpu_count()` and the affinity mask both report the host's cores, while
`docker run --cpus` or a Kubernetes limit sets a CFS quota; sizing thread pools or process
counts from the host's cores then oversubscribes the CPU (tensorflow/tensorflow#17206).
"""

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup's CFS quota (v2 `cpu.max`, or v1 `cpu.cfs_*`); None when unlimited."""
    v2 = root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    v1_quota, v1_period = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
    if v1_quota.is_file() and v1_period.is_file():
        microseconds = int(v1_quota.read_text())  # -1: unlimited
        return None if microseconds < 0 else microseconds / int(v1_period.read_text())
    return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process may use: its affinity mask, capped by the CPU quota (at least 1)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota = cgroup_cpu_quota(root)
    except (OSError, ValueError):  # an unreadable or odd cgroup file means "no quota we can honour"
        quota = None
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)
