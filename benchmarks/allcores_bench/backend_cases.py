"""The backend cases: the CPU-bound case on backend="interpreter" (subinterpreters with their
own GIL, Python 3.12+) against backend="process", and the memory one more worker costs on each.
Under a bench on 3.11 their rows run under a newer Python beside it (pythons.py).

CPU: W tasks of ~0.2 s of pure Python through pool.map(work, [n] * W, chunksize=1) on warm pools
of both backends; each round times one serial call and both maps in rotating order, and every
figure comes from the round whose ratio interpreter / process is the median (the machine's drift
cancels within a round).

Memory: see backend_memory.py; per worker = the growth of everything the pool adds to the
machine from W to 2W workers, divided by W, so that fixed costs cancel out."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

from . import spawn
from .bars import bar, figure
from .case import case
from .pool_cases import median_round, paired_rounds
from .workloads import pid_after, timed, timed_map, work

LABELS = {"allcores": "allcores.Pool(backend='interpreter')",
          "process": "allcores.Pool(backend='process')"}
NEEDS = (3, 12)


def _timed_map(pool, n, workers, expected):
    return timed_map(lambda f, xs: pool.map(f, xs, chunksize=1), n, workers, expected)


@case("backends", "CPU-bound on subinterpreters against processes: W tasks of ~0.2 s",
      figure="wall_s", unit="wall s", lower_is_better=True, libs=["allcores"],
      params={"rounds": 7, "task_s": 0.2}, quick={"rounds": 2, "task_s": 0.03}, reps=1,
      min_python=NEEDS, labels=LABELS,
      columns=[("efficiency", "efficiency", "{:.3f}"),
               ("vs_process", "interpreter / process, same round", "{:.3f}")])
def backends(lib, workers, p):
    """Each round times, in rotating order, one serial call and both backends' map of W calls;
    every figure of both rows comes from the one round whose ratio interpreter / process is
    the median, so the walls shown and their ratio agree (medians taken apart did not)."""
    import allcores
    n = p["work_n"]
    expected = work(n)
    # The process pool first: one made while subinterpreter threads run never gets a working
    # worker (its template, forked then, dies with "PyThreadState_Get: ... GIL is released").
    pools = {b: allcores.Pool(workers, backend=b) for b in ("process", "interpreter")}
    try:
        for pool in pools.values():  # every worker started and ran tasks
            pool.map(pid_after, [0.02] * (2 * workers), chunksize=1)
            pool.map(work, [n // 20] * (2 * workers), chunksize=1)
        steps = {"serial": lambda: timed(work, n)}
        steps.update({b: lambda b=b: _timed_map(pools[b], n, workers, expected) for b in pools})
        rounds = paired_rounds(steps, p["rounds"])
    finally:
        for pool in pools.values():
            pool.terminate()
            pool.join()
    m = median_round(rounds, lambda r: r["interpreter"] / r["process"])
    one = m["serial"]

    def row(b):
        return {"wall_s": m[b], "efficiency": one / m[b]}
    return dict(row("interpreter"), vs_process=m["interpreter"] / m["process"],
                also={"process": row("process")})


def _pool_total(backend, workers):
    """What a pool of `workers` adds to the machine, measured in a fresh process."""
    out = subprocess.run([sys.executable, "-m", "allcores_bench.backend_memory", backend,
                          str(workers)], capture_output=True, text=True, timeout=120, env=spawn.env())
    if out.returncode:
        raise RuntimeError((out.stderr.strip().splitlines() or ["exit status"])[-1][:200])
    return json.loads(out.stdout)


@case("backend_memory", "memory one more worker costs: a subinterpreter against a process",
      figure="mib", unit="MiB/worker", lower_is_better=True, libs=["allcores"],
      params={}, min_python=NEEDS, labels=LABELS,
      columns=[("worker_uss_mib", "a worker process's own USS MiB", "{:.2f}")])
def backend_memory(lib, workers, p):
    """One pair of pools (W, then 2W workers) per backend, each in a fresh process; the
    repetitions of the run give the median over pairs."""
    rows = {}
    for b in ("interpreter", "process"):
        small, big = _pool_total(b, workers), _pool_total(b, 2 * workers)
        rows[b] = {"mib": (big["total_mib"] - small["total_mib"]) / workers}
        if big["workers_mib"]:
            rows[b]["worker_uss_mib"] = statistics.fmean(big["workers_mib"])
    return dict(rows["interpreter"], also={"process": rows["process"]})


@bar("interpreter backend: CPU-bound wall time within 10% of the process backend (3.13)",
     "backends")
def _interp_cpu(r):
    x = figure(r, "backends", "allcores", "vs_process")
    if x is None:
        return None
    py = r["backends"].get("python") or sys.version.split()[0]
    return x <= 1.10, f"{x:.3f}x the process backend's, same round (Python {py})"
