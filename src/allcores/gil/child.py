"""The doctor inside each Python process the program starts.

The doctor sets ALLCORES_DOCTOR_DIR to a private folder and puts a sitecustomize shim first on
PYTHONPATH, so every Python process started below it (spawn, forkserver, subprocess) calls
install() at start-up; install() also registers an at-fork hook, so forked children (fork,
forkserver workers, allcores workers) start their own collector as they begin.

A collector runs a GIL meter with a long interval (its cost is paid in every process), samples
the Python stacks a few times a second, and writes its figures to <dir>/<pid>.json every
WRITE_S seconds and when the process exits cleanly: pool workers are often terminated or leave
through os._exit, so the file is rewritten as the run goes rather than written once at the end.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import time

ENV = "ALLCORES_DOCTOR_DIR"
#: The children's GIL meter: one sample per 10 ms, stretched to stay under 0.3% of one CPU; the
#: stacks 20 times a second (a short run still gets enough of them); the file rewritten every quarter second at first (a worker may be killed without a last write). Every process pays this, busy or not.
CHILD_INTERVAL_US = 10000
CHILD_BUDGET = 0.003
STACK_S = 0.05
#: A stack sample taken this much later than planned is skipped (see _Collector._loop).
LATE_S = 0.02
WRITE_S = 0.25
THREAD_NAME = "allcores-doctor"

# The stack frames of the worker loops that make a process a pool worker.
_WORKER_LOOPS = {("pool.py", "worker"), ("process.py", "_process_worker"), ("_worker.py", "main"),
                 ("_worker.py", "run"), ("process_executor.py", "_process_worker")}

_collector = None


class _Collector:
    def __init__(self, folder: str):
        from .meter import Meter
        from .stacks import StackSampler, name_this_thread
        self.folder = folder
        self.pid = os.getpid()
        self.t0_ns = time.monotonic_ns()
        self.meter = Meter(CHILD_INTERVAL_US, cost_budget=CHILD_BUDGET, realtime=False).start()
        self.stacks = StackSampler()
        self.pool_worker = False
        self.loop_s = None           # when the main thread was first seen in a pool's worker loop
        self.preloop_s = None        # the last sample that saw it elsewhere
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()    # one write at a time
        self._slock = threading.Lock()   # one stack sample at a time
        self._done = False
        self._finishing = False
        self.term_pending = False
        self.thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
        self.thread.start()
        name_this_thread(tid=self.thread.native_id)

    def _loop(self):
        from .stacks import name_this_thread
        name_this_thread()
        last = 0.0
        woke, delay = time.monotonic(), _run_delay_s()
        while not self._stop.wait(STACK_S):
            c0 = time.thread_time()
            now, was_delay = time.monotonic(), delay
            delay = _run_delay_s()
            # A sample that got the GIL late is skipped: the main thread that kept it (running
            # the task on a loaded machine) lets it go at once where it waits for the next task,
            # so late samples would see the pool's code far more often than it runs. Lateness
            # spent waiting for a CPU (schedstat's run delay) does not count: it falls at any
            # moment of the main thread's work, and on a starved machine it is most of them.
            late = now - woke - (delay - was_delay) > STACK_S + LATE_S
            try:
                with self._slock:
                    found = self.sample(stacks=not late)
                now = time.monotonic()
                # rewritten every WRITE_S at first, then every tenth of the time so far: a file
                # holds the whole timeline, so a long run must not rewrite it ever more often
                if found or now - last >= max(WRITE_S, 0.1 * (now - self.t0_ns / 1e9)):
                    last = now
                    if not os.path.isdir(self.folder):  # the doctor is gone: stop measuring
                        self._stop.set()
                        self.meter.stop()
                        break
                    self.write()
            except Exception:  # never take the program down
                pass
            self.cpu_s += time.thread_time() - c0
            woke, delay = time.monotonic(), _run_delay_s()

    def sample(self, stacks: bool = True) -> bool:
        """One stack sample (unless stacks is False: then only the look for the worker loop);
        True when it is the first to find the main thread in a pool's worker loop (the end of the
        worker's start-up)."""
        if stacks:
            self.stacks.sample()
        if self.pool_worker:
            return False
        t = (time.monotonic_ns() - self.t0_ns) / 1e9
        if _in_worker_loop():
            self.pool_worker = True
            # it got there since the last sample that saw it elsewhere; the first sample finding
            # it there says only that the start-up was shorter than one sampling period
            self.loop_s = 0.0 if self.preloop_s is None else min(t, self.preloop_s + STACK_S)
            return True
        self.preloop_s = t
        return False

    def write(self, final: bool = False):
        # a signal handler may run this on a thread that is already writing: never wait long
        if not self._lock.acquire(timeout=1.0):
            return
        try:
            self._write(final)
        finally:
            self._lock.release()

    def _write(self, final: bool):
        if self._done:
            return
        if final:
            self._done = True
        r = self.meter.stop() if final else self.meter.report()
        mp = sys.modules.get("multiprocessing")
        name = None
        if mp is not None:
            try:
                name = mp.current_process().name
            except Exception:
                name = None
        if final and not self.pool_worker and self.preloop_s is not None and _worker_name(name):
            # a worker whose loop was too short for a sample: every sample saw its start-up
            self.pool_worker = True
            self.loop_s = self.preloop_s + STACK_S / 2
        d = {"pid": self.pid, "ppid": os.getppid(), "t0_ns": self.t0_ns, "mp_name": name,
             "pool_worker": self.pool_worker, "loop_s": self.loop_s, "argv": list(sys.argv[:4]), "final": final,
             "doctor_cpu_s": self.cpu_s + r.sampler_cpu_s, "stacks": self.stacks.to_dict(),
             "report": r.to_dict(timeline=True)}
        path = os.path.join(self.folder, f"{self.pid}.json")
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(d, f)
        os.replace(tmp, path)

    def finish(self, sample: bool = False):
        if os.getpid() != self.pid or self._finishing:
            return
        self._finishing = True
        self._stop.set()
        try:
            if sample and self._slock.acquire(timeout=0.5):
                try:
                    self.sample()
                finally:
                    self._slock.release()
            self.write(final=True)
        except Exception:
            pass
        if self.term_pending:  # a SIGTERM came while this was writing: now die of it
            _die_of_sigterm()


def _run_delay_s() -> float:
    """Seconds the calling thread has spent runnable without a CPU (schedstat), 0.0 where the
    kernel does not say."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _die_of_sigterm():
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_sigterm(signum, frame):
    # Pools end idle workers with SIGTERM: report, then die of it as the default action would.
    c = _collector
    if c is not None and c.pid == os.getpid():
        if c._finishing:  # the exit path is writing the report: it dies once it is written
            c.term_pending = True
            return
        c.finish(sample=True)
    _die_of_sigterm()


def _catch_sigterm():
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread: go without
        pass


def _worker_name(name) -> bool:
    if not name or name == "MainProcess":
        return False
    return "PoolWorker" in name or "concurrent.futures.process" in sys.modules


def _in_worker_loop() -> bool:
    f = sys._current_frames().get(threading.main_thread().ident)
    while f is not None:
        if (os.path.basename(f.f_code.co_filename), f.f_code.co_name) in _WORKER_LOOPS:
            return True
        f = f.f_back
    return False


def _start():
    global _collector
    folder = os.environ.get(ENV)
    if not folder or not os.path.isdir(folder):
        return
    try:
        _collector = _Collector(folder)
    except Exception:
        _collector = None
        return
    _catch_sigterm()


def _after_fork():
    global _collector
    _collector = None  # the parent's; its threads did not come along
    # Not from inside the fork hook: the interpreter is still finishing the fork (on a
    # free-threaded build a thread started there can deadlock the child). The first Python call
    # the child makes once the fork is done starts it, and hands back the profiler it found.
    prev = sys.getprofile()

    def _first_call(*args):
        sys.setprofile(prev)
        _start()
        _mp_exit_hook()
        if prev is not None:
            return prev(*args)

    sys.setprofile(_first_call)


def _at_exit():
    if _collector is not None:
        _collector.finish()


def _mp_exit_hook():
    # A multiprocessing child leaves through os._exit after running its finalizers, not atexit;
    # its bootstrap clears the finalizers inherited, then runs the after-fork callbacks: the
    # finalizer is registered from one of those.
    util = sys.modules.get("multiprocessing.util")
    if util is None or _collector is None:
        return
    try:
        util.register_after_fork(_collector, lambda _: util.Finalize(None, _at_exit, exitpriority=-100))
    except Exception:
        pass


_installed = False


def install(start: bool = True):
    """Called by the doctor's sitecustomize shim in each new Python process (and by the doctor
    itself with start=False): from now on this process and its forked children report."""
    global _installed
    if _installed or not os.environ.get(ENV):
        return
    _installed = True
    # With the GIL off, starting a collector in a forked child was seen to deadlock it (3.13t:
    # a multiprocessing worker on a semaphore, allcores' template on a runtime lock): forked
    # children are then measured from /proc only.
    if getattr(sys, "_is_gil_enabled", lambda: True)():
        os.register_at_fork(after_in_child=_after_fork_and_hook)
    atexit.register(_at_exit)
    if start:
        _start()
        _mp_exit_hook()


def _after_fork_and_hook():
    _after_fork()
