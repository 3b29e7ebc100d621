"""The GIL meter: why a program uses one core, measured.

    with allcores.gil.meter() as m:
        run_threads()
    r = m.report()
    r.held, r.cores_used, r.switches, r.threads, r.verdict
    r.to_json("gil.json"); r.to_html("gil.html")

A C thread (allcores._gil) samples the GIL's state without taking it: who holds it, who waits
for it (the kernel's view of each thread), how much CPU each thread uses and how much the
whole process does. `allcores doctor script.py` runs a program under it.
"""
from .meter import DEFAULT_INTERVAL_US, Meter, meter
from .report import Report, Segment, ThreadReport

__all__ = ["meter", "Meter", "Report", "ThreadReport", "Segment", "DEFAULT_INTERVAL_US"]
