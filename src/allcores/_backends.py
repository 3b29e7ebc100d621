"""The engines behind Pool(backend=...) and ProcessPoolExecutor(backend=...).

Every backend keeps the same transport (the shared region, its rings and arena) and the same
worker loop (_worker.main); only the *host* of the workers changes:

    process      forked from a template process (the default; see _engine.Engine)
    thread       threads of this process: for I/O-bound work, and truly parallel on
                 free-threaded builds (sys._is_gil_enabled() is False: see python_in_parallel)
    interpreter  threads of this process, each running a subinterpreter with its own GIL
                 (Python 3.12+; see _interp.py)

A backend is an Engine subclass overriding the _host_* methods. One more backend keeps the API
but not the transport:

    dask         tasks run on an existing dask.distributed cluster (see _dask.py)

and one is a choice among the others, made when the pool is created (see choose_auto):

    auto         thread where threads run Python in parallel (a free-threaded build with its GIL
                 off), process elsewhere
"""
from __future__ import annotations

import os
import sys
import sysconfig
import threading

from . import _worker as W
from ._protocol import WorkerState, worker_slot
from ._engine import Engine

BACKENDS = ("process", "thread", "interpreter", "dask", "auto")


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


def choose_auto(task_timeout=None) -> tuple[str, str]:
    """What backend="auto" picks now, and why: threads where they run Python in parallel (they
    share the caller's memory: nothing is pickled or copied), processes elsewhere, and wherever a
    running task must be stoppable (task_timeout)."""
    if task_timeout is not None:
        return "process", "task_timeout needs workers that can be stopped: processes"
    if python_in_parallel():
        return "thread", ("free-threaded build with the GIL off: threads run Python in parallel "
                          "and share memory, nothing is pickled")
    if free_threaded_build():
        return "process", ("free-threaded build, but its GIL is on (PYTHON_GIL=1, -X gil=1 or an "
                           "extension that needs it): threads would take turns")
    return "process", "this Python has a GIL: only processes run Python in parallel"


def default_thread_workers() -> int:
    """Pool(backend="thread")'s worker count when none is given. Under a GIL the threads serve
    work that waits (I/O, sleeps, C code releasing the GIL): as concurrent.futures'
    ThreadPoolExecutor, min(32, cores + 4), so that a few waits do not idle the cores. Without a
    GIL they also run Python in parallel: one per core, as with processes (more would only
    contend for the cores)."""
    cores = os.cpu_count() or 1
    return cores if python_in_parallel() else min(32, cores + 4)


class ThreadEngine(Engine):
    """Workers are threads of this process. They cannot be killed: a task_timeout cannot stop a
    running task, so it is refused, and Ctrl-C cancels what is queued but lets running tasks
    finish. `parallel` says whether they run Python at the same time (free-threaded build) or
    one at a time under the GIL."""

    stops_tasks = False
    cannot_stop = "backend='thread' cannot stop a running task"
    daemon_threads = True  # a worker thread left running at exit dies with the process

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasks=None,
                 task_timeout=None, name="allcores-threads"):
        super().__init__(processes, initializer, initargs, maxtasks, task_timeout, name)

    def default_workers(self):
        return default_thread_workers()

    @property
    def parallel(self) -> bool:
        """True when the workers run Python code at the same time (a free-threaded build whose GIL
        is off, now); False when they take turns holding the GIL, so that only waits and C code
        releasing the GIL overlap."""
        return python_in_parallel()

    def _host_start(self, initializer, initargs, maxtasks):
        self._threads: dict[int, threading.Thread] = {}
        self._host_args = (initializer, initargs, maxtasks)
        # The workers share this process's __main__: its functions travel by name.
        self.main_names = getattr(sys.modules.get("__main__"), "__dict__", None)
        self._host_lock = threading.Lock()
        self._host_wake()

    def _host_name(self):
        return "worker threads"

    def _host_wake(self):
        region = self._region
        with self._host_lock:
            for k in range(self.nworkers):
                if worker_slot(region, k).state != WorkerState.SPAWN:
                    continue
                if not region.host_spawned(k, 0):
                    continue
                t = threading.Thread(target=self._thread_main, args=(k,),
                                     daemon=self.daemon_threads, name=f"allcores-worker-{k}")
                self._threads[k] = t
                t.start()

    def _thread_main(self, k):
        status = 70 << 8
        try:
            status = W.main(self._region, k, *self._host_args, shared_modules=True) << 8
        except BaseException:  # noqa: B902
            import traceback
            traceback.print_exc()
        finally:
            self._region.host_exited(k, status)

    def _stop_processes(self):
        # Queued tasks must not run after terminate(): a process pool kills its workers, but
        # threads would go on taking tasks until the ring is empty.
        try:
            self._region.drain_tasks()
        except (OSError, ValueError):
            pass
        super()._stop_processes()

    def _host_gone(self):
        if not (self._drain_requested or self._terminated or self._broken is not None):
            return False
        # Under the host lock: a thread being created in _host_wake is in _threads before it
        # starts (not alive yet), and a slot requested but not yet given a thread has none.
        with self._host_lock:
            if any(t.is_alive() for t in self._threads.values()):
                return False
            region = self._region
            if any(worker_slot(region, k).state == WorkerState.SPAWN
                   for k in range(self.nworkers)):
                return False
        self._host_status = 0
        return True

    def _host_join(self):
        for t in list(self._threads.values()):
            if t is not threading.current_thread():
                t.join(5.0)

    def _host_close(self):
        pass

    def worker_pids(self):
        return []


def make_engine(backend, processes, initializer, initargs, maxtasks, task_timeout, *,
                executor=False, **options):
    """The engine for Pool(backend=...), or for ProcessPoolExecutor(backend=...) with executor
    (then with concurrent.futures' behaviours: a failing initializer is logged, and queued work
    is finished at interpreter exit). options are the backend's own keywords (process:
    arena_size=; dask: address= or client=)."""
    if backend == "auto" and not options:
        backend = choose_auto(task_timeout)[0]
    if backend == "dask":
        from ._dask import DaskEngine
        # Not finished at exit: the cluster may be gone by then.
        return DaskEngine(processes, initializer, initargs, maxtasks, task_timeout, **options)
    arena_size = options.pop("arena_size", None) if backend == "process" else None
    if options:
        raise TypeError(f"backend={backend!r} takes no option {', '.join(map(repr, options))}")
    if backend == "process":
        if executor:
            return Engine(processes, initializer, initargs, maxtasks, task_timeout,
                          name="allcores-executor", arena_size=arena_size, log_init_errors=True,
                          finish_at_exit=True)
        return Engine(processes, initializer, initargs, maxtasks, task_timeout,
                      name="allcores-pool", arena_size=arena_size)
    if backend == "thread":
        engine = ThreadEngine(processes, initializer, initargs, maxtasks, task_timeout)
    elif backend == "interpreter":
        from ._interp import InterpreterEngine
        engine = InterpreterEngine(processes, initializer, initargs, maxtasks, task_timeout)
    else:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    engine.finish_at_exit = executor
    return engine
