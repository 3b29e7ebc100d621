"""allcores.ProcessPoolExecutor: a concurrent.futures.Executor on the allcores engine."""
from __future__ import annotations

import os
import signal
import threading
import time
import weakref
from concurrent.futures import Executor, TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool

from ._backends import make_engine
from ._engine import interpreter_exiting
from ._mapjob import MapJob
from . import _facade
from .pool import IMapIterator

__all__ = ["ProcessPoolExecutor"]


class _ExecutorMapIterator(IMapIterator):
    """Pool's imap iterator, raising concurrent.futures' TimeoutError, with what the executor's
    map generator needs of it."""
    _timeout_error = FuturesTimeout

    def bind(self, job):
        self._bind(job)

    def close_progress(self):
        if self._progress is not None:
            self._progress.close()


class ProcessPoolExecutor(Executor):
    """Drop-in for concurrent.futures.ProcessPoolExecutor.

    Args:
        max_workers: number of worker processes (default: the CPUs this process may use: its
            affinity mask and cgroup CPU quota, at most os.cpu_count()).
        mp_context: accepted for compatibility; workers are always forked from a clean template
            (a RuntimeWarning says so when spawn or forkserver is asked for).
        initializer, initargs: run in each worker as it starts; if it raises, the executor is
            broken (BrokenProcessPool), as in concurrent.futures.
        max_tasks_per_child: replace a worker after this many tasks.
        task_timeout: seconds a task may run before it fails with TaskTimeout (worker replaced).
        backend, backend_options: as for Pool ("thread", "interpreter", "dask" with address=).
        arena_size: as for Pool: how far the arena for arguments and results in flight may grow.
    """

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(), *,
                 max_tasks_per_child=None, task_timeout=None, backend="process",
                 arena_size=None, **backend_options):
        if mp_context is not None and backend == "process":
            _facade.warn_start_method(mp_context, 2)
        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        self._input_maps = weakref.WeakSet()   # maps reading their input as they go (buffersize)
        self._owner_pid = os.getpid()
        if arena_size is not None:
            backend_options["arena_size"] = arena_size
        self._engine = make_engine(backend, max_workers, initializer, initargs,
                                   max_tasks_per_child, task_timeout, executor=True,
                                   **backend_options)
        self._max_workers = self._engine.nworkers

    def submit(self, fn, /, *args, **kwargs):
        with self._shutdown_lock:
            if self._engine.broken is not None:
                raise BrokenProcessPool(str(self._engine.broken))
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            try:
                return self._engine.submit_call(fn, args, kwargs or None)
            except ValueError:  # the engine is closed: only interpreter exit does that here
                if interpreter_exiting():
                    raise RuntimeError(
                        "cannot schedule new futures after interpreter shutdown") from None
                raise

    submit.__doc__ = Executor.submit.__doc__

    def map(self, fn, *iterables, timeout=None, chunksize=None, buffersize=None,
            task_timeout=None, progress=False):
        """Returns an iterator equivalent to map(fn, *iterables), run in the workers.

        The input is read whole by this call, as the standard library does, so an error it
        raises is raised here (and no task runs); with buffersize=N it is read lazily, N items
        ahead of the consumer, and an error it raises comes from the iterator, after the results
        of every item read before it. Tasks are sent as the consumer goes, a bounded number of
        them ahead. timeout (seconds, from this call) bounds the wait for each next result; on expiry the
        iterator raises TimeoutError and the remaining tasks are cancelled. task_timeout bounds
        each item's run time (TaskTimeout at its position; its worker is replaced), as Pool's
        maps do. progress=True (or a dict of tqdm options) shows a tqdm bar, as Pool.map does.
        """
        if chunksize is not None and chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        task_timeout = self._engine.check_timeout(task_timeout)
        with self._shutdown_lock:
            if self._engine.broken is not None:
                raise BrokenProcessPool(str(self._engine.broken))
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if interpreter_exiting():
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        deadline = None if timeout is None else time.monotonic() + timeout
        items = zip(*iterables)
        if not buffersize:
            items = list(items)
        total = None
        if progress:
            if isinstance(items, list):
                total = len(items)
            elif all(hasattr(i, "__len__") for i in iterables):
                total = min((len(i) for i in iterables), default=0)
        it = _ExecutorMapIterator(self._engine, True, _facade.progress_bar(progress, total))
        window = max(1, buffersize) if buffersize else None
        if chunksize is None and (buffersize or self._engine.maxtasks is not None):
            # max_tasks_per_child counts items, as concurrent.futures' (chunksize 1) does, and
            # buffersize bounds the items read ahead: no automatic batching then.
            chunksize = 1
        job = MapJob(self._engine, fn, items, chunksize, True, it, lazy=True,
                     window=window, timeout=task_timeout)
        it.bind(job)
        if buffersize:
            self._input_maps.add(job)
        _facade.start_job(job, self._engine,
                   lambda: RuntimeError("cannot schedule new futures after shutdown"))
        return self._results(it, job, deadline)

    def _results(self, it, job, deadline):
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    got = [it.next(left)]
                except StopIteration:
                    return
                yield got.pop()  # the generator keeps no reference to a result it handed over
        finally:
            if not job.exhausted or job.inflight:
                job.abort()
            it.close_progress()

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._shutdown_lock:
            self._shutdown = True
        # A map with buffersize reads no more of its input: as concurrent.futures', it can
        # submit nothing after shutdown (its iterator raises RuntimeError once it would have to).
        for job in list(self._input_maps):
            job.stop_input(RuntimeError("cannot schedule new futures after shutdown"))
        if cancel_futures:
            self._engine.cancel_queued()
        self._engine.close()
        if wait:
            self._engine.join()

    shutdown.__doc__ = Executor.shutdown.__doc__

    def terminate_workers(self):
        """Terminate every worker process now (SIGTERM) and shut the executor down, as
        concurrent.futures does from Python 3.14: queued tasks are cancelled, the running ones
        fail with BrokenProcessPool (WorkerLost), and no more work is accepted. With the thread
        and interpreter backends, whose workers are not processes, the running tasks' futures
        are cancelled instead (a thread cannot be stopped: it finishes its task, unheard)."""
        self._force_shutdown(operation="terminate")

    def kill_workers(self):
        """As terminate_workers(), with SIGKILL: a worker cannot catch or ignore it."""
        self._force_shutdown(operation="kill")

    def _force_shutdown(self, operation):
        # concurrent.futures' name and operations ("terminate", "kill"), which its tests call
        signum = {"terminate": signal.SIGTERM, "kill": signal.SIGKILL}.get(operation)
        if signum is None:
            raise ValueError(f"Unsupported operation: {operation!r}")
        # The pids first: shutdown() lets idle workers exit, and a pid read after that could
        # already name another process.
        engine = self._engine
        pids = engine.worker_pids(timeout=0) if engine.worker_processes else None
        self.shutdown(wait=False, cancel_futures=True)
        if os.getpid() != self._owner_pid:  # a forked child: the workers are its parent's
            return
        if pids is None:
            if engine.owns_workers:
                engine.terminate()
            return
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # it ended before the signal
                pass

    def __del__(self):
        # As concurrent.futures: an executor dropped without shutdown() still finishes the
        # work it was given (its futures complete), then its workers exit.
        engine = getattr(self, "_engine", None)
        if engine is not None and not getattr(self, "_shutdown", True):
            try:
                engine.close()
            except Exception:
                pass
