"""A joblib backend named "allcores": existing joblib and scikit-learn code runs on allcores pools.

    import allcores.joblib_backend          # registers the backend (register() does it again)
    import joblib
    with joblib.parallel_config(backend="allcores"):
        scores = cross_val_score(model, X, y, n_jobs=2)
    with joblib.parallel_config(backend="allcores", pool_backend="thread"):
        ...                                  # another Pool backend (process is the default)

joblib hands the backend batches of calls (auto-batched, as with loky: batches of 0.2-2 s); each
batch is one allcores task. The pool is kept between Parallel calls (one per size and backend,
as loky reuses its executor) and closed at exit; Parallel(initializer=, initargs=) and
parallel_config(backend="allcores", initializer=...) run the initializer in every worker (a pool
with another initializer or other arguments replaces the kept one). Aborting a call (an error in
one task, or Parallel's timeout) terminates that pool, running tasks included; the next call
starts another.

Arrays travel as with loky: a numpy.memmap (or a view of one) arrives as a mapping of the same
file region in the same mode, so what workers write into a mode "r+" or "w+" memmap is in the
file; with the process pool, an array bigger than max_nbytes (1 MB by default) is dumped once to
a file in temp_folder and mapped by the workers in mmap_mode ("r": read-only), by joblib's own
reducer; results come back as values. The files are removed when the Parallel call ends.

Workers of the process pool say they are daemonic, as multiprocessing's pool workers do: joblib's
loky and multiprocessing backends called inside a task then run with n_jobs=1 (with joblib's
warning) instead of forking from a worker; this backend may nest (each worker starts a pool).
pool_backend="interpreter" cannot run joblib's batches: joblib imports faulthandler, which
Python 3.13 refuses in subinterpreters (the tasks fail with SubinterpreterImportError).
"""
from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import sys
import threading
from concurrent.futures import Future

from joblib import register_parallel_backend
from joblib._parallel_backends import (AutoBatchingMixin, FallbackToBackend,
                                       ParallelBackendBase, SequentialBackend)

from . import _core, _memmap
from .pool import Pool, usable

try:  # joblib's auto-memmapping machinery (what its loky and multiprocessing backends use)
    from joblib._memmapping_reducer import (JOBLIB_MMAPS, TemporaryResourcesManager,
                                            get_memmapping_reducers, has_shareable_memory)
except ImportError:  # pragma: no cover - a joblib without it: arrays travel as values
    JOBLIB_MMAPS = TemporaryResourcesManager = get_memmapping_reducers = None
else:
    _memmap.by_value(JOBLIB_MMAPS)  # a result must not be a mapping of a file about to go

__all__ = ["AllcoresBackend", "register", "close_pools"]

NAME = "allcores"

_pools: dict[tuple, tuple] = {}  # key -> (pool, initializer, initargs)
_pools_lock = threading.Lock()
_inherited: list = []  # a forked child's copy of its parent's pools: never used, never closed


def _after_fork_in_child():
    """A forked child (a worker included) starts its own pools: the parent's are not its own,
    and the cache lock may have been held by another thread of the parent when it forked."""
    global _pools_lock
    _pools_lock = threading.Lock()
    _inherited.extend(_pools.values())  # kept alive: dropping one would stop the parent's pool
    _pools.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _same_initializer(entry, initializer, initargs):
    if entry[1] is not initializer:
        return False
    try:
        return bool(entry[2] == initargs)
    except Exception:
        return False


def _worker_start(initializer, initargs):
    """A process pool worker's initializer: daemonic, as a multiprocessing pool's workers (see
    the module's docstring), then the caller's initializer."""
    multiprocessing.current_process().daemon = True
    if initializer is not None:
        initializer(*initargs)


def _pool_for(n_jobs, backend, options, initializer=None, initargs=()):
    key = (n_jobs, backend, tuple(sorted(options.items())))
    with _pools_lock:
        entry = _pools.get(key)
        if entry is not None and usable(entry[0]) and \
                _same_initializer(entry, initializer, initargs):
            return entry[0]
    # Started outside the lock: the pool forks, and a child must not inherit the lock held.
    if backend == "process":
        pool = Pool(n_jobs, _worker_start, (initializer, initargs), backend=backend, **options)
    else:
        pool = Pool(n_jobs, initializer, initargs, backend=backend, **options)
    with _pools_lock:
        old = _pools.get(key)
        if old is not None and usable(old[0]) and _same_initializer(old, initializer, initargs):
            winner = old[0]  # another thread started one meanwhile: ours is not used
        else:
            winner = pool
            _pools[key] = (pool, initializer, initargs)
    if winner is not pool:
        pool.terminate()
    elif old is not None:
        old[0].close()  # tasks it still runs finish; new calls go to the new pool
    return winner


def _drop(pool):
    with _pools_lock:
        for key, entry in list(_pools.items()):
            if entry[0] is pool:
                del _pools[key]
    pool.terminate()


def close_pools():
    """Terminates the pools kept for joblib (they are also closed at exit)."""
    with _pools_lock:
        pools = [entry[0] for entry in _pools.values()]
        _pools.clear()
    for pool in pools:
        pool.terminate()
        pool.join()


def _run_batch(stream, *buffers):
    """In a worker: a batch pickled by _BatchPickler, run."""
    return pickle.loads(stream, buffers=buffers)()


def _batch_pickler():
    import cloudpickle

    class _BatchPickler(cloudpickle.Pickler):
        """Pickles joblib's batches: memmaps by reference, arrays over max_nbytes through
        joblib's memmapping reducer, other big arrays out of band."""

        def __init__(self, file, forward, max_nbytes, buffer_callback):
            super().__init__(file, protocol=5, buffer_callback=buffer_callback)
            np = sys.modules.get("numpy")
            self._arrays = (np.ndarray, np.memmap) if np is not None else ()
            self._memmap = np.memmap if np is not None else None
            self._forward = forward
            self._max_nbytes = max_nbytes

        def reducer_override(self, obj):
            t = type(obj)
            if t in self._arrays:
                forward = self._forward
                if forward is not None and (
                        has_shareable_memory(obj) or (self._max_nbytes is not None and
                                                      not obj.dtype.hasobject and
                                                      obj.nbytes > self._max_nbytes)):
                    return forward(obj)
                if t is self._memmap:
                    return _memmap.reduce(obj)
            return super().reducer_override(obj)

    return _BatchPickler


_BatchPicklerType = None


def _pack(batch, forward, max_nbytes):
    """(stream, *buffers): the arguments of _run_batch. Buffers of 64 KiB and more travel out
    of band (zero-copy in the worker); smaller ones stay in the stream."""
    global _BatchPicklerType
    if _BatchPicklerType is None:
        _BatchPicklerType = _batch_pickler()
    buffers = []

    def keep(buf):
        raw = buf.raw()
        if raw.nbytes < _core.OOB_MIN_BYTES:
            return True
        buffers.append(raw)
        return False

    f = io.BytesIO()
    _BatchPicklerType(f, forward, max_nbytes, keep).dump(batch)
    return (f.getvalue(), *buffers)


class AllcoresBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib's ParallelBackendBase on an allcores Pool.

    Args:
        pool_backend: the Pool backend ("process", "thread", "interpreter", "dask").
        pool_options: the Pool backend's own keywords (dask: address= or client=).
        initializer, initargs: run in every worker before its first task.
    """

    supports_retrieve_callback = True
    supports_inner_max_num_threads = False
    uses_threads = False
    supports_sharedmem = False

    def __init__(self, nesting_level=None, inner_max_num_threads=None, pool_backend="process",
                 pool_options=None, **backend_kwargs):
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads, **backend_kwargs)
        self.pool_backend = pool_backend
        self.pool_options = dict(pool_options or {})
        self._pool = None
        self._temp = None       # joblib's TemporaryResourcesManager of this call's dumped arrays
        self._forward = None    # joblib's reducer dumping big arrays there
        self._max_nbytes = None
        self._temp_root = None
        self._temp_lock = threading.Lock()

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            return max((os.cpu_count() or 1) + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **backend_kwargs):
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        options = {**self.backend_kwargs, **backend_kwargs}
        initializer = options.get("initializer")
        initargs = tuple(options.get("initargs") or ())
        self.parallel = parallel
        self._pool = _pool_for(n_jobs, self.pool_backend, self.pool_options, initializer, initargs)
        self._set_memmapping(options)
        return n_jobs

    def _set_memmapping(self, options):
        """joblib's max_nbytes, mmap_mode and temp_folder, as its process backends read them."""
        self._clean_temporary(force=False)
        self._max_nbytes = options.get("max_nbytes", 1e6)
        self._forward = None
        if self.pool_backend != "process" or get_memmapping_reducers is None or \
                "numpy" not in sys.modules:
            return
        self._temp_root = options.get("temp_folder")
        forward, _ = get_memmapping_reducers(
            temp_folder_resolver=self._temp_folder,
            max_nbytes=self._max_nbytes, mmap_mode=options.get("mmap_mode", "r"),
            verbose=options.get("verbose", 0), unlink_on_gc_collect=False, prewarm=False)
        import numpy as np
        self._forward = forward[np.ndarray]

    def _temp_folder(self):
        """This call's folder for dumped arrays, made when the first is dumped: a call that dumps
        nothing starts no resource tracker process and makes no folder."""
        with self._temp_lock:
            if self._temp is None:
                self._temp = TemporaryResourcesManager(self._temp_root)
            return self._temp.resolve_temp_folder_name()

    def _clean_temporary(self, force):
        temp, self._temp = self._temp, None
        if temp is not None:
            temp._clean_temporary_resources(force=force, allow_non_empty=force)

    def submit(self, func, callback=None):
        if self.pool_backend == "dask":  # cluster workers may not see this machine's files
            future = self._pool.submit(func)
        else:
            try:
                args = _pack(func, self._forward, self._max_nbytes)
            except Exception as exc:  # the batch's own error, where joblib reports results
                future = Future()
                future.set_exception(exc)
            else:
                future = self._pool.submit(_run_batch, *args)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, future):
        return future.result()

    def terminate(self):
        # The pool stays for the next Parallel call (closed at exit); this call's files go.
        self._pool = None
        self._clean_temporary(force=False)
        self.reset_batch_stats()

    def abort_everything(self, ensure_ready=True):
        if self._pool is not None:
            _drop(self._pool)
            self._pool = None
        self._clean_temporary(force=True)
        if ensure_ready:
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel,
                           **self.parallel._backend_kwargs)


def register():
    """Registers the joblib backend "allcores" (idempotent)."""
    register_parallel_backend(NAME, AllcoresBackend)


register()
