"""asyncio forms of a pool's calls. None of them blocks the event loop: results are collected by
the pool's own thread (or the cluster's client for backend="dask") and handed to the loop with
call_soon_threadsafe.

    values = await pool.map_async(fn, items)              # the AsyncResults are awaitable
    value = await asyncio.wrap_future(pool.submit(fn, x))  # so is every pool future
    value = await allcores.aio.apply(pool, fn, x)
    values = await allcores.aio.map(pool, fn, items)
    values = await allcores.aio.map(pool, fn, items, progress=True)  # with a tqdm bar
    async for value in allcores.aio.imap(pool, fn, items):  # lazily fed, in order
        ...

For a ProcessPoolExecutor, loop.run_in_executor(executor, fn, *args) works as with the
standard library's.
"""
from __future__ import annotations

import asyncio

from .pool import IMapIterator, lazy_map

__all__ = ["apply", "map", "starmap", "imap", "imap_unordered"]


async def apply(pool, fn, /, *args, **kwargs):
    """fn(*args, **kwargs) in a worker of pool."""
    return await asyncio.wrap_future(pool.submit(fn, *args, **kwargs))


async def map(pool, fn, iterable, chunksize=None, progress=False):  # noqa: A001
    """[fn(x) for x in iterable] in the workers of pool, in order (as Pool.map; progress=True
    or a dict of tqdm options shows a bar)."""
    return await pool.map_async(fn, iterable, chunksize, progress=progress)


async def starmap(pool, fn, iterable, chunksize=None, progress=False):
    """[fn(*x) for x in iterable] in the workers of pool, in order."""
    return await pool.starmap_async(fn, iterable, chunksize, progress=progress)


class AsyncIMapIterator(IMapIterator):
    """An IMapIterator the event loop consumes with `async for`: the pool's thread wakes the loop
    when results arrive, instead of a caller thread waiting for them."""

    def __init__(self, engine, ordered, progress=None):
        super().__init__(engine, ordered, progress)
        self._loop = None
        self._event = None

    def _wake(self):
        # __anext__ sets the event before the loop: seeing the loop means the event is there
        # (the pool's thread may look while __anext__ runs, in parallel on a free-threaded build)
        loop, event = self._loop, self._event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed while results were still coming
                pass

    def chunk(self, start, values, errors):
        super().chunk(start, values, errors)
        self._wake()

    def done(self):
        super().done()
        self._wake()

    def fail(self, exc):
        super().fail(exc)
        self._wake()

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._loop is None:
            self._event = asyncio.Event()
            self._loop = asyncio.get_running_loop()
        while True:
            self._event.clear()  # before looking: a wake-up after this is never lost
            with self._lock:
                ready, got = self._take()
            if ready:
                break
            await self._event.wait()
        if got is None:
            if self._progress is not None:
                self._progress.close()
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            raise StopAsyncIteration
        self._job.note_consumed(1)
        if self._progress is not None:
            self._progress.update(1)
        ok, value = got
        if ok:
            return value
        raise value

    async def aclose(self):
        """Stop feeding the map (what is running finishes; its results are dropped)."""
        job = self._job
        if job is not None and (not job.exhausted or job.inflight):
            job.abort()
        if self._progress is not None:
            self._progress.close()


def _imap(pool, fn, iterable, chunksize, ordered, star, progress):
    return lazy_map(pool, fn, iterable, chunksize, ordered, star, progress, AsyncIMapIterator)


def imap(pool, fn, iterable, chunksize=None, progress=False):
    """An async iterator over fn(x) for x in iterable, in order; the input is consumed as workers
    free up (as Pool.imap)."""
    return _imap(pool, fn, iterable, chunksize, True, False, progress)


def imap_unordered(pool, fn, iterable, chunksize=None, progress=False):
    """Like imap, yielding results as they complete."""
    return _imap(pool, fn, iterable, chunksize, False, False, progress)
