"""What a result needs to be read later: the machine, the Python, the load, the packages."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

PACKAGES = ("allcores", "loky", "joblib", "mpire", "cloudpickle", "numpy", "psutil")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _git_commit():
    """The commit of the checkout the bench runs from (make bench runs in the repository)."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def describe():
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / (1 << 20)
    except (OSError, ValueError, IndexError):
        mem_gib = None
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "cores_usable": usable,
        "mem_gib": mem_gib, "platform": platform.platform(),
        "python": platform.python_version(), "implementation": platform.python_implementation(),
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "loadavg": list(os.getloadavg()), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                        time.gmtime()),
        "git": _git_commit(), "packages": {name: _version(name) for name in PACKAGES},
    }
