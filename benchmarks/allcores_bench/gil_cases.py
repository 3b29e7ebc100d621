"""The GIL meter's bench case: what the meter costs a CPU-bound program at the default interval.

Registered for `allcores bench` in case.MODULES. The headline is the sampler's own CPU as a
share of the run time (the bar: at most 3%); the slowdown of the run itself is shown beside it,
but on a shared 2-core VM it is noise of several percent either way."""
from __future__ import annotations

from .case import case
from .gil_cost import measure


@case("gil_meter", "GIL meter: sampler CPU as a share of a CPU-bound run, default interval",
      figure="sampler_pct", unit="% of run", lower_is_better=True, libs=["allcores"],
      params={"seconds": 0.5, "repeats": 7}, quick={"seconds": 0.2, "repeats": 3},
      columns=[("slowdown_pct", "slowdown", "{:+.1f}%"), ("plain_s", "plain s", "{:.3f}"),
               ("metered_s", "metered s", "{:.3f}")],
      labels={"allcores": "allcores.gil.meter()"})
def gil_meter_cost(lib, workers, p):
    r = measure(p["seconds"], p["repeats"])
    return {"sampler_pct": r["sampler_cpu_share"] * 100, "slowdown_pct": r["slowdown"] * 100,
            "plain_s": r["plain_s"], "metered_s": r["metered_s"]}
