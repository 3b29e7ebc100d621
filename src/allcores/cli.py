"""The allcores command line: demo, bench, doctor, info."""
from __future__ import annotations

import os
import platform
import sys

USAGE = """allcores <command> [args]

commands:
  demo                       threads vs processes vs allcores on this machine
  bench [--quick] [--json F] allcores against its peers
  doctor [opts] script.py    run a program under the GIL meter and explain its core use
  info                       version, backends, cores, Python, GIL build, what backend='auto' picks
"""


def info() -> int:
    import allcores
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"allcores {allcores.__version__}")
    print(f"python   {platform.python_implementation()} {platform.python_version()} "
          f"({'GIL enabled' if gil else 'free-threaded, GIL disabled'})")
    print(f"cores    {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})")
    backends = ["process", "thread"]
    if sys.version_info >= (3, 12):
        backends.append("interpreter")
    try:
        import dask.distributed  # noqa: F401
        backends.append("dask")
    except ImportError:
        pass
    print(f"backends {', '.join(backends)}")
    from ._backends import default_thread_workers, python_in_parallel
    print(f"threads  backend='thread' workers "
          f"{'run Python in parallel' if python_in_parallel() else 'take turns holding the GIL'}"
          f" ({default_thread_workers()} by default)")
    from ._backends import choose_auto
    picked, why = choose_auto()
    print(f"auto     backend='auto' picks {picked!r}: {why}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "info":
        return info()
    if cmd == "demo":
        from . import demo
        return demo.main(rest)
    if cmd == "bench":
        from . import bench
        return bench.main(rest)
    if cmd == "doctor":
        from .gil import doctor
        return doctor.main(rest)
    print(f"allcores: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2
