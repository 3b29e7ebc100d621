"""Runs the cases: every row in a child process of its own under a time limit, the libraries
alternating within each repetition (the order rotated from one repetition to the next, so none
always runs first), and the median of the repetitions kept per figure."""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from . import spawn
from .pythons import python_for
from .workloads import work


def calibrate(task_s):
    """The n for which work(n) takes about task_s seconds on this machine now: the fastest of
    three timings, since a busy machine only ever makes a timing longer."""
    def timed(n):
        t0 = time.perf_counter()
        work(n)
        return time.perf_counter() - t0
    n = 50_000
    while (dt := timed(n)) < 0.05:
        n *= 2
    dt = min(dt, timed(n), timed(n))
    return max(1000, int(n * task_s / dt))


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_row(case, lib, workers, params, timeout, python=None):
    """One row in a fresh process (its own session) of `python` (default: this one); returns its
    figures, or {"error": why} / {"skip": why}. Whatever the row leaves running (a peer's
    workers) is killed with it."""
    spec = json.dumps({"case": case, "lib": lib, "workers": workers, "params": params})
    fd, path = tempfile.mkstemp(prefix="allcores-bench-", suffix=".json")
    os.close(fd)
    try:
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([python or sys.executable, "-m", "allcores_bench.child",
                                     spec, path],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, start_new_session=True, env=spawn.env())
            timed_out = False
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)
                proc.wait()
            if timed_out:
                return {"error": f"timeout: no result within {timeout:g} s"}
            with open(path) as f:
                text = f.read()
            if text:
                return json.loads(text)
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            return {"error": (lines[-1][:200] if lines else f"exit status {proc.returncode}")}
    finally:
        os.unlink(path)


def summarize(samples):
    """The median of each figure over the repetitions that succeeded."""
    good = [s for s in samples if "error" not in s and "skip" not in s]
    if not good:
        return dict(samples[0], runs=0)
    out = {}
    for key in good[0]:
        values = [s[key] for s in good if isinstance(s.get(key), (int, float))]
        if values:
            out[key] = statistics.median(values)
    out["runs"] = len(good)
    failed = [s["error"] for s in samples if "error" in s]
    if failed:
        out["failed_runs"] = failed
    return out


def run(cases, libs, workers, reps, quick, timeout, log):
    """Runs `cases` (Case objects) for the libraries in `libs`; returns {case: results}."""
    results = {}
    for case in cases:
        params = case.params_for(quick)
        if "task_s" in params:
            params["work_n"] = calibrate(params["task_s"])
        row_libs = [lib for lib in case.libs if lib in libs]
        samples = {lib: [] for lib in row_libs}
        also = {}
        t0 = time.perf_counter()
        python, version = python_for(case)
        log(f"  {case.name:12s} " + (f"(Python {version}) " if python and version else ""),
            end="")
        for rep in range(case.reps or reps):
            k = rep % max(1, len(row_libs))
            for lib in row_libs[k:] + row_libs[:k]:
                if python is None:  # version says why
                    out = {"skip": version}
                else:
                    out = run_row(case.name, lib, workers, params, timeout, python)
                for name, figures in out.pop("also", {}).items():
                    also.setdefault(name, []).append(figures)
                samples[lib].append(out)
                log("x" if "error" in out else "-" if "skip" in out else ".", end="")
        log(f" {time.perf_counter() - t0:.0f} s")
        rows = {name: summarize(s) for name, s in {**also, **samples}.items()}
        results[case.name] = {"title": case.title, "figure": case.figure, "unit": case.unit,
                              "lower_is_better": case.lower_is_better, "params": params,
                              "python": version if python else None,
                              "rows": rows, "samples": {**also, **samples}}
    return results
