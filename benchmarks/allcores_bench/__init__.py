"""allcores bench: allcores against multiprocessing, ProcessPoolExecutor, loky, joblib and mpire,
measured in one run on this machine.

    allcores bench [--quick] [--json F] [--markdown F] [--cases rtt,cpu,...] [--libs ...]

Every row runs in a fresh process with a time limit, after a warm-up; within each repetition the
libraries alternate. Prints the medians, how many times better allcores.Pool is than each peer,
and the performance targets as PASS/FAIL. The cases are registered in case.py's MODULES.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

from . import bars, plots, report, runner
from .adapters import ORDER
from .case import UNAVAILABLE, load
from .machine import describe


def _known_libs(cases):
    """The libraries of adapters.ORDER, then the other rows cases name (the hand-written
    shared_memory peer...), so that --libs can leave those out too."""
    return list(dict.fromkeys([*ORDER, *(lib for c in cases.values() for lib in c.libs)]))


def _parser(cases):
    ap = argparse.ArgumentParser(prog="allcores bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, one repetition (for tests and development)")
    ap.add_argument("--json", metavar="F", help="write every figure, the machine and packages to F")
    ap.add_argument("--markdown", metavar="F", help="write the tables as Markdown to F "
                    "(BENCHMARKS.md)")
    ap.add_argument("--plots", metavar="DIR", help="draw the charts (PNG) into DIR (default, "
                    "with --markdown: benchmarks/plots beside the Markdown file)")
    ap.add_argument("--cases", default=",".join(cases),
                    help=f"comma-separated subset of: {', '.join(cases)}")
    libs = _known_libs(cases)
    ap.add_argument("--libs", default=",".join(libs),
                    help=f"comma-separated subset of: {', '.join(libs)}")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                    help="W, the workers of every pool (default: the cores)")
    ap.add_argument("--reps", type=int, help="repetitions of every row (default 3; quick: 1)")
    ap.add_argument("--row-timeout", type=float,
                    help="seconds a row may take before it is killed (default 180; quick: 60)")
    return ap


def _subset(ap, text, known, what):
    chosen = [x for x in text.split(",") if x]
    unknown = [x for x in chosen if x not in known]
    if unknown:
        ap.error(f"unknown {what}: {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def _draw(doc, folder, base):
    """The charts into folder; doc["plots"] holds their paths relative to base (the Markdown's
    folder, which links them), or doc["plots_skipped"] why there are none."""
    drawn, why = plots.draw(doc, folder)
    if why:
        doc["plots_skipped"] = why
        print(f"charts: {why}")
        return
    doc["plots"] = {name: os.path.relpath(path, base or ".") for name, path in drawn.items()}
    print(f"charts: {', '.join(drawn.values())}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cases = load()
    ap = _parser(cases)
    args = ap.parse_args(argv)
    chosen = _subset(ap, args.cases, list(cases), "cases")
    libs = _subset(ap, args.libs, _known_libs(cases), "libraries")
    reps = args.reps or (1 if args.quick else 3)
    timeout = args.row_timeout or (60.0 if args.quick else 180.0)
    machine = describe()
    print(f"allcores bench: {machine['cpu']}, {machine['cores']} cores, Python "
          f"{machine['python']}, W={args.workers}, {reps} repetition(s)"
          f"{', quick' if args.quick else ''}; load average {machine['loadavg'][0]:.2f}",
          flush=True)
    for module, why in UNAVAILABLE.items():
        print(f"  (cases of {module} left out: {why})")
    t0 = time.perf_counter()

    def log(text, end="\n"):
        print(text, end=end, flush=True)
    results = runner.run([cases[c] for c in chosen], libs, args.workers, reps, args.quick,
                         timeout, log)
    report.add_ratios(results)
    checks = bars.check(results)
    print(report.table(results))
    print("\nPerformance targets (allcores.Pool unless named):")
    print("\n".join(report.bar_lines(checks)) or "  (no target's figures were measured)")
    took = time.perf_counter() - t0
    print(f"\nbench took {took:.0f} s; load average now {os.getloadavg()[0]:.2f}")
    doc = {"command": shlex.join(["allcores", "bench", *argv]), "machine": machine,
           "workers": args.workers, "reps": reps, "quick": args.quick, "seconds": took,
           "loadavg_end": list(os.getloadavg()), "unavailable": UNAVAILABLE, "results": results,
           "bars": [{"bar": text, "pass": ok, "detail": detail} for text, ok, detail in checks]}
    if report.busy_warning(doc):
        print(report.busy_warning(doc))
    folder = args.plots or (args.markdown and os.path.join(os.path.dirname(args.markdown),
                                                             "benchmarks", "plots"))
    if folder:
        _draw(doc, folder, os.path.dirname(args.markdown or os.path.join(folder, "x")))
    for path in (args.json, args.markdown):  # a run of minutes must not end on a missing folder
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.markdown(doc))
    return 0
