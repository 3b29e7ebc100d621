"""The free-threaded case: CPU-bound pure Python on backend="thread" where threads run Python in
parallel (a free-threaded build with its GIL off, 3.13t), against plain threading and
concurrent.futures.ThreadPoolExecutor in the same process. Under a bench on a build with a GIL
its rows run under a free-threaded Python beside it (pythons.py: .venv-3.13t).

Each round times, in rotating order, one serial call (W calls one after another) and the three
ways of making W calls at once; every figure comes from the round whose ratio allcores /
ThreadPoolExecutor is the median (the machine's drift cancels within a round)."""
from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .bars import bar, figure
from .case import case
from .pool_cases import median_round, paired_rounds
from .workloads import timed_map, work

LABELS = {"allcores": "allcores.Pool(backend='thread')"}
PEERS = ("threading", "ThreadPoolExecutor")


def _serial(n, workers):
    t0 = time.perf_counter()
    for _ in range(workers):
        work(n)
    return time.perf_counter() - t0


def _threads(n, workers):
    ts = [threading.Thread(target=work, args=(n,)) for _ in range(workers)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


@case("threads", "CPU-bound on threads, free-threaded build: W tasks of ~0.2 s",
      figure="speedup", unit="speedup", lower_is_better=False, libs=["allcores"],
      params={"rounds": 9, "task_s": 0.2}, quick={"rounds": 2, "task_s": 0.03}, reps=1,
      free_threaded=True, labels=LABELS,
      columns=[("wall_s", "wall s", "{:.3f}"),
               ("vs_tpe", "wall / ThreadPoolExecutor's, same round", "{:.3f}")])
def threads(lib, workers, p):
    import allcores
    if sys._is_gil_enabled():
        raise AssertionError("the GIL is on: this row needs a free-threaded build with it off")
    n = p["work_n"]
    expected = work(n)
    with allcores.Pool(workers, backend="thread") as pool, ThreadPoolExecutor(workers) as tpe:
        steps = {"serial": lambda: _serial(n, workers),
                 "allcores": lambda: timed_map(lambda f, xs: pool.map(f, xs, chunksize=1), n,
                                               workers, expected),
                 "ThreadPoolExecutor": lambda: timed_map(tpe.map, n, workers, expected),
                 "threading": lambda: _threads(n, workers)}
        rounds = paired_rounds(steps, p["rounds"])
    m = median_round(rounds, lambda r: r["allcores"] / r["ThreadPoolExecutor"])

    def row(name):
        return {"wall_s": m[name], "speedup": m["serial"] / m[name]}
    return dict(row("allcores"), vs_tpe=m["allcores"] / m["ThreadPoolExecutor"], workers=workers,
                also={peer: row(peer) for peer in PEERS})


@bar("free-threaded: Pool(backend='thread') speedup >= 0.9 x W", "threads")
def _threads_speedup(r):
    v, w = figure(r, "threads", "allcores"), figure(r, "threads", "allcores", "workers")
    if v is None or w is None:
        return None
    return v >= 0.9 * w, f"{v:.2f}x with {w:.0f} threads (needs {0.9 * w:.2f}x)"


@bar("free-threaded: Pool(backend='thread') within 10% of ThreadPoolExecutor", "threads",
     "allcores", "ThreadPoolExecutor")
def _threads_vs_tpe(r):
    v = figure(r, "threads", "allcores", "vs_tpe")
    return None if v is None else (v <= 1.1, f"{v:.3f}x its wall, same round")
