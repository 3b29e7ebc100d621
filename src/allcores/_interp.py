"""backend="interpreter": workers are subinterpreters with their own GIL (PEP 684, Python 3.12+).

    parent interpreter                                 one OS thread per worker slot k
    ------------------                                 -------------------------------
    Engine (rings, collector, futures) --- same ---    _core.InterpWorker.run(region, k, boot):
    submit -> pickle -> [task ring]     shared region     Py_NewInterpreterFromConfig(isolated)
    futures <- unpickle <- [result ring]  (C memory)      sub_main(): _worker.main on a Region
                                                          *view* of the same mapping
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
import re
import sys
import threading
import weakref
from concurrent.futures.process import BrokenProcessPool

from . import _core
from . import _serialize as ser
from . import _worker as W
from ._protocol import RESULT_INIT_ERR, worker_slot
from ._backends import ThreadEngine
from ._engine_base import EngineBase

MIN_VERSION = (3, 12)
# What CPython says when an extension without per-interpreter GIL support is imported.
_REFUSED = re.compile(r"module (\S+) does not support loading in subinterpreters")


class SubinterpreterImportError(ImportError):
    """A module a task needs cannot be loaded in a subinterpreter (its C extension does not
    support a per-interpreter GIL); run such tasks with backend="process"."""


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
    return any(t.is_alive() for engine in list(_live_engines)
               for t in list(getattr(engine, "_threads", {}).values()))


def _install_exit_hook():
    global _exit_hook_installed
    if not _exit_hook_installed:
        threading._register_atexit(_stop_at_exit)
        # Runs after threading joined the workers, before the runtime frees what subinterpreters
        # left to it (3.12.0-3.12.3 abort there otherwise: see disown_arg_parsers' doc).
        atexit.register(_core.disown_arg_parsers)
        _exit_hook_installed = True


class InterpreterEngine(ThreadEngine):
    """Each worker slot is a thread of this process that runs one subinterpreter at a time. The
    threads are not daemons: the process waits for them at exit, after _stop_at_exit stopped
    them."""

    daemon_threads = False
    parallel = True  # each interpreter has a GIL of its own (one worker per core by default)
    cannot_stop = ("backend='interpreter' cannot stop a task that runs too long (a "
                   "subinterpreter cannot be killed)")

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasks=None,
                 task_timeout=None, name="allcores-interpreters"):
        check_supported()
        _install_exit_hook()
        super().__init__(processes, initializer, initargs, maxtasks, task_timeout, name)
        _live_engines.add(self)

    def default_workers(self):
        return EngineBase.default_workers(self)

    def _host_start(self, initializer, initargs, maxtasks):
        self._interps: dict[int, object] = {}
        payload = ser._cloudpickle().dumps((initializer, initargs, maxtasks), ser.PROTOCOL)
        # sys.path as it is now (the new interpreter would start from the interpreter's initial
        # one), so that tasks import in the workers what they import here.
        self._boot = pickle.dumps((list(sys.path), payload), ser.PROTOCOL)
        super()._host_start(initializer, initargs, maxtasks)
        self.main_names = None  # a subinterpreter's __main__ is its own: functions go by value

    def _host_name(self):
        return "subinterpreter workers"

    def _host_wake(self):
        if self._broken is not None or self._terminated:
            return  # no new interpreters for a pool that is stopping
        super()._host_wake()

    def _thread_main(self, k):
        status = 70 << 8
        try:
            worker = self._interps[k] = _core.InterpWorker()
            status, error = worker.run(self._region, k, self._boot)
            if error is not None:
                self._break(BrokenProcessPool(
                    f"worker {k}: its subinterpreter stopped with an error:\n{error}"))
        except BaseException as exc:  # noqa: B902 - the pool must hear of it, not the thread
            self._break(BrokenProcessPool(f"worker {k}: cannot run a subinterpreter: {exc}"),
                        cause=exc)
        finally:
            self._region.host_exited(k, status)

    def _interrupt_running(self, task_ids=None):
        region = self._region
        for k, worker in list(self._interps.items()):
            tid = worker_slot(region, k).tid
            if tid and (task_ids is None or tid in task_ids):
                worker.interrupt()

    def _stop_processes(self):
        super()._stop_processes()  # queued tasks are dropped
        self._interrupt_running()

    def _stop_running(self):
        super()._stop_running()
        self._interrupt_running()


# -- in the subinterpreter ------------------------------------------------------------------

def sub_main(region, k, payload):
    """Runs worker slot k in the subinterpreter (called by InterpWorker.run); returns its exit
    code."""
    _explain_refused_imports()
    import multiprocessing
    # as worker processes are named, so that tasks can tell workers apart
    multiprocessing.current_process().name = f"AllcoresPoolWorker-{k + 1}"
    try:
        initializer, initargs, maxtasks = ser._loads(payload)
    except BaseException as exc:  # noqa: B902 - the parent reports it as the initializer's failure
        region.send_result(k, 0, RESULT_INIT_ERR, k, ser.dumps_exception(exc, "initializer"))
        return W.EXIT_INIT_FAILED
    try:
        return W.main(region, k, initializer, initargs, maxtasks)
    except KeyboardInterrupt:
        # interrupt() meant for a task that had just finished: this worker ends (and is
        # replaced if the pool goes on); its task, if it had taken one, is accounted for.
        return 0


def _explain(exc):
    """exc, or a SubinterpreterImportError naming the module when exc (or what caused it) is
    CPython refusing an extension module in a subinterpreter."""
    seen = exc
    for _ in range(8):
        if seen is None:
            break
        m = _REFUSED.search(str(seen)) if isinstance(seen, ImportError) else None
        if m:
            module = m.group(1)
            top = module.split(".")[0]
            new = SubinterpreterImportError(
                f"{top} cannot be used in a subinterpreter: its extension module {module} does "
                f"not support loading in subinterpreters (a per-interpreter GIL needs every C "
                f"extension to declare support). Run tasks that need {top} with "
                f"backend='process'.", name=module)
            new.__cause__ = exc
            return new
        seen = seen.__cause__ or seen.__context__
    return exc


def _explain_refused_imports():
    # Patched in this interpreter's own copy of the module: the parent's is untouched.
    dumps_exception = ser.dumps_exception
    if getattr(dumps_exception, "_explains", False):
        return

    def explaining(exc, what):
        return dumps_exception(_explain(exc), what)

    explaining._explains = True
    ser.dumps_exception = explaining
