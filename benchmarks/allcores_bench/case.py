"""The registry of benchmark cases: what each measures, for which libraries, at which sizes.

A case is a function run in a fresh child process for one library; it returns a dict of figures
(numbers), one of which is the case's headline (`figure`). It may also return figures for
companion rows under "also" (the CPU case reports the serial and "ideal" rows it measured next to
the library's). Cases register themselves with @case in the modules named in MODULES, which the
parent and every child import, so new cases come by adding a module there:

    @case("counter", "shared counter, 2 x 1M increments", figure="mops", unit="M/s",
          lower_is_better=False, libs=["allcores", "multiprocessing"], params={"n": 1_000_000},
          quick={"n": 100_000})
    def counter(lib, workers, p): ...
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field

# Modules holding @case definitions, imported in this order (the order of the tables).
# ALLCORES_BENCH_CASES (comma-separated module names) adds more, for cases kept outside the
# package (a user's own workload, the tests' misbehaving cases).
MODULES = ["allcores_bench.pool_cases", "allcores_bench.scaling_cases",
           "allcores_bench.transfer_cases", "allcores_bench.counter_cases",
           "allcores_bench.backend_cases", "allcores_bench.gil_cases",
           "allcores_bench.interp_cases", "allcores_bench.thread_cases"]


class Skip(Exception):
    """The row cannot run here (a library without the verb, a missing /proc file)."""


@dataclass
class Case:
    name: str
    title: str
    figure: str                # the key of the headline figure in the returned dict
    unit: str
    lower_is_better: bool
    libs: list
    params: dict
    quick: dict = field(default_factory=dict)   # overrides of params for --quick
    columns: list = field(default_factory=list)  # extra figures shown: (key, header, format)
    fn: object = None
    labels: dict = field(default_factory=dict)   # row names shown instead of the libraries'
    reps: int | None = None      # repetitions of this case (None: the run's); a slow sweep says 1
    min_python: tuple = ()       # e.g. (3, 12): its rows run under such a Python (pythons.py)
    free_threaded: bool = False  # its rows run under a free-threaded Python with the GIL off

    def params_for(self, quick):
        return dict(self.params, **(self.quick if quick else {}))


CASES: dict[str, Case] = {}
UNAVAILABLE: dict[str, str] = {}  # case modules of MODULES that did not import, and why


def case(name, title, *, figure, unit, lower_is_better, libs, params, quick=None, columns=(),
         labels=None, reps=None, min_python=(), free_threaded=False):
    def register(fn):
        CASES[name] = Case(name, title, figure, unit, lower_is_better, list(libs), dict(params),
                           dict(quick or {}), list(columns), fn, dict(labels or {}), reps,
                           tuple(min_python), free_threaded)
        return fn
    return register


def load():
    """Import every case module; returns the registry."""
    extra = [m for m in os.environ.get("ALLCORES_BENCH_CASES", "").split(",") if m]
    for module in MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:  # a part of allcores not built in this installation
            UNAVAILABLE[module] = str(exc)
    for module in extra:  # asked for by name: a typo must not pass silently
        importlib.import_module(module)
    return CASES
