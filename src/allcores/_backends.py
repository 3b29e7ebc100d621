"""The backends behind Pool(backend=...) and ProcessPoolExecutor(backend=...), and the one place
an engine is chosen (make_engine).

Three backends keep the same transport (the shared region, its rings and arena: _engine.Engine)
and the same worker loop (_worker.main); only the *host* of the workers changes:

    process      forked from a template process (the default; _backend_process.py)
    thread       threads of this process: for I/O-bound work, and truly parallel on
                 free-threaded builds (_backend_thread.py)
    interpreter  threads of this process, each running a subinterpreter with its own GIL
                 (Python 3.12+; _backend_interpreter.py)

One more keeps the API but not the transport:

    dask         tasks run on an existing dask.distributed cluster (_backend_dask.py)

and one is a choice among the others, made when the pool is created (see choose_auto):

    auto         thread where threads run Python in parallel (a free-threaded build with its GIL
                 off), process elsewhere
"""
from __future__ import annotations

from ._backend_process import ProcessEngine
from ._backend_thread import (ThreadEngine, default_thread_workers, free_threaded_build,
                              python_in_parallel)

__all__ = ["BACKENDS", "choose_auto", "make_engine", "python_in_parallel", "free_threaded_build",
           "default_thread_workers"]

BACKENDS = ("process", "thread", "interpreter", "dask", "auto")


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


def make_engine(backend, processes, initializer, initargs, maxtasks, task_timeout, *,
                executor=False, **options):
    """The engine for Pool(backend=...), or for ProcessPoolExecutor(backend=...) with executor
    (then with concurrent.futures' behaviours: a failing initializer is logged, and queued work
    is finished at interpreter exit). options are the backend's own keywords (process, thread,
    interpreter: arena_size=; dask: address= or client=)."""
    if backend == "auto" and set(options) <= {"arena_size"}:
        backend = choose_auto(task_timeout)[0]
    args = (processes, initializer, initargs, maxtasks, task_timeout)
    if backend == "dask":
        from ._backend_dask import DaskEngine
        return DaskEngine(*args, executor=executor, **options)
    # every shared-region backend has an arena for the arguments and results in flight
    arena_size = options.pop("arena_size", None)
    if options:
        raise TypeError(f"backend={backend!r} takes no option {', '.join(map(repr, options))}")
    if backend == "process":
        return ProcessEngine(*args, "allcores-executor" if executor else "allcores-pool",
                             arena_size, executor=executor)
    if backend == "thread":
        return ThreadEngine(*args, arena_size=arena_size, executor=executor)
    if backend == "interpreter":
        from ._backend_interpreter import InterpreterEngine
        return InterpreterEngine(*args, arena_size=arena_size, executor=executor)
    raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
