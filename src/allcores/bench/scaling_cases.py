"""Speedup against workers (issue 7's chart): the CPU-bound case with 1, 2, 4, ... and W
workers, for every library and for the ideal row (w processes started in advance). At w
workers, w tasks of ~0.1 s run at once: speedup = w x serial / wall, the ideal is w."""
from __future__ import annotations

import statistics

from .adapters import ORDER, open_adapter
from .case import case
from .pool_cases import _Ideal
from .workloads import timed, work


def points(workers):
    """1, 2, 4, ... up to W, and W itself: a 16-core machine draws 5 points, not 16."""
    out, w = [], 1
    while w < workers:
        out.append(w)
        w *= 2
    return out + [workers]


def _speedup_at(lib, w, n, rounds):
    """(library speedup, ideal speedup) with w workers, medians over rounds in which a serial
    call, the ideal row and the library's map take turns (the machine's drift hits all three)."""
    ideal = _Ideal(w, n)
    a = None
    try:
        a = open_adapter(lib, w)
        a.map(work, [n // 10] * w)  # every worker started and ran a task
        runs = {"serial": [], "ideal": [], "pool": []}
        steps = [("serial", lambda: timed(work, n)), ("ideal", ideal.run),
                 ("pool", lambda: timed(a.map, work, [n] * w))]
        for r in range(rounds):
            for name, fn in steps[r % 3:] + steps[:r % 3]:
                runs[name].append(fn())
    finally:
        if a is not None:
            a.close()
        ideal.close()
    one = statistics.median(runs["serial"])
    return w * one / statistics.median(runs["pool"]), w * one / statistics.median(runs["ideal"])


@case("scaling", "speedup against workers: w tasks of ~0.1 s on w workers, w = 1, 2, 4, ... W",
      figure="speedup", unit="speedup at W", lower_is_better=False, libs=ORDER,
      params={"rounds": 3, "task_s": 0.1}, quick={"rounds": 1, "task_s": 0.02}, reps=1,
      columns=[("speedup_w1", "at 1 worker", "{:.2f}x")])
def scaling(lib, workers, p):
    """Figures speedup_w<w> for every point; "speedup" is the one at W. The ideal row's own
    figures come back under "also", measured beside every library's (the last one kept)."""
    out, ideal = {}, {}
    for w in points(workers):
        out[f"speedup_w{w}"], ideal[f"speedup_w{w}"] = _speedup_at(lib, w, p["work_n"],
                                                                   p["rounds"])
    out["speedup"], ideal["speedup"] = out[f"speedup_w{workers}"], ideal[f"speedup_w{workers}"]
    return dict(out, also={"ideal": ideal})
