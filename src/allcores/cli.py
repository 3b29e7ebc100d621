"""The allcores command line: demo, bench, doctor, info."""
from __future__ import annotations

import os
import platform
import sys

USAGE = """usage: allcores <command> [args]
       allcores --version

commands:
  demo                       threads vs processes vs allcores on this machine
  bench [--quick] [--json F] allcores against its peers
  doctor [opts] script.py    run a program under the GIL meter and explain its core use
  info                       version, backends, usable CPUs, Python, GIL build, what backend='auto' picks

`allcores <command> --help` describes a command.
"""

INFO_USAGE = """usage: allcores info

Prints allcores' version, the Python it runs on (and whether its GIL is enabled), the CPUs a
pool started here would use by default and where that figure comes from (the machine, the CPU
affinity mask or the cgroup CPU quota), how far a pool's shared arena may grow and the largest
payload it carries, the backends available, how backend='thread' runs and what
backend='auto' picks and why.
"""


def _version() -> str:
    import allcores
    return str(allcores.__version__)


def info(argv: list[str] | None = None) -> int:
    argv = argv or []
    if argv and argv[0] in ("-h", "--help"):
        print(INFO_USAGE)
        return 0
    if argv:
        print(f"allcores info: unexpected argument {argv[0]!r}\n\n{INFO_USAGE}", file=sys.stderr)
        return 2
    from ._cpus import usable_cpus
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"allcores {_version()}")
    print(f"python   {platform.python_implementation()} {platform.python_version()} "
          f"({'GIL enabled' if gil else 'free-threaded, GIL disabled'})")
    usable, source = usable_cpus()
    print(f"cores    {usable} usable, from {source}; the machine has {os.cpu_count()}")
    print(f"workers  {usable} by default (Pool(), ProcessPoolExecutor(), allcores.map)")
    from . import _arena_size, _engine
    print(f"arena    {_arena_size.describe(_engine.ARENA_BYTES)}")
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


# The commands whose code lives in the repository beside the package, not in the installed
# package: (the folder of a checkout that holds it, the module there).
TOOLS = {"bench": ("benchmarks", "allcores_bench"), "demo": ("demo", "allcores_demo")}


def _checkout_tool(cmd: str):
    """The module of a checkout's tool, from the checkout that holds the current directory;
    None, once said why, when there is none."""
    import importlib
    folder, module = TOOLS[cmd]
    here = os.getcwd()
    while True:
        where = os.path.join(here, folder)
        if os.path.isfile(os.path.join(here, "pyproject.toml")) and (
                os.path.isfile(os.path.join(where, module + ".py"))
                or os.path.isfile(os.path.join(where, module, "__init__.py"))):
            break
        if os.path.dirname(here) == here:
            print(f"allcores {cmd}: this command runs from a checkout of the allcores source "
                  f"(git clone or the sdist), where it is kept in {folder}/: run it in that "
                  f"folder or below, or `make {cmd}` there", file=sys.stderr)
            return None
        here = os.path.dirname(here)
    if where not in sys.path:
        sys.path.insert(0, where)
    return importlib.import_module(module)


def _doctor_outputs(argv: list[str]) -> list[tuple[str, str]]:
    """The (option, path) pairs of --html and --json among the doctor's own options (those before
    the script or -m)."""
    found = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-m" or not a.startswith("-") or a == "-":
            break
        key, eq, val = a.partition("=")
        if key in ("--html", "--json", "--interval"):
            if not eq:
                if i + 1 >= len(argv):
                    break  # the doctor says what is missing
                val = argv[i + 1]
                i += 1
            if key != "--interval":
                found.append((key, val))
        i += 1
    return found


def _unwritable(path: str) -> str | None:
    """Why a report cannot be written at path, or None when it can be."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"{path} is a folder"
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return None


def doctor(argv: list[str]) -> int:
    # The output files are checked before the program runs: a report that cannot be written
    # should not cost a whole run, and the exit status must stay the program's own.
    for option, path in _doctor_outputs(argv):
        why = _unwritable(path)
        if why is not None:
            print(f"allcores doctor: cannot write {option} {path}: {why}", file=sys.stderr)
            return 2
    from .gil import doctor
    return doctor.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version", "version"):
        print(f"allcores {_version()}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "info":
        return info(rest)
    if cmd in TOOLS:
        tool = _checkout_tool(cmd)
        return 2 if tool is None else tool.main(rest)
    if cmd == "doctor":
        return doctor(rest)
    print(f"allcores: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2
