"""The interpreter backend against the standard library's own pool of subinterpreters,
concurrent.futures.InterpreterPoolExecutor (Python 3.14+): round trip, 20,000 submit(), CPU-bound
efficiency, start-up and memory per worker. Under a bench on an older Python their rows run
under a 3.14+ beside it (pythons.py).

Both pools run in the same child process, one after the other (the CPU case in paired rounds,
see pool_cases.paired_rounds), so they meet the same machine."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from . import spawn
from .backend_cases import _timed_map
from .bars import bar, figure
from .case import case
from .pool_cases import median_round, paired_rounds, private_mib
from .workloads import inc, pid_after, work

NEEDS = (3, 14)
IPE = "InterpreterPoolExecutor"
LABELS = {"allcores": "allcores.Pool(backend='interpreter')",
          IPE: "concurrent.futures.InterpreterPoolExecutor"}
KINDS = ("allcores", IPE)


class _Pool:
    """submit(fn, x) -> future and map(fn, xs) -> list on either pool."""

    def __init__(self, kind, workers):
        self.kind = kind
        if kind == "allcores":
            import allcores
            self.p = allcores.Pool(workers, backend="interpreter")
        else:
            from concurrent.futures import InterpreterPoolExecutor
            self.p = InterpreterPoolExecutor(workers)

    def submit(self, fn, x):
        return self.p.submit(fn, x)

    def map(self, fn, xs, chunksize=1):
        if self.kind == "allcores":
            return self.p.map(fn, xs, chunksize=chunksize)
        return list(self.p.map(fn, xs))  # one task per item: it does not batch

    def close(self):
        if self.kind == "allcores":
            self.p.terminate()
            self.p.join()
        else:
            self.p.shutdown(wait=True, cancel_futures=True)


def _warm(pool, workers):
    """Every worker started and ran a task (the standard library starts them lazily)."""
    pool.map(pid_after, [0.02] * (2 * workers))


def _both(workers, fn):
    rows = {}
    for kind in KINDS:
        pool = _Pool(kind, workers)
        try:
            _warm(pool, workers)
            rows[kind] = fn(pool)
        finally:
            pool.close()
    return dict(rows["allcores"], also={IPE: rows[IPE]})


@case("interp_rtt", "subinterpreters: one tiny task's round trip, submit(f).result()",
      figure="us", unit="µs, median", lower_is_better=True, libs=["allcores"],
      params={"n": 2000, "warm": 200}, quick={"n": 300, "warm": 50}, min_python=NEEDS,
      labels=LABELS, columns=[("p99_us", "p99 µs", "{:,.1f}")])
def interp_round_trip(lib, workers, p):
    def measure(pool):
        for i in range(p["warm"]):
            pool.submit(inc, i).result()
        ts = []
        for i in range(p["n"]):
            t0 = time.perf_counter_ns()
            if pool.submit(inc, i).result() != i + 1:
                raise AssertionError("wrong result")
            ts.append(time.perf_counter_ns() - t0)
        ts.sort()
        return {"us": statistics.median(ts) / 1e3, "p99_us": ts[int(len(ts) * 0.99)] / 1e3}
    return _both(workers, measure)


@case("interp_submit", "subinterpreters: 20,000 submit(), then result()", figure="us",
      unit="µs/task", lower_is_better=True, libs=["allcores"],
      params={"n": 20000, "warm": 2000}, quick={"n": 2000, "warm": 500}, min_python=NEEDS,
      labels=LABELS, columns=[("n", "tasks", "{:,.0f}")])
def interp_submit(lib, workers, p):
    def measure(pool):
        [f.result() for f in [pool.submit(inc, i) for i in range(p["warm"])]]
        t0 = time.perf_counter()
        out = [f.result() for f in [pool.submit(inc, i) for i in range(p["n"])]]
        dt = time.perf_counter() - t0
        if out[0] != 1 or out[-1] != p["n"] or len(out) != p["n"]:
            raise AssertionError("wrong results")
        return {"us": dt / p["n"] * 1e6, "n": p["n"]}
    return _both(workers, measure)


@case("interp_cpu", "subinterpreters: CPU-bound, W tasks of ~0.2 s pure Python",
      figure="efficiency", unit="efficiency", lower_is_better=False, libs=["allcores"],
      params={"rounds": 7, "task_s": 0.2}, quick={"rounds": 2, "task_s": 0.03}, reps=1,
      min_python=NEEDS, labels=LABELS,
      columns=[("wall_s", "wall s", "{:.3f}"),
               ("vs_ipe", "allcores / InterpreterPoolExecutor wall, same round", "{:.3f}")])
def interp_cpu(lib, workers, p):
    """Each round times, in rotating order, one serial call and both pools' map of W calls;
    every figure comes from the round whose ratio allcores / InterpreterPoolExecutor is the
    median (the machine's drift cancels within a round)."""
    n = p["work_n"]
    expected = work(n)
    pools = {}
    try:
        for kind in KINDS:
            pools[kind] = _Pool(kind, workers)
            _warm(pools[kind], workers)
            pools[kind].map(work, [n // 20] * (2 * workers))

        def serial():
            t0 = time.perf_counter()
            work(n)
            return time.perf_counter() - t0
        steps = {"serial": serial}
        steps.update({k: (lambda k=k: _timed_map(pools[k], n, workers, expected)) for k in KINDS})
        rounds = paired_rounds(steps, p["rounds"])
    finally:
        for pool in pools.values():
            pool.close()
    m = median_round(rounds, lambda r: r["allcores"] / r[IPE])
    one = m["serial"]
    return {"wall_s": m["allcores"], "efficiency": one / m["allcores"],
            "vs_ipe": m["allcores"] / m[IPE],
            "also": {IPE: {"wall_s": m[IPE], "efficiency": one / m[IPE]}}}


def _fresh(mode, kind, workers):
    """Runs `python -m allcores_bench.interp_cases MODE KIND W` in a fresh process."""
    out = subprocess.run([sys.executable, "-m", "allcores_bench.interp_cases", mode, kind,
                          str(workers)], capture_output=True, text=True, timeout=120, env=spawn.env())
    if out.returncode:
        raise RuntimeError((out.stderr.strip().splitlines() or ["exit status"])[-1][:200])
    return json.loads(out.stdout)


@case("interp_startup", "subinterpreters: start-up to first result (pool + one task)",
      figure="ms", unit="ms", lower_is_better=True, libs=["allcores"], params={},
      min_python=NEEDS, labels=LABELS)
def interp_startup(lib, workers, p):
    """Each pool is the first of a fresh process (library imported), what a script pays."""
    return dict(_fresh("startup", "allcores", workers),
                also={IPE: _fresh("startup", IPE, workers)})


@case("interp_memory", "subinterpreters: memory one more worker costs", figure="mib",
      unit="MiB/worker", lower_is_better=True, libs=["allcores"], params={}, min_python=NEEDS,
      labels=LABELS)
def interp_memory(lib, workers, p):
    """Per worker: the growth of the process's private memory (USS) from W to 2W warm workers,
    divided by W, each pool in a fresh process (fixed costs cancel)."""
    rows = {}
    for kind in KINDS:
        small = _fresh("memory", kind, workers)["mib"]
        big = _fresh("memory", kind, 2 * workers)["mib"]
        rows[kind] = {"mib": (big - small) / workers}
    return dict(rows["allcores"], also={IPE: rows[IPE]})


def _child(mode, kind, workers):
    import gc
    import os
    if kind == "allcores":
        import allcores  # noqa: F401  (imported before the clock starts, as for the other rows)
    else:
        import concurrent.futures  # noqa: F401
    if mode == "startup":
        t0 = time.perf_counter()
        pool = _Pool(kind, workers)
        if pool.submit(inc, 1).result() != 2:
            raise AssertionError("wrong result")
        ms = (time.perf_counter() - t0) * 1e3
        pool.close()
        return {"ms": ms}
    gc.collect()
    before = private_mib(os.getpid())[0]
    pool = _Pool(kind, workers)
    _warm(pool, workers)
    pool.map(work, [1000] * (8 * workers))
    time.sleep(0.2)
    gc.collect()
    grown = private_mib(os.getpid())[0] - before
    pool.close()
    return {"mib": grown}


@bar("interpreter backend: round trip >= 5x faster than InterpreterPoolExecutor (3.14+)",
     "interp_rtt", "allcores", IPE)
def _rtt_ipe(r):
    a, b = figure(r, "interp_rtt", "allcores"), figure(r, "interp_rtt", IPE)
    if a is None or b is None:
        return None
    return b / a >= 5, f"{b / a:.1f}x ({a:.1f} vs {b:.1f} µs; needs 5x)"


@bar("interpreter backend: CPU-bound wall within 5% of InterpreterPoolExecutor (3.14+)",
     "interp_cpu", "allcores", IPE)
def _cpu_ipe(r):
    x = figure(r, "interp_cpu", "allcores", "vs_ipe")
    return None if x is None else (x <= 1.05, f"{x:.3f}x its wall, same round")


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
