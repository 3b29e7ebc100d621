"""The process-wide default pool: started on first use, reused, closed at exit."""
from __future__ import annotations

import atexit
import os
import threading

from .pool import RUN, Pool

_lock = threading.Lock()
_pool: Pool | None = None
_owner_pid = None


def default_pool() -> Pool:
    """The process-wide pool (one worker per usable CPU), created on first use and reused; a forked
    child gets its own."""
    global _pool, _owner_pid
    with _lock:
        pool = _pool
        if pool is None or _owner_pid != os.getpid() or pool._state != RUN or \
                pool._engine.broken is not None:
            pool = _pool = Pool()
            _owner_pid = os.getpid()
        return pool


def map(fn, iterable, chunksize=None, progress=False):
    """pool.map on the default pool."""
    return default_pool().map(fn, iterable, chunksize, progress=progress)


def imap(fn, iterable, chunksize=None, progress=False):
    """pool.imap on the default pool: results in order, the input consumed as workers free up."""
    return default_pool().imap(fn, iterable, chunksize, progress=progress)


def imap_unordered(fn, iterable, chunksize=None, progress=False):
    """pool.imap_unordered on the default pool: results as they complete."""
    return default_pool().imap_unordered(fn, iterable, chunksize, progress=progress)


def starmap(fn, iterable, chunksize=None, progress=False):
    """pool.starmap on the default pool."""
    return default_pool().starmap(fn, iterable, chunksize, progress=progress)


def submit(fn, /, *args, **kwargs):
    """pool.submit on the default pool: returns a concurrent.futures.Future."""
    return default_pool().submit(fn, *args, **kwargs)


def shutdown_default_pool():
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None and _owner_pid == os.getpid():
        pool.terminate()


atexit.register(shutdown_default_pool)
