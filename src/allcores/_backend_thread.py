"""backend="thread": workers are threads of this process, on the same shared region.

For I/O-bound work, and truly parallel on free-threaded builds (sys._is_gil_enabled() is False:
see python_in_parallel). Threads cannot be killed: a task_timeout cannot stop a running task, so
it is refused, and Ctrl-C cancels what is queued but lets running tasks finish.
"""
from __future__ import annotations

import os
import sys
import sysconfig
import threading
import weakref

from . import _cpus
from . import _worker as W
from ._backend_process import ProcessHost
from ._engine import Engine
from ._protocol import WorkerState, worker_slot


def python_in_parallel() -> bool:
    """Whether threads of this process run Python code at the same time: only on a free-threaded
    build (3.13t) whose GIL is off. Asked each time, not once: such a build turns its GIL back on
    when it imports an extension module that does not declare it can run without one, and
    PYTHON_GIL=1 or -X gil=1 keep it on."""
    gil_enabled = getattr(sys, "_is_gil_enabled", None)  # 3.13+
    return gil_enabled is not None and not gil_enabled()


def free_threaded_build() -> bool:
    """Whether this Python was built without the GIL (3.13t), whether or not it is off now."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def default_thread_workers() -> int:
    """Pool(backend="thread")'s worker count when none is given. Under a GIL the threads serve
    work that waits (I/O, sleeps, C code releasing the GIL): as concurrent.futures'
    ThreadPoolExecutor, min(32, cores + 4), so that a few waits do not idle the cores. Without a
    GIL they also run Python in parallel: one per core, as with processes (more would only
    contend for the cores). Cores are those this process may use (its affinity mask and cgroup
    quota), as for a process pool and as ThreadPoolExecutor counts them from Python 3.13."""
    cores = _cpus.default_workers()
    return cores if python_in_parallel() else min(32, cores + 4)


class ThreadHost(ProcessHost):
    """Starts an engine's workers as threads of this process (the contract: ProcessHost)."""

    daemon_threads = True  # a worker thread left running at exit dies with the process

    def __init__(self, engine):
        self.engine = weakref.proxy(engine)  # as ProcessHost's
        self._threads: dict[int, threading.Thread] = {}
        # Under it, a thread being created in wake() is in _threads before it starts (not alive
        # yet), and a slot requested but not yet given a thread has none.
        self._lock = threading.Lock()

    def start(self, initializer, initargs, maxtasks, log_init_errors):
        self._args = (initializer, initargs, maxtasks)
        # The workers share this process's __main__: its functions travel by name.
        self.engine.main_names = getattr(sys.modules.get("__main__"), "__dict__", None)
        self.wake()

    def describe(self):
        return "worker threads"

    def threads(self):
        """The worker threads started so far (some may have ended)."""
        with self._lock:
            return list(self._threads.values())

    def wake(self):
        engine = self.engine
        region = engine.region
        with self._lock:
            for k in range(engine.nworkers):
                if worker_slot(region, k).state != WorkerState.SPAWN:
                    continue
                if not region.host_spawned(k, 0):
                    continue
                t = threading.Thread(target=self._thread_main, args=(k,),
                                     daemon=self.daemon_threads, name=f"allcores-worker-{k}")
                self._threads[k] = t
                t.start()

    def _thread_main(self, k):
        region = self.engine.region
        status = 70 << 8
        try:
            status = W.main(region, k, *self._args, shared_modules=True) << 8
        except BaseException:  # noqa: B902
            import traceback
            traceback.print_exc()
        finally:
            region.host_exited(k, status)

    def stop(self):
        # Queued tasks must not run after terminate(): a process pool kills its workers, but
        # threads would go on taking tasks until the ring is empty.
        try:
            self.engine.region.drain_tasks()
        except (OSError, ValueError):
            pass
        super().stop()

    def exit_status(self):
        engine = self.engine
        if not (engine.draining or engine.stopped):
            return None
        with self._lock:
            if any(t.is_alive() for t in self._threads.values()):
                return None
            region = engine.region
            if any(worker_slot(region, k).state == WorkerState.SPAWN
                   for k in range(engine.nworkers)):
                return None
        return 0

    def restart(self):
        return False  # the host is this process: it cannot have died

    def join(self):
        for t in self.threads():
            if t is not threading.current_thread():
                t.join(5.0)

    def close(self):
        pass


class ThreadEngine(Engine):
    """The shared-region engine with worker threads. `parallel` says whether they run Python at
    the same time (free-threaded build) or one at a time under the GIL."""

    host_type = ThreadHost
    stops_tasks = False
    cannot_stop = "backend='thread' cannot stop a running task"

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasks=None,
                 task_timeout=None, name="allcores-threads", arena_size=None, *, executor=False):
        super().__init__(processes, initializer, initargs, maxtasks, task_timeout, name,
                         arena_size, executor=executor)

    def default_workers(self):
        return default_thread_workers()

    @property
    def parallel(self) -> bool:
        """True when the workers run Python code at the same time (a free-threaded build whose GIL
        is off, now); False when they take turns holding the GIL, so that only waits and C code
        releasing the GIL overlap."""
        return python_in_parallel()

    def worker_pids(self, timeout=None):
        return []
