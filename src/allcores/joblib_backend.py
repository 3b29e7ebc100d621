"""A joblib backend named "allcores": existing joblib and scikit-learn code runs on allcores pools.

    import allcores.joblib_backend          # registers the backend (register() does it again)
    import joblib
    with joblib.parallel_config(backend="allcores"):
        scores = cross_val_score(model, X, y, n_jobs=2)
    with joblib.parallel_config(backend="allcores", pool_backend="thread"):
        ...                                  # another Pool backend (process is the default)

joblib hands the backend batches of calls (auto-batched, as with loky: batches of 0.2-2 s); each
batch is one allcores task. The pool is kept between Parallel calls (one per size and backend,
as loky reuses its executor) and closed at exit. Aborting a call (an error in one task, or
Parallel's timeout) terminates that pool, running tasks included; the next call starts another.
pool_backend="interpreter" cannot run joblib's batches: joblib imports faulthandler, which
Python 3.13 refuses in subinterpreters (the tasks fail with SubinterpreterImportError).
"""
from __future__ import annotations

import os
import threading

from joblib import register_parallel_backend
from joblib._parallel_backends import (AutoBatchingMixin, FallbackToBackend,
                                       ParallelBackendBase, SequentialBackend)

from .pool import Pool

__all__ = ["AllcoresBackend", "register", "close_pools"]

NAME = "allcores"

_pools: dict[tuple, Pool] = {}
_pools_lock = threading.Lock()


def _pool_for(n_jobs, backend, options):
    key = (n_jobs, backend, tuple(sorted(options.items())))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool._state != "RUN" or pool._engine.broken is not None:
            pool = _pools[key] = Pool(n_jobs, backend=backend, **options)
        return pool


def _drop(pool):
    with _pools_lock:
        for key, p in list(_pools.items()):
            if p is pool:
                del _pools[key]
    pool.terminate()


def close_pools():
    """Terminates the pools kept for joblib (they are also closed at exit)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.terminate()
        pool.join()


class AllcoresBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib's ParallelBackendBase on an allcores Pool.

    Args:
        pool_backend: the Pool backend ("process", "thread", "interpreter", "dask").
        pool_options: the Pool backend's own keywords (dask: address= or client=).
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
        self.parallel = parallel
        self._pool = _pool_for(n_jobs, self.pool_backend, self.pool_options)
        return n_jobs

    def submit(self, func, callback=None):
        future = self._pool.submit(func)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, future):
        return future.result()

    def terminate(self):
        # The pool stays for the next Parallel call (closed at exit).
        self._pool = None
        self.reset_batch_stats()

    def abort_everything(self, ensure_ready=True):
        if self._pool is not None:
            _drop(self._pool)
            self._pool = None
        if ensure_ready:
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)


def register():
    """Registers the joblib backend "allcores" (idempotent)."""
    register_parallel_backend(NAME, AllcoresBackend)


register()
