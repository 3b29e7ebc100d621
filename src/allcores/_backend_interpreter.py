"""backend="interpreter": workers are subinterpreters with their own GIL (PEP 684, Python 3.12+).

    parent interpreter                                 one OS thread per worker slot k
    ------------------                                 -------------------------------
    Engine (rings, collector, futures) --- same ---    _core.InterpWorker.run(region, k, boot):
    submit -> pickle -> [task ring]     shared region     Py_NewInterpreterFromConfig(isolated)
    futures <- unpickle <- [result ring]  (C memory)      _interp.sub_main(): _worker.main on a
                                                          Region *view* of the same mapping
                                                          Py_EndInterpreter

Tasks and results cross exactly as with worker processes: pickles (and out-of-band buffers) in
the region's rings and arena, so nothing but plain C memory is shared between interpreters. An
interpreter is created when its worker starts and lives as long as it (all of them start with
the pool, kept warm); maxtasksperchild replaces it with a fresh one.

What differs from processes: a worker cannot be killed, so task_timeout is refused and WorkerLost
never happens (a crash takes the whole process); terminate() and Ctrl-C interrupt running tasks
with KeyboardInterrupt at their next bytecode instead. C extensions that do not declare
per-interpreter GIL support refuse to load (numpy today): a task that needs one fails with
SubinterpreterImportError, which names the module and points to backend="process".
"""
from __future__ import annotations

import atexit
import pickle
import sys
import threading
import weakref
from concurrent.futures.process import BrokenProcessPool

from . import _backend_process
from . import _core
from . import _serialize as ser
from ._backend_thread import ThreadEngine, ThreadHost
from ._engine_base import EngineBase
from ._interp import SubinterpreterImportError  # noqa: F401 - what tasks may fail with
from ._protocol import worker_slot

MIN_VERSION = (3, 12)


def check_supported():
    """Raises RuntimeError when this Python or this build cannot host interpreter workers."""
    if sys.version_info < MIN_VERSION:
        raise RuntimeError(
            "backend='interpreter' needs Python 3.12 or later (subinterpreters with their own GIL, "
            f"PEP 684); this is Python {sys.version_info.major}.{sys.version_info.minor}: "
            "use backend='process'")
    if not hasattr(_core, "InterpWorker"):
        raise RuntimeError("this build of allcores has no subinterpreter host "
                           "(allcores._core.InterpWorker): use backend='process'")


_live_engines: "weakref.WeakSet[InterpreterEngine]" = weakref.WeakSet()
_exit_hook_installed = False


def _stop_at_exit():
    """Runs when the main thread ends, before threading joins the non-daemon threads: stops every
    pool, so that its worker threads end (a task blocked in C finishes first) and no
    subinterpreter is still running when the interpreter finalizes (3.12 aborts then:
    "PyInterpreterState_Delete: remaining subinterpreters")."""
    for engine in list(_live_engines):
        try:
            engine.terminate()
        except Exception:
            pass


def subinterpreters_running():
    """True while a pool of this process runs subinterpreter workers."""
    return any(t.is_alive() for engine in list(_live_engines) for t in engine.worker_threads())


def _refuse_fork():
    if subinterpreters_running():
        # CPython cannot fork a process in which isolated subinterpreters run: the child
        # aborts in PyOS_AfterFork_Child while deleting them, and the pool would wait for
        # workers that never come.
        return ("cannot start a process pool while a backend='interpreter' pool runs in this "
                "process: CPython cannot fork a process with live subinterpreters. Create the "
                "process pool first, or close (and join) the interpreter pool before")
    return None


_backend_process.fork_guards.append(_refuse_fork)


def _install_exit_hook():
    global _exit_hook_installed
    if not _exit_hook_installed:
        threading._register_atexit(_stop_at_exit)
        # Runs after threading joined the workers, before the runtime frees what subinterpreters
        # left to it (3.12.0-3.12.3 abort there otherwise: see disown_arg_parsers' doc).
        atexit.register(_core.disown_arg_parsers)
        _exit_hook_installed = True


class InterpreterHost(ThreadHost):
    """Each worker slot is a thread of this process that runs one subinterpreter at a time. The
    threads are not daemons: the process waits for them at exit, after _stop_at_exit stopped
    them."""

    daemon_threads = False

    def __init__(self, engine):
        super().__init__(engine)
        self._interps: dict[int, object] = {}

    def start(self, initializer, initargs, maxtasks, log_init_errors):
        payload = ser.cloudpickle().dumps((initializer, initargs, maxtasks), ser.PROTOCOL)
        # sys.path as it is now (the new interpreter would start from the interpreter's initial
        # one), so that tasks import in the workers what they import here.
        self._boot = pickle.dumps((list(sys.path), payload), ser.PROTOCOL)
        super().start(initializer, initargs, maxtasks, log_init_errors)
        self.engine.main_names = None  # a subinterpreter's __main__ is its own: by value

    def describe(self):
        return "subinterpreter workers"

    def wake(self):
        if self.engine.stopped:
            return  # no new interpreters for a pool that is stopping
        super().wake()

    def _thread_main(self, k):
        engine = self.engine
        region = engine.region
        status = 70 << 8
        try:
            worker = self._interps[k] = _core.InterpWorker()
            status, error = worker.run(region, k, self._boot)
            if error is not None:
                engine.break_pool(BrokenProcessPool(
                    f"worker {k}: its subinterpreter stopped with an error:\n{error}"))
        except BaseException as exc:  # noqa: B902 - the pool must hear of it, not the thread
            engine.break_pool(BrokenProcessPool(f"worker {k}: cannot run a subinterpreter: "
                                                f"{exc}"), cause=exc)
        finally:
            region.host_exited(k, status)

    def interrupt_running(self):
        """Running tasks get KeyboardInterrupt at their next bytecode."""
        region = self.engine.region
        for k, worker in list(self._interps.items()):
            if worker_slot(region, k).tid:
                worker.interrupt()

    def stop(self):
        super().stop()  # queued tasks are dropped
        self.interrupt_running()


class InterpreterEngine(ThreadEngine):
    """The shared-region engine with subinterpreter workers."""

    host_type = InterpreterHost
    parallel = True  # each interpreter has a GIL of its own (one worker per core by default)
    cannot_stop = ("backend='interpreter' cannot stop a task that runs too long (a "
                   "subinterpreter cannot be killed)")

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasks=None,
                 task_timeout=None, name="allcores-interpreters", arena_size=None, *,
                 executor=False):
        check_supported()
        _install_exit_hook()
        super().__init__(processes, initializer, initargs, maxtasks, task_timeout, name,
                         arena_size, executor=executor)
        _live_engines.add(self)

    def default_workers(self):
        return EngineBase.default_workers(self)

    def worker_threads(self):
        """The threads that run (or ran) this pool's subinterpreters."""
        return self._host.threads()
