"""The shared counter: 2 fork processes x N increments of one
counter: allcores.Counter (one atomic add per `c += 1`) against multiprocessing.Value under its
lock, with allcores.Value under its lock beside them. Timed from a start signal to the last join
(process start excluded); every run checks the exact total."""
from __future__ import annotations

import multiprocessing
import os
import time

from .bars import bar
from .case import case

PROCS = 2


def _counter(c, n):
    for _ in range(n):
        c += 1


def _locked(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def _rate(target, obj, n):
    """M increments/s of PROCS fork processes running target(obj, n) from one start signal."""
    go_r, go_w = os.pipe()

    def run():
        os.read(go_r, 1)
        target(obj, n)
    procs = [multiprocessing.get_context("fork").Process(target=run) for _ in range(PROCS)]
    for p in procs:
        p.start()
    time.sleep(0.1)  # every process waits on the pipe
    t0 = time.perf_counter()
    os.write(go_w, b"g" * PROCS)
    for p in procs:
        p.join()
    dt = time.perf_counter() - t0
    os.close(go_r)
    os.close(go_w)
    if obj.value != PROCS * n or any(p.exitcode for p in procs):
        raise AssertionError(f"lost updates: {obj.value} of {PROCS * n}")
    return PROCS * n / dt / 1e6


@case("counter", "shared counter: 2 processes x 1,000,000 increments", figure="mops",
      unit="M increments/s", lower_is_better=False, libs=["allcores", "multiprocessing"],
      params={"n": 1_000_000}, quick={"n": 20_000},
      labels={"allcores": "allcores.Counter (c += 1)",
              "multiprocessing": "multiprocessing.Value + its lock",
              "allcores.value": "allcores.Value + its lock"})
def counter(lib, workers, p):
    n = p["n"]
    if lib == "multiprocessing":
        return {"mops": _rate(_locked, multiprocessing.Value("q", 0), n)}
    import allcores
    return {"mops": _rate(_counter, allcores.Counter(), n),
            "also": {"allcores.value": {"mops": _rate(_locked, allcores.Value("q", 0), n)}}}


@bar("counter: allcores.Counter >= 20x multiprocessing.Value with its lock", "counter",
     "allcores", "multiprocessing")
def _counter_bar(r):
    from .bars import _at_least
    return _at_least(r, "counter", "multiprocessing", 20)
