"""The GIL meter: starts the C sampler (allcores._gil) and keeps the names threads had.

The sampler is a C thread that never takes the GIL; this module only starts and stops it and
remembers which thread id had which threading name, so that threads that have exited by the time
the report is made still get their names.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref

from .report import Report

#: Mean time between samples by default. A sample costs 25-35 us of CPU on a 2-vCPU VM (a timer
#: wake-up alone is 20 us there) plus 1-2 us per thread read from /proc, and a few us on bare
#: metal. A 1 s run still gives 500-1,000 samples, enough for held % to about a point.
DEFAULT_INTERVAL_US = 1000
#: With the default interval, the sampler stretches it (up to 10x) to stay under this share of
#: one CPU (it aims at 80% of it); an interval given explicitly is kept as given.
DEFAULT_COST_BUDGET = 0.025

try:
    from .. import _gil
except ImportError as exc:  # not built, or not Linux
    _gil = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = None


# Meters still running when the interpreter exits are stopped first: the sampler must not read
# the GIL of an interpreter being torn down.
_running: "weakref.WeakSet[Meter]" = weakref.WeakSet()


@atexit.register
def _stop_running_meters():
    for m in list(_running):
        m.stop()


def _gil_enabled() -> bool:
    return getattr(sys, "_is_gil_enabled", lambda: True)()


class _Names:
    """Thread objects by native id, captured as threads start (threading.setprofile)."""

    def __init__(self):
        self.threads: dict[int, threading.Thread] = {}
        self._prev = None
        self._installed = False

    def _capture(self, *_):
        # Runs once in each new thread, before its target; then hands the thread the hook that
        # was there before us (or none).
        t = threading.current_thread()
        nid = getattr(t, "native_id", None) or threading.get_native_id()
        self.threads[nid] = t
        sys.setprofile(self._prev)
        if self._prev is not None:
            return self._prev(*_)

    def install(self):
        self.snapshot()
        self._prev = threading.getprofile() if hasattr(threading, "getprofile") else None
        threading.setprofile(self._capture)
        self._installed = True

    def uninstall(self):
        if self._installed:
            if threading.getprofile() == self._capture:
                threading.setprofile(self._prev)
            self._installed = False
        self.snapshot()

    def snapshot(self):
        main = threading.main_thread()
        for t in threading.enumerate():
            # the main thread's id is the process's: a process forked by C code (allcores'
            # workers) keeps the native_id of the thread that forked its parent
            nid = os.getpid() if t is main else getattr(t, "native_id", None)
            if nid:
                self.threads[nid] = t

    def names(self) -> dict[int, str]:
        return {nid: t.name for nid, t in self.threads.items()}


class Meter:
    """Measures the GIL while running: use as a context manager or with start()/stop().

    with allcores.gil.meter() as m:
        run_threads()
    print(m.report().verdict)
    """

    def __init__(self, interval_us: float | None = None, *, timeline: bool = True, layout: bool = True,
                 realtime: bool = True, cost_budget: float | None = None):
        if cost_budget is None:
            cost_budget = DEFAULT_COST_BUDGET if interval_us is None else 0.0
        self.cost_budget = cost_budget
        interval_us = DEFAULT_INTERVAL_US if interval_us is None else interval_us
        if not 10 <= interval_us <= 10_000_000:
            raise ValueError("interval_us must be between 10 and 10,000,000")
        self.interval_us = float(interval_us)
        self.timeline = timeline
        self.layout = layout
        self.realtime = realtime
        self._sampler = None
        self._names = _Names()
        self._report: Report | None = None
        self._notes: list[str] = []
        self._t0 = self._t1 = None
        self._cpu0 = self._cpu1 = None
        self._switch_interval0 = sys.getswitchinterval()

    # ---- lifecycle ----

    def start(self) -> "Meter":
        if self._t0 is not None:
            raise RuntimeError("a meter can be started only once")
        self._switch_interval0 = sys.getswitchinterval()
        self._names.install()
        if _gil is None:
            self._notes.append(f"the C sampler is not available ({_IMPORT_ERROR}): only cores used is measured")
        else:
            use_layout = _gil_enabled() and self.layout
            self._sampler = _gil.Sampler(interval_us=self.interval_us,
                                         switch_interval_us=round(self._switch_interval0 * 1e6),
                                         timeline=self.timeline, use_layout=use_layout,
                                         cost_budget=self.cost_budget, realtime=self.realtime)
            if not self.layout:
                self._notes.append("the GIL's layout was not used (layout=False): GIL held, waiting and switches "
                                   "are not measured; per-thread CPU, thread states and cores used are")
            elif not use_layout:
                self._notes.append("free-threaded build: the GIL is disabled, so nothing waits for it; "
                                   "per-thread CPU and cores used are measured")
            elif not self._sampler.layout_ok:
                self._notes.append(f"the GIL's layout could not be used ({self._sampler.layout_error}): "
                                   "GIL held, waiting and switches are not measured; per-thread CPU, "
                                   "thread states and cores used are")
            self._sampler.start()
            _running.add(self)
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()
        return self

    def stop(self) -> Report:
        if self._t0 is None:
            raise RuntimeError("the meter was not started")
        if self._report is None:
            if self._sampler is not None:
                self._sampler.stop()
                _running.discard(self)
            self._t1 = time.perf_counter()
            self._cpu1 = time.process_time()
            self._names.uninstall()
            self._report = self._build()
        return self._report

    def report(self) -> Report:
        """The report: final once stopped, a snapshot so far while running."""
        if self._report is not None:
            return self._report
        if self._t0 is None:
            raise RuntimeError("the meter was not started")
        self._names.snapshot()
        return self._build(live=True)

    def __enter__(self) -> "Meter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- building the report ----

    def _build(self, live: bool = False) -> Report:
        names = self._names.names()
        notes = list(self._notes)
        if sys.getswitchinterval() != self._switch_interval0:
            notes.append(f"the switch interval changed during the run "
                         f"({self._switch_interval0 * 1e3:g} ms -> {sys.getswitchinterval() * 1e3:g} ms)")
        if self._sampler is None:
            t1 = time.perf_counter() if live else self._t1
            c1 = time.process_time() if live else self._cpu1
            wall = max(t1 - self._t0, 1e-9)
            return Report.from_cpu_only(wall_s=wall, cpu_s=c1 - self._cpu0, notes=notes,
                                        interval_us=self.interval_us)
        s = self._sampler
        return Report.from_sampler(
            totals=s.totals(), threads=s.threads(), interpreters=s.interpreters(),
            events=s.events() if self.timeline else b"", cpu_points=s.cpu_points() if self.timeline else b"",
            names=names, notes=notes, interval_us=self.interval_us,
            gil_measured=bool(s.layout_ok and not s.gil_disabled and _gil_enabled()),
            gil_disabled=not _gil_enabled(), main_native_id=os.getpid())


def meter(interval_us: float | None = None, *, timeline: bool = True, layout: bool = True,
          realtime: bool = True) -> Meter:
    """A GIL meter for a `with` block: `with allcores.gil.meter() as m: ...; m.report()`.

    interval_us is the mean time between samples; by default 1000 us, stretched on machines
    where sampling is costly so that the sampler stays near 2% of one CPU. timeline=False
    keeps only the totals. layout=False does not read the GIL (what the meter falls back to when
    its self-test fails): per-thread CPU, states and cores used only. realtime gives the sampling
    thread the lowest real-time priority where that is allowed (root, CAP_SYS_NICE, ulimit -r),
    so that busy CPUs do not delay its samples past short GIL holds."""
    return Meter(interval_us, timeline=timeline, layout=layout, realtime=realtime)
