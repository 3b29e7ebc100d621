"""Which Python runs a case's rows. Most run under the bench's own; a case that needs a newer one
(the interpreter backend: 3.12+) runs under a sibling virtual environment the Makefile builds
(.venv-3.13, .venv-3.12 beside .venv), so that one `make bench` on .venv (3.11) measures it too;
a case that needs a free-threaded build runs under .venv-3.13t with its GIL off.
ALLCORES_BENCH_PYTHON names another interpreter (with allcores and psutil installed)."""
from __future__ import annotations

import functools
import os
import pathlib
import subprocess
import sys

from . import spawn

NEWER = ("3.14", "3.13", "3.12")  # preferred first
FREE_THREADED = ("3.14t", "3.13t")


def _candidates(versions=NEWER):
    if os.environ.get("ALLCORES_BENCH_PYTHON"):
        yield os.environ["ALLCORES_BENCH_PYTHON"]
    here = pathlib.Path(sys.prefix)
    for v in versions:
        for base in (here.parent, pathlib.Path.cwd()):
            yield str(base / f".venv-{v}" / "bin" / "python")


@functools.lru_cache(maxsize=None)
def _version(python):
    """(major, minor, 'X.Y.Z', GIL off after importing allcores) of a Python that can run the
    bench's rows, or None."""
    if not os.access(python, os.X_OK):
        return None
    try:
        out = subprocess.run([python, "-c", "import platform, sys, allcores_bench.child, psutil; "
                              "print(platform.python_version(), "
                              "not getattr(sys, '_is_gil_enabled', lambda: True)())"],
                             capture_output=True, text=True, timeout=60, env=spawn.env())
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    text, gil_off = out.stdout.split()
    major, minor = map(int, text.split(".")[:2])
    return major, minor, text, gil_off == "True"


def _gil_off_here():
    return not getattr(sys, "_is_gil_enabled", lambda: True)()


def python_for(case):
    """(executable, version text) for the case's rows, or (None, why not)."""
    if case.free_threaded:
        if _gil_off_here():
            return sys.executable, None
        for python in _candidates(FREE_THREADED):
            v = _version(python)
            if v and v[3]:
                return python, v[2] + " free-threaded"
        return None, (f"needs a free-threaded Python with its GIL off (this is "
                      f"{sys.version.split()[0]} with a GIL), and no .venv-3.13t with allcores "
                      f"was found beside {sys.prefix} (make .venv-3.13t/.built builds one "
                      f"where tools/get-python 3.13t provides the interpreter)")
    if not case.min_python or sys.version_info[:2] >= case.min_python:
        return sys.executable, None
    need = ".".join(map(str, case.min_python))
    for python in _candidates():
        v = _version(python)
        if v and v[:2] >= case.min_python:
            return python, v[2]
    return None, (f"needs Python {need}+ (this is {sys.version.split()[0]}), and no "
                  f".venv-3.13 or .venv-3.12 with allcores was found beside {sys.prefix} "
                  f"(make .venv-3.13/.built builds one; ALLCORES_BENCH_PYTHON names another)")
