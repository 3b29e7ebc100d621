"""allcores.Pool: a drop-in for multiprocessing.Pool on the allcores engine, plus submit().

Everything multiprocessing.Pool offers behaves as there (results, ordering, errors, callbacks,
close/join/terminate, the context manager), with these differences users ask for:
lambdas and closures work; chunksize=None picks chunk sizes from measured task times (imap too);
a worker that dies fails only its task (WorkerLost) instead of hanging the pool; task_timeout
stops a task that runs too long; submit() returns a concurrent.futures.Future.
"""
from __future__ import annotations

import collections
import multiprocessing
import threading
import time
import warnings
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool

from . import _facade
from . import _futures
from ._backends import make_engine
from ._futures import TaskFuture
from ._mapjob import MapJob, item_error

__all__ = ["Pool", "ApplyResult", "AsyncResult", "MapResult", "IMapIterator"]

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


def _print_callback_error(arg):
    import traceback
    traceback.print_exc()


def _run_callback(cb, arg):
    # multiprocessing runs callbacks in its result-handler thread, where one that raises prints
    # its traceback and kills that thread (the pool hangs): here the traceback is printed and
    # every other result is delivered as usual. Ctrl-C in the main thread propagates.
    _futures.run_contained(cb, arg, _print_callback_error)


class ApplyResult:
    """multiprocessing's AsyncResult over a concurrent.futures.Future."""

    def __init__(self, future, callback=None, error_callback=None):
        self._future = future
        self._callback = callback
        self._error_callback = error_callback
        self._delivered = None
        if callback is not None or error_callback is not None:
            # As multiprocessing, the result is ready once its callback has run. A Future wakes
            # its waiters before it runs its done-callbacks, so get(), wait() and ready() also
            # wait for this event (where threads run in parallel, get() would otherwise win).
            self._delivered = threading.Event()
            self._callback_thread = None
            future.add_done_callback(self._on_done)

    def _on_done(self, fut):
        self._callback_thread = threading.get_ident()
        try:
            if fut.cancelled():
                if self._error_callback is not None:
                    _run_callback(self._error_callback, CancelledError())
                return
            exc = fut.exception()
            if exc is None:
                if self._callback is not None:
                    _run_callback(self._callback, fut.result())
            elif self._error_callback is not None:
                _run_callback(self._error_callback, exc)
        finally:
            self._delivered.set()

    def _callbacks_ran(self, deadline=None):
        """After the future is done: waits until its callback has run (not in the callback's own
        thread: a callback may look at its own result) or the deadline; True when it has."""
        d = self._delivered
        if d is None or d.is_set() or self._callback_thread == threading.get_ident():
            return True
        return d.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def future(self):
        """The underlying concurrent.futures.Future (usable with asyncio.wrap_future)."""
        return self._future

    def ready(self):
        return self._future.done() and (self._delivered is None or self._delivered.is_set())

    def successful(self):
        if not self.ready():
            raise ValueError("{0!r} not ready".format(self))
        return not self._future.cancelled() and self._future.exception() is None

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._future.exception(timeout)
        except (TimeoutError, CancelledError):
            pass
        if self._future.done():
            self._callbacks_ran(deadline)

    def get(self, timeout=None):
        fut = self._future
        deadline = None if timeout is None or self._delivered is None else time.monotonic() + timeout
        try:
            value = fut.result(timeout)
        except TimeoutError:
            if fut.done():
                if not self._callbacks_ran(deadline):
                    raise multiprocessing.TimeoutError from None
                raise  # the task itself raised TimeoutError (or TaskTimeout)
            raise multiprocessing.TimeoutError from None
        except BaseException:
            if not self._callbacks_ran(deadline):
                raise multiprocessing.TimeoutError from None
            raise
        if self._delivered is not None and not self._callbacks_ran(deadline):
            raise multiprocessing.TimeoutError
        return value

    def __await__(self):
        import asyncio
        return asyncio.wrap_future(self._future).__await__()


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of map_async/starmap_async; also the job's sink."""

    def __init__(self, engine, callback=None, error_callback=None, progress=None):
        fut = TaskFuture(engine)
        self._values = []
        self._left = None
        self._job = None
        self._progress = progress
        self._lock = threading.Lock()
        super().__init__(fut, callback, error_callback)
        fut.add_done_callback(self._stop_if_cancelled)

    def _stop_if_cancelled(self, fut):
        """A cancelled result (as asyncio cancels an awaited one) stops its map."""
        if fut.cancelled() and self._job is not None:
            self._job.engine.cancel_job(self._job)

    def _bind(self, job):
        self._job = job
        self._values = [None] * job.total
        self._left = job.total
        if job.total == 0:
            self._finish()
        return self

    def _finish(self):
        if self._progress is not None:
            self._progress.close()
        try:
            self._future.set_result(self._values)
        except Exception:
            pass

    def item(self, index, ok, value):
        fut = self._future
        if fut.done():
            return
        if not ok:
            if self._progress is not None:
                self._progress.close()
            try:
                fut.set_exception(value)
            except Exception:
                pass
            if self._job is not None:
                self._job.abort()
            return
        self._values[index] = value
        if self._progress is not None:
            self._progress.update(1)
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish()

    def chunk(self, start, values, errors):
        if self._future.done():
            return
        if errors:
            first = min(errors)
            self.item(start + first, False, item_error(errors, first))
            return
        n = len(values)
        self._values[start:start + n] = values
        if self._progress is not None:
            self._progress.update(n)
        with self._lock:
            self._left -= n
            last = self._left == 0
        if last:
            self._finish()

    def done(self):
        if self._left == 0 and not self._future.done():
            self._finish()

    def fail(self, exc):
        if self._progress is not None:
            self._progress.close()
        try:
            self._future.set_exception(exc)
        except Exception:
            pass


class IMapIterator:
    """Iterator over a lazily fed map's results, in order (imap) or as they come
    (imap_unordered). next(timeout) raises multiprocessing.TimeoutError like multiprocessing's."""

    _timeout_error = multiprocessing.TimeoutError

    def __init__(self, engine, ordered, progress=None):
        self._engine = engine
        self._ordered = ordered
        # Guards the consumers' position (_cur, _pos, _next). Nobody waits on it: a consumer
        # waits in engine.wait_for(), which results end (see Engine.wait_for). The sink side
        # takes no lock: one dict or deque operation each, and it may run in the consumer's own
        # thread while that holds the lock (Ctrl-C inside next() stops the map).
        self._lock = threading.Lock()
        self._ready = {} if ordered else collections.deque()
        self._cur = None   # the run of results being consumed
        self._pos = 0
        self._next = 0
        self._done = False
        self._error = None
        self._delivered_total = None
        self._job = None
        self._yielded = 0
        self._progress = progress

    def _bind(self, job):
        self._job = job
        return self

    # sink side: each entry is a run of results (values, errors) starting at some index
    def chunk(self, start, values, errors):
        if self._ordered:
            self._ready[start] = (values, errors)
        else:
            self._ready.append((values, errors))

    def item(self, index, ok, value):
        if ok:
            self.chunk(index, [value], None)
        else:
            self.chunk(index, [None], {0: value})

    # _done is set last: whoever sees it set sees the rest.
    def done(self):
        self._delivered_total = self._job.submitted
        self._done = True

    def fail(self, exc):
        job = self._job
        self._error = exc
        # A stopped map's missing outcomes never come: the consumer ends at the first gap.
        self._delivered_total = None if job is None or job.stopped else job.submitted
        self._done = True

    def __del__(self):
        job = self._job
        if job is not None and not job.exhausted:
            try:
                job.abandon()  # dropped unfinished: read no more of its input
            except Exception:
                pass

    # consumer side
    def __iter__(self):
        return self

    def _take(self):
        """Returns (True, (ok, value)) when an item is available, (True, None) at the end."""
        cur = self._cur
        if cur is None:
            if self._ordered:
                cur = self._ready.pop(self._next, None)
            else:
                cur = self._ready.popleft() if self._ready else None
            if cur is None:
                if self._done and (self._delivered_total is None or
                                   self._next >= self._delivered_total):
                    return True, None
                return False, None
            self._cur = cur
            self._pos = 0
        values, errors = cur
        i = self._pos
        self._pos = i + 1
        self._next += 1
        if self._pos >= len(values):
            self._cur = None
        if errors and i in errors:
            exc = item_error(errors, i)
            errors[i] = None  # handed over: the iterator keeps no reference to it
            return True, (False, exc)
        value = values[i]
        values[i] = None
        return True, (True, value)

    def _has_ready(self):
        # Ordered: only the next run counts. Later runs arrive first all the time, and counting
        # them made the consumer spin through wait_for() until the next one came.
        if self._cur is not None:
            return True
        if self._next in self._ready if self._ordered else self._ready:
            return True
        # The end, once every item sent came back (a failed input ends the map with items
        # still in flight: their results come first).
        return self._done and (self._delivered_total is None or
                               self._next >= self._delivered_total)

    def next(self, timeout=None):
        # Runs once per item of every imap: kept to one frame, the common case first.
        try:
            with self._lock:
                ready, got = self._take()
            if not ready:
                got = self._wait_item(timeout)
        except KeyboardInterrupt:
            self._engine.interrupt()
            raise
        if got is None:
            if self._progress is not None:
                self._progress.close()
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            raise StopIteration
        job = self._job
        if job is not None:
            job.consumed += 1  # job.note_consumed(1), inlined
            if job.starved:
                job.feed()
        if self._progress is not None:
            self._progress.update(1)
        ok, value = got
        if ok:
            return value
        raise value

    def _wait_item(self, timeout):
        """Waits until an item or the end is there; returns what _take() gave."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise self._timeout_error
            self._engine.wait_for(self._has_ready, left)
            with self._lock:
                ready, got = self._take()
            if ready:
                return got

    __next__ = next


class Pool:
    """A process pool with multiprocessing.Pool's API on allcores' shared-memory transport.

    Args:
        processes: number of worker processes (default: the CPUs this process may use: its
            affinity mask and cgroup CPU quota, at most os.cpu_count()).
        initializer, initargs: run initializer(*initargs) in each worker when it starts.
        maxtasksperchild: replace a worker after it ran this many tasks (or chunks).
        context: accepted for compatibility; allcores always forks its workers from a clean
            template process (a RuntimeWarning says so when spawn or forkserver is asked for).
        task_timeout: seconds a task may run; past it the task raises TaskTimeout and its worker
            is killed and replaced.
        backend: "process" (default), "thread", "interpreter" (subinterpreters, Python 3.12+),
            "dask", or "auto" (threads on a free-threaded build with the GIL off, else processes);
            backend_options are that backend's own keywords (dask: address= or client=).
        arena_size: how far the shared arena for arguments and results in flight may grow
            (bytes, or a string such as "256M"; default: ALLCORES_ARENA_SIZE, else half the
            RAM, less under an address space limit, RLIMIT_AS). It is mapped as payloads need.
    """

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None, *, backend="process", task_timeout=None, arena_size=None,
                 **backend_options):
        self._state = RUN  # set first: __del__ must work even when __init__ fails
        self._engine = None
        if arena_size is not None:
            backend_options["arena_size"] = arena_size
        if context is not None and backend == "process":
            _facade.warn_start_method(context, 2)
        self._engine = make_engine(backend, processes, initializer, initargs, maxtasksperchild,
                                   task_timeout, **backend_options)
        self._processes = self._engine.nworkers

    # -- single calls ----------------------------------------------------------------------------

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")
        broken = self._engine.broken
        if broken is not None:  # as apply() says it: every call, maps included
            raise BrokenProcessPool(str(broken)) from broken

    def apply(self, func, args=(), kwds={}, *, task_timeout=None):
        """Call func(*args, **kwds) in a worker and return its result."""
        return self.apply_async(func, args, kwds, task_timeout=task_timeout).get()

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None, *,
                    task_timeout=None):
        self._check_running()
        fut = self._engine.submit_call(func, tuple(args), dict(kwds) if kwds else None,
                                       timeout=self._engine.check_timeout(task_timeout))
        return ApplyResult(fut, callback, error_callback)

    def submit(self, fn, /, *args, **kwargs):
        """Call fn(*args, **kwargs) in a worker; returns a concurrent.futures.Future."""
        self._check_running()
        return self._engine.submit_call(fn, args, kwargs or None)

    # -- maps -----------------------------------------------------------------------------------

    def _map_async(self, func, iterable, chunksize, star, callback, error_callback, progress,
                   task_timeout=None):
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        result = MapResult(self._engine, callback, error_callback,
                           _facade.progress_bar(progress, len(iterable)))
        job = MapJob(self._engine, func, iterable, chunksize, star, result, lazy=False,
                     timeout=self._engine.check_timeout(task_timeout))
        result._bind(job)
        _facade.start_job(job, self._engine)
        return result

    def map(self, func, iterable, chunksize=None, progress=False, *, task_timeout=None):
        """Apply func to each item; results in order. chunksize=None chooses it from task times.
        progress=True shows a tqdm bar; task_timeout bounds each item's run time."""
        return self._map_async(func, iterable, chunksize, False, None, None, progress,
                               task_timeout).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None,
                  progress=False, *, task_timeout=None):
        return self._map_async(func, iterable, chunksize, False, callback, error_callback, progress,
                               task_timeout)

    def starmap(self, func, iterable, chunksize=None, progress=False, *, task_timeout=None):
        """Like map, with each item unpacked as arguments: func(*item)."""
        return self._map_async(func, iterable, chunksize, True, None, None, progress,
                               task_timeout).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None,
                      progress=False, *, task_timeout=None):
        return self._map_async(func, iterable, chunksize, True, callback, error_callback, progress,
                               task_timeout)

    def _imap(self, func, iterable, chunksize, ordered, star, progress, task_timeout,
              iterator=IMapIterator):
        self._check_running()
        total = len(iterable) if progress and hasattr(iterable, "__len__") else None
        it = iterator(self._engine, ordered, _facade.progress_bar(progress, total))
        job = MapJob(self._engine, func, iterable, chunksize, star, it, lazy=True,
                     timeout=self._engine.check_timeout(task_timeout))
        it._bind(job)
        _facade.start_job(job, self._engine)
        return it

    def imap(self, func, iterable, chunksize=None, progress=False, *, task_timeout=None):
        """Lazy map: an iterator over results in order; input consumed as workers free up."""
        return self._imap(func, iterable, chunksize, True, False, progress, task_timeout)

    def imap_unordered(self, func, iterable, chunksize=None, progress=False, *,
                       task_timeout=None):
        """Like imap, yielding results as they complete."""
        return self._imap(func, iterable, chunksize, False, False, progress, task_timeout)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self):
        """Accept no more tasks; workers exit once the queued ones are done."""
        if self._state == RUN:
            self._state = CLOSE
            self._engine.close()

    def terminate(self):
        """Stop the workers now; unfinished tasks are cancelled."""
        if self._state != TERMINATE and self._engine is not None:
            self._state = TERMINATE
            self._engine.terminate()

    def join(self):
        """Wait for the workers to exit (after close() or terminate())."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        self._engine.join()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()

    def __reduce__(self):
        raise NotImplementedError(
            "pool objects cannot be passed between processes or pickled")

    def __del__(self, _warn=warnings.warn):
        if getattr(self, "_state", None) == RUN and getattr(self, "_engine", None) is not None:
            # As multiprocessing.Pool: a running pool dropped without close() warns, and its
            # finalizer terminates it.
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning,
                  source=self)
            try:
                self.terminate()
            except Exception:
                pass

    def __repr__(self):
        return f"<{type(self).__module__}.{type(self).__qualname__} state={self._state} " \
               f"pool_size={self._processes}>"

    @property
    def processes(self):
        return self._processes

    def worker_pids(self):
        """Process ids of the current workers."""
        return self._engine.worker_pids()


# -- what the other facades (the default pool, aio, joblib) ask of a Pool ------------------------

def running(pool) -> bool:
    """Whether pool was neither closed nor terminated (it may have broken)."""
    return pool._state == RUN


def usable(pool) -> bool:
    """Whether pool takes new work: running and not broken."""
    return pool._state == RUN and pool._engine.broken is None


def lazy_map(pool, fn, iterable, chunksize, ordered, star, progress, iterator):
    """pool.imap (ordered) or imap_unordered, its results read through iterator(engine, ordered,
    progress bar), an IMapIterator subclass."""
    return pool._imap(fn, iterable, chunksize, ordered, star, progress, None, iterator)
