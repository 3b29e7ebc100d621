"""What every backend's engine is to Pool, ProcessPoolExecutor, MapJob and TaskFuture.

    Pool / ProcessPoolExecutor / aio / joblib        MapJob (a map's chunks)
        | check_timeout, submit_call, close,             | add_job, register, direct_queue,
        | join, terminate, interrupt, broken             | submit_chunk, job_done
        v                                                v
    EngineBase: pending tasks by id, map jobs, the pool's state (closing, terminated, broken),
                the one validation of worker counts and task_timeout, break/fail/interrupt
        |
        +-- _engine.Engine: a shared region and its collector; its workers are started by a
        |   host, the strategy each of these backends sets (host_type):
        |     _backend_process.ProcessEngine          ProcessHost: forked from a template process
        |     _backend_thread.ThreadEngine            ThreadHost: threads of this process
        |     _backend_interpreter.InterpreterEngine  InterpreterHost: threads, subinterpreters
        +-- _backend_dask.DaskEngine: tasks on a dask.distributed cluster

A pending task is an entry with deliver(engine, kind, payload, to_feed) for its result and
fail(engine, exc, item) for its failure: CallEntry completes a future, _mapjob's chunk entries
feed a map. A backend implements how tasks travel and run, and these hooks of the bookkeeping:
_drop_tasks(ids) (tasks failed by the base: take them back where they wait), _stop_running()
(Ctrl-C: stop what runs), _on_broken() (stop the workers) and _on_job_done().
"""
from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool

from . import _futures
from . import _oob
from . import _serialize as ser
from ._protocol import KIND_MASK, OOB, RESULT_OK

_forked_child = False


def _after_fork_in_child():
    global _forked_child
    _forked_child = True


os.register_at_fork(after_in_child=_after_fork_in_child)


class CallEntry:
    """A pending single call: completes a future."""
    __slots__ = ("future", "what", "t0", "timeout")

    def __init__(self, future, what, t0, timeout=None):
        self.future = future
        self.what = what
        self.t0 = t0
        self.timeout = timeout

    def deliver(self, engine, kind, payload, to_feed=None):
        fut = self.future
        if kind & KIND_MASK == RESULT_OK:
            try:
                value = _oob.loads(payload) if kind & OOB else ser.loads(payload)
            except BaseException as exc:  # noqa: B902
                _futures.set_exception(fut, exc)
                return
            _futures.set_result(fut, value)
        else:
            _futures.set_exception(fut, ser.loads_exception(payload))

    def fail(self, engine, exc, item=None):
        if isinstance(exc, CancelledError):
            _futures.cancel(self.future)
        else:
            _futures.set_exception(self.future, exc)


def entry_what(entry, item):
    """The task an entry stands for, as error messages name it."""
    what = getattr(entry, "what", None)
    desc = ser.describe(what) if what is not None else "a task"
    return f"task {desc}" + (f" (item {item} of its chunk)" if item else "")


class EngineBase:
    """The bookkeeping every engine shares. Thread-safe: state changes under self._lock."""

    stops_tasks = True   # a running task can be stopped (task_timeout; Ctrl-C kills it)
    cannot_stop = ""     # when it cannot: why, as the refusal of task_timeout starts
    replaces_workers = True  # maxtasksperchild can replace a worker
    worker_processes = False  # the workers are this machine's processes, children of this one
    owns_workers = True       # terminate() may stop them (a cluster's workers are not the pool's)
    cannot_replace = ""      # when it cannot: why
    parallel = True      # the workers run Python at the same time
    maxtasks = None
    finish_at_exit = False   # close and join at interpreter exit, as an executor does
    # Functions the workers' __main__ holds by these names (ser.dumps_callable); None: none.
    main_names = None

    def __init__(self, processes, initializer, maxtasks, task_timeout, *, executor=False):
        """The one validation of a pool's arguments, in multiprocessing.Pool's terms or, for
        executor, in concurrent.futures' (max_workers, max_tasks_per_child). processes None: the
        backend's default (default_workers(); None there: the backend counts them itself)."""
        if executor:
            if processes is not None and processes <= 0:
                raise ValueError("max_workers must be greater than 0")
            if maxtasks is not None:
                if not isinstance(maxtasks, int):
                    raise TypeError("max_tasks_per_child must be an integer")
                if maxtasks <= 0:
                    raise ValueError("max_tasks_per_child must be >= 1")
        if processes is None:
            processes = self.default_workers()
        if processes is not None and (not isinstance(processes, int) or
                                      isinstance(processes, bool) or processes < 1):
            raise ValueError("Number of processes must be at least 1")
        if maxtasks is not None:
            if not self.replaces_workers:
                raise ValueError(f"{self.cannot_replace}: maxtasksperchild needs "
                                 f"backend='process'")
            if not isinstance(maxtasks, int) or maxtasks < 1:
                raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self.task_timeout = self.check_timeout(task_timeout)
        self.nworkers = processes
        self.maxtasks = maxtasks
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._pending: dict[int, object] = {}   # task id -> its entry
        self._ids = itertools.count(1)
        self._jobs: set = set()                 # map jobs still feeding
        self._timed_entries = 0                 # pending entries with a timeout of their own
        self._broken: BaseException | None = None
        self._closing = False                   # no new work accepted
        self._terminated = False

    def default_workers(self):
        from . import _cpus
        return _cpus.default_workers()

    # -- what the facades and MapJob call ---------------------------------------------------

    def check_timeout(self, t):
        """t as a valid task_timeout for this engine (None: none); ValueError saying what is
        wrong with it."""
        if t is None:
            return None
        if not t > 0:
            raise ValueError(f"task_timeout must be a positive number of seconds, not {t!r}")
        if not self.stops_tasks:
            raise ValueError(f"{self.cannot_stop}: task_timeout needs backend='process'")
        return t

    @property
    def broken(self):
        """The exception that broke the pool, or None."""
        return self._broken

    def in_forked_child(self):
        """True in a process forked from the pool's owner: the pool is the owner's, and nothing
        done here may stop it."""
        return _forked_child and os.getpid() != self._pid

    def check_usable(self):
        """Raises unless the engine takes new work."""
        if _forked_child and os.getpid() != self._pid:
            raise RuntimeError("this pool belongs to the parent process; create a new pool in the "
                               "forked child")
        if self._broken is not None:
            raise BrokenProcessPool(str(self._broken)) from self._broken
        if self._closing:
            raise ValueError("Pool not running")

    def new_id(self):
        return next(self._ids)

    def register(self, entry):
        """Records a pending task; returns its id, for submit_chunk()."""
        tid = next(self._ids)
        self._pending[tid] = entry
        return tid

    def direct_queue(self):
        """(push, overflow) for a feeder that queues tasks itself, once per task: push(tid,
        kind, 0, payload, 0.0) puts a task straight on the task ring without waiting (False
        when it is full) and may be used only while `overflow` is empty, since tasks waiting
        there go first. (None, None) when the engine has no ring: use submit_chunk()."""
        return None, None

    def add_job(self, job):
        """A map job starts feeding (until job_done(job))."""
        self._jobs.add(job)
        if job.timeout is not None:
            self._timed_entries += 1

    def job_done(self, job):
        with self._lock:
            if job in self._jobs:
                self._jobs.discard(job)
                if job.timeout is not None:
                    self._timed_entries -= 1
            self._on_job_done()

    def cancel_job(self, job):
        """Stops a map whose result was cancelled: no more of its items are sent."""
        job.abort(CancelledError())

    def interrupt(self):
        """Ctrl-C while waiting on this pool: stop its current work. Queued tasks are cancelled,
        running ones are cancelled and stopped where the backend can; the pool stays usable."""
        if self._terminated or self.in_forked_child():
            return
        with self._lock:
            for job in list(self._jobs):
                job.abort(CancelledError())
            self._cancel_waiting()
            running, self._pending = self._pending, {}
            self._drop_tasks(list(running))
            for entry in running.values():
                entry.fail(self, CancelledError())
            self._stop_running()

    # -- failure ----------------------------------------------------------------------------

    def _fail_all(self, exc):
        """Under self._lock: every pending task and map fails with exc."""
        pending, self._pending = self._pending, {}
        self._drop_tasks(list(pending))
        # Jobs first: a failed chunk of a job still running would resubmit its other items and
        # feed more, to workers that may never take them.
        for job in list(self._jobs):
            job.abort(exc)
        for entry in pending.values():
            entry.fail(self, exc)
        self._after_fail_all()

    def _break(self, exc, cause=None):
        """The pool cannot go on: exc (caused by cause) fails everything, now and later."""
        with self._lock:
            if self._broken is None:
                if cause is not None:
                    exc.__cause__ = cause
                self._broken = exc
            self._fail_all(exc)
        self._on_broken()

    def _on_init_error(self, payload):
        exc = ser.loads_exception(payload)
        self._init_error = exc
        self._break(BrokenProcessPool(
            f"a worker's initializer failed: {type(exc).__name__}: {exc}"), cause=exc)

    # -- the backend's hooks ----------------------------------------------------------------

    def _cancel_waiting(self):
        """Under self._lock: cancel the tasks no worker has started (Ctrl-C)."""

    def _drop_tasks(self, task_ids):
        """Under self._lock: these tasks were failed; forget them where they still wait."""

    def _after_fail_all(self):
        """Under self._lock, after _fail_all()."""

    def _stop_running(self):
        """Under self._lock: stop the tasks running now (Ctrl-C), where the backend can."""

    def _on_broken(self):
        """After the pool broke: stop its workers."""

    def _on_job_done(self):
        """Under self._lock: a map job stopped feeding."""
