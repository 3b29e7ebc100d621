"""allcores.ProcessPoolExecutor: a concurrent.futures.Executor on the allcores engine."""
from __future__ import annotations

import threading
import time
from concurrent.futures import Executor, TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool

from ._engine import Engine
from ._mapjob import MapJob
from .pool import IMapIterator, _check_timeout

__all__ = ["ProcessPoolExecutor"]


class _ExecutorMapIterator(IMapIterator):
    _timeout_error = FuturesTimeout


class ProcessPoolExecutor(Executor):
    """Drop-in for concurrent.futures.ProcessPoolExecutor.

    Args:
        max_workers: number of worker processes (default: os.cpu_count()).
        mp_context: accepted for compatibility; workers are always forked from a clean template.
        initializer, initargs: run in each worker as it starts; if it raises, the executor is
            broken (BrokenProcessPool), as in concurrent.futures.
        max_tasks_per_child: replace a worker after this many tasks.
        task_timeout: seconds a task may run before it fails with TaskTimeout (worker replaced).
        backend, backend_options: as for Pool ("thread", "interpreter", "dask" with address=).
    """

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(), *,
                 max_tasks_per_child=None, task_timeout=None, backend="process",
                 **backend_options):
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        if backend != "process" or backend_options:
            from ._backends import make_engine
            self._engine = make_engine(backend, max_workers, initializer, initargs,
                                       max_tasks_per_child, task_timeout, **backend_options)
        else:
            self._engine = Engine(max_workers, initializer, initargs, max_tasks_per_child,
                                  task_timeout, name="allcores-executor")
        self._max_workers = self._engine.nworkers

    def submit(self, fn, /, *args, **kwargs):
        with self._shutdown_lock:
            if self._engine.broken is not None:
                raise BrokenProcessPool(str(self._engine.broken))
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            return self._engine.submit_call(fn, args, kwargs or None)

    submit.__doc__ = Executor.submit.__doc__

    def map(self, fn, *iterables, timeout=None, chunksize=None, buffersize=None,
            task_timeout=None):
        """Returns an iterator equivalent to map(fn, *iterables), run in the workers.

        The input is read whole by this call, as the standard library does, so an error it
        raises is raised here (and no task runs); with buffersize=N it is read lazily, N items
        ahead of the consumer, and an error it raises comes from the iterator, after the results
        of every item read before it. Tasks are sent as the consumer goes, a bounded number of
        them ahead. timeout (seconds, from this call) bounds the wait for each next result; on expiry the
        iterator raises TimeoutError and the remaining tasks are cancelled. task_timeout bounds
        each item's run time (TaskTimeout at its position; its worker is replaced), as Pool's
        maps do.
        """
        if chunksize is not None and chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        task_timeout = _check_timeout(task_timeout, self._engine)
        with self._shutdown_lock:
            if self._engine.broken is not None:
                raise BrokenProcessPool(str(self._engine.broken))
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        deadline = None if timeout is None else time.monotonic() + timeout
        items = zip(*iterables)
        if not buffersize:
            items = list(items)
        it = _ExecutorMapIterator(self._engine, True)
        window = max(1, buffersize) if buffersize else None
        job = MapJob(self._engine, fn, items, chunksize, True, it, lazy=True,
                     window=window, timeout=task_timeout)
        it._bind(job)
        job.start()
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

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._shutdown_lock:
            self._shutdown = True
        if cancel_futures:
            self._engine.cancel_queued()
        self._engine.close()
        if wait:
            self._engine.join()

    shutdown.__doc__ = Executor.shutdown.__doc__

    def __del__(self):
        engine = getattr(self, "_engine", None)
        if engine is not None and not getattr(self, "_shutdown", True):
            try:
                engine.terminate()
            except Exception:
                pass
