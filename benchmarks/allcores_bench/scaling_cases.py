"""Speedup against workers: the CPU-bound case with 1, 2, 4, ... and W
workers, for every library and for the ideal row (w processes started in advance). At w
workers, w tasks of ~0.1 s run at once: speedup = w x serial / wall, the ideal is w.

Each library is measured against its own ideal run in the same rounds. The headline is "of
ideal at W", the library's ratio to that paired ideal run: a shared VM's drift (single timings
swing by tens of percent there) cancels out of it, while raw speedups timed at other moments are
not comparable from one library to the next (benchmarks/README.md, "The ideal row").
"""
from __future__ import annotations

from .adapters import ORDER, open_adapter
from .case import case
from .pool_cases import _Ideal, median_round, paired_rounds
from .workloads import timed, work


def points(workers):
    """1, 2, 4, ... up to W, and W itself: a 16-core machine draws 5 points, not 16."""
    out, w = [], 1
    while w < workers:
        out.append(w)
        w *= 2
    return out + [workers]


def _speedup_at(lib, w, n, rounds):
    """(the library's figures, the ideal's) with w workers, from the median round (by the
    ratio ideal / library) of rounds in which a serial call, the ideal row and the library's
    map take turns after a warm-up round."""
    ideal = _Ideal(w, n)
    a = None
    try:
        a = open_adapter(lib, w)
        a.map(work, [n // 10] * w)  # every worker started and ran a task
        runs = paired_rounds({"serial": lambda: timed(work, n), "ideal": ideal.run,
                              "pool": lambda: timed(a.map, work, [n] * w)}, rounds)
    finally:
        if a is not None:
            a.close()
        ideal.close()
    m = median_round(runs, lambda r: r["ideal"] / r["pool"])
    return ({"speedup": w * m["serial"] / m["pool"], "vs_ideal": m["ideal"] / m["pool"],
             "ideal": w * m["serial"] / m["ideal"]},
            {"speedup": w * m["serial"] / m["ideal"], "vs_ideal": 1.0})


@case("scaling", "speedup against workers: w tasks of ~0.1 s on w workers, w = 1, 2, 4, ... W",
      figure="vs_ideal", unit="of ideal at W", lower_is_better=False, libs=ORDER,
      params={"rounds": 5, "task_s": 0.1}, quick={"rounds": 3, "task_s": 0.02}, reps=1,
      columns=[("speedup", "speedup at W", "{:.2f}x"),
               ("ideal_speedup", "ideal, same round", "{:.2f}x"),
               ("vs_ideal_w1", "of ideal at 1 worker", "{:.1%}")])
def scaling(lib, workers, p):
    """Figures speedup_w<w> and vs_ideal_w<w> for every point; "speedup", "ideal_speedup" and
    "vs_ideal" are the ones at W. The ideal row's own figures come back under "also"; its row
    in the table is the median over every library's rounds."""
    out, ideal = {}, {}
    for w in points(workers):
        mine, theirs = _speedup_at(lib, w, p["work_n"], p["rounds"])
        out[f"speedup_w{w}"], out[f"vs_ideal_w{w}"] = mine["speedup"], mine["vs_ideal"]
        out[f"ideal_w{w}"] = mine["ideal"]
        ideal[f"speedup_w{w}"], ideal[f"vs_ideal_w{w}"] = theirs["speedup"], 1.0
    out.update(speedup=out[f"speedup_w{workers}"], vs_ideal=out[f"vs_ideal_w{workers}"],
               ideal_speedup=out[f"ideal_w{workers}"])
    ideal.update(speedup=ideal[f"speedup_w{workers}"], vs_ideal=1.0)
    return dict(out, also={"ideal": ideal})
