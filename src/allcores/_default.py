"""The process-wide default pool: started on first use, reused, closed at exit."""
from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

from .pool import IMapIterator, Pool, running, usable

_T = TypeVar("_T")
_R = TypeVar("_R")
_P = ParamSpec("_P")
_Progress = bool | Mapping[str, Any]

_lock = threading.Lock()
_pool: Pool | None = None
_owner_pid: int | None = None


def default_pool() -> Pool:
    """The process-wide pool (one worker per usable CPU), created on first use and reused; a
    forked child gets its own."""
    global _pool, _owner_pid
    with _lock:
        pool = _pool
        if pool is None or _owner_pid != os.getpid() or not usable(pool):
            if pool is not None and _owner_pid == os.getpid() and running(pool):
                pool.terminate()  # a broken pool: stopped, not dropped running
            pool = _pool = Pool()
            _owner_pid = os.getpid()
        return pool


def map(fn: Callable[[_T], _R], iterable: Iterable[_T], chunksize: int | None = None,  # noqa: A001
        progress: _Progress = False) -> list[_R]:
    """pool.map on the default pool."""
    return default_pool().map(fn, iterable, chunksize, progress=progress)


def imap(fn: Callable[[_T], _R], iterable: Iterable[_T], chunksize: int | None = None,
         progress: _Progress = False) -> IMapIterator[_R]:
    """pool.imap on the default pool: results in order, the input consumed as workers free up."""
    return default_pool().imap(fn, iterable, chunksize, progress=progress)


def imap_unordered(fn: Callable[[_T], _R], iterable: Iterable[_T], chunksize: int | None = None,
                   progress: _Progress = False) -> IMapIterator[_R]:
    """pool.imap_unordered on the default pool: results as they complete."""
    return default_pool().imap_unordered(fn, iterable, chunksize, progress=progress)


def starmap(fn: Callable[..., _R], iterable: Iterable[Iterable[Any]],
            chunksize: int | None = None, progress: _Progress = False) -> list[_R]:
    """pool.starmap on the default pool."""
    return default_pool().starmap(fn, iterable, chunksize, progress=progress)


def submit(fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_R]:
    """pool.submit on the default pool: returns a concurrent.futures.Future."""
    return default_pool().submit(fn, *args, **kwargs)


def shutdown_default_pool() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None and _owner_pid == os.getpid():
        pool.terminate()


atexit.register(shutdown_default_pool)
