"""backend="dask": the Pool and Executor API on an existing dask.distributed cluster.

    Pool / Executor / MapJob (as for every backend)
        | submit_call, submit_chunk: the same payloads as for worker processes
        v
    dask Client.submit(run_task, ...) ----> cluster worker: run_task() runs the payload through
        |                                   _worker.main (the same loop as a worker process, for
        v                                   one task) and returns (kind, aux, result payload)
    collector thread: distributed.as_completed(with_results=True) -> the entries deliver results
                      exactly as the shared-memory engine's do; callers wait on a condition

allcores must be importable on the cluster's workers, and so must the tasks' modules (functions
of __main__, lambdas and closures travel by value, as with processes). The initializer runs once
per worker process and pool, before its first task there.

What the cluster decides and allcores cannot: which worker runs a task; a task running on a
worker cannot be stopped (terminate() and Ctrl-C cancel what has not started), so task_timeout
is refused; workers belong to the cluster, so maxtasksperchild is refused. A task whose worker
dies more often than the cluster allows (distributed.scheduler.allowed-failures) fails with
WorkerLost.
"""
from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool

from . import _serialize as ser
from . import _worker as W
from ._protocol import OOB, RESULT_INIT_ERR, TASK_CALL, TASK_CHUNK, task_kind
from ._engine_base import CallEntry, EngineBase
from ._futures import TaskFuture
from .errors import WorkerLost

# Largest payload sent in one task: dask moves bigger ones, but a pool's task that large belongs
# in shared memory (backend='process'), not on the network.
MAX_PAYLOAD = 1 << 31
# How often the collector looks at the engine's state when nothing completes.
IDLE_TICK_S = 0.1


class DaskEngine(EngineBase):
    """The engine interface (_engine_base.EngineBase) on a dask.distributed Client."""

    stops_tasks = False
    cannot_stop = "backend='dask' cannot stop a task running on a cluster worker"
    replaces_workers = False
    owns_workers = False
    cannot_replace = "backend='dask' cannot replace the cluster's workers"

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasks=None,
                 task_timeout=None, name="allcores-dask", *, address=None, client=None,
                 executor=False):
        # Not finished at interpreter exit even for an executor: the cluster may be gone by then.
        super().__init__(processes, initializer, maxtasks, task_timeout, executor=executor)
        if (address is None) == (client is None):
            raise TypeError("backend='dask' needs the cluster: address='tcp://host:port' or "
                            "client=distributed.Client(...)")
        from distributed import Client, as_completed
        self._own_client = client is None
        self._client = Client(address, set_as_default=False) if client is None else client
        self.nworkers = processes or max(1, sum(self._client.nthreads().values()))
        self.max_payload = MAX_PAYLOAD
        self._key = f"allcores-{uuid.uuid4().hex[:12]}"
        self._init = None
        if initializer is not None:
            blob = ser.cloudpickle().dumps((self._key, initializer, initargs), ser.PROTOCOL)
            self._init = self._client.scatter(blob, broadcast=True, hash=False)
        self._cond = threading.Condition(threading.Lock())
        self._futures: dict[int, object] = {}   # tid -> dask future
        self._stopped = False
        self._completed = as_completed(loop=self._client.loop, with_results=True,
                                       raise_errors=False)
        self._collector = threading.Thread(target=self._collect_loop, name=f"{name}-collector",
                                           daemon=True)
        self._collector.start()

    # -- submitting -----------------------------------------------------------------------------

    def default_workers(self):
        return None  # the cluster's threads, counted once connected

    def submit_call(self, fn, args, kwargs, timeout=None):
        self.check_usable()
        self.check_timeout(timeout)
        tid = self.new_id()
        future = TaskFuture(self, tid)
        try:
            payload = ser.dumps_call(ser.dumps_callable(fn), fn, args, kwargs)
        except BaseException as exc:  # noqa: B902
            future.set_exception(exc)
            return future
        self._pending[tid] = CallEntry(future, fn, time.perf_counter_ns())
        future.add_done_callback(functools.partial(self._on_future_done, tid))
        self._send(tid, TASK_CALL, payload)
        return future

    def submit_chunk(self, tid, payload, track):
        self._send(tid, task_kind(TASK_CHUNK, track=bool(track)), payload)

    def _send(self, tid, kind, payload):
        if type(payload) is list:  # out-of-band parts: one contiguous frame, as in the arena
            kind |= OOB
            payload = _frame(payload)
        try:
            dfut = self._client.submit(run_task, self._key, self._init, kind, payload,
                                       key=f"{self._key}-{tid}", pure=False)
        except BaseException as exc:  # noqa: B902 - the client is closed or the cluster gone
            entry = self._pending.pop(tid, None)
            if entry is not None:
                entry.fail(self, BrokenProcessPool(f"cannot send the task to the dask cluster: "
                                                   f"{exc}"))
            return
        self._futures[tid] = dfut
        self._completed.add(dfut)
        with self._cond:
            self._cond.notify_all()

    def _on_future_done(self, tid, fut):
        # A caller cancelled a queued task: cancel it on the cluster too.
        if fut.cancelled():
            dfut = self._futures.pop(tid, None)
            if dfut is not None:
                dfut.cancel()

    # -- collecting ------------------------------------------------------------------------------

    def _collect_loop(self):
        completed = self._completed
        try:
            while True:
                if completed.is_empty():
                    if self._stopped:
                        break
                    with self._cond:
                        self._cond.wait(IDLE_TICK_S)
                    continue
                try:
                    batch = completed.next_batch(block=True)
                except StopIteration:
                    continue
                with self._lock:
                    for dfut, result in batch:
                        self._deliver(dfut, result)
                with self._cond:
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._cond.notify_all()

    def _deliver(self, dfut, result):
        tid = int(dfut.key.rsplit("-", 1)[1])
        self._futures.pop(tid, None)
        if dfut.status == "finished":
            kind, aux, payload = result
            if kind == RESULT_INIT_ERR:
                self._on_init_error(payload)
                return
            entry = self._pending.pop(tid, None)
            if entry is not None:
                entry.deliver(self, kind, payload)
            return
        entry = self._pending.pop(tid, None)
        if entry is None:
            return
        if dfut.status == "cancelled" or isinstance(result, BaseException):
            entry.fail(self, CancelledError())
            return
        _typ, exc, _tb = result
        if type(exc).__name__ == "KilledWorker":
            exc = WorkerLost(f"the dask workers running {ser.describe(getattr(entry, 'what', None))} "
                             f"died: {exc}")
        else:
            exc = BrokenProcessPool(f"the dask cluster failed the task: {type(exc).__name__}: "
                                    f"{exc}")
        entry.fail(self, exc)

    def wait_for(self, done, timeout=None):
        """Waits until done() is true (results are delivered by the collector thread); False
        when timeout (seconds) passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not done():
                if self._stopped and not self._collector.is_alive():
                    return done()
                left = IDLE_TICK_S
                if deadline is not None:
                    left = min(left, deadline - time.monotonic())
                    if left <= 0:
                        return False
                self._cond.wait(left)
        return True

    def is_running(self, tid):
        """True when a cluster worker is executing task tid (asks the workers)."""
        if not tid or tid not in self._futures or self._stopped:
            return False
        key = f"{self._key}-{tid}"
        return key in self._executing()

    def _executing(self):
        def executing(dask_worker):
            return [k for k, ts in dask_worker.state.tasks.items() if ts.state == "executing"]
        try:
            found = self._client.run(executing)
        except Exception:
            return set()
        return {k for keys in found.values() for k in keys}

    # -- failure and shutdown --------------------------------------------------------------------

    def _cancel_on_cluster(self, tids):
        futs = [self._futures.pop(t) for t in tids if t in self._futures]
        if futs:
            try:
                self._client.cancel(futs)
            except Exception:
                pass

    _drop_tasks = _cancel_on_cluster

    def close(self):
        with self._lock:
            self._closing = True
            for job in list(self._jobs):
                job.feed_all()

    def terminate(self):
        with self._lock:
            self._closing = True
            self._terminated = True
            self._fail_all(CancelledError())
        self._stop()

    def join(self, timeout=None):
        """After close(): waits for every queued task, then lets the client go."""
        if not self.wait_for(lambda: not self._pending and not self._jobs, timeout):
            return False
        if self._closing:
            self._stop()
        return True

    def _stop(self):
        if self._stopped:
            return
        self._stopped = True
        with self._cond:
            self._cond.notify_all()
        if self._collector is not threading.current_thread():
            self._collector.join(5.0)
        if self._own_client:
            try:
                self._client.close()
            except Exception:
                pass

    def cancel_queued(self):
        """Cancel every task no cluster worker is executing yet."""
        with self._lock:
            running = self._executing()
            queued = [t for t in self._futures if f"{self._key}-{t}" not in running]
            for job in list(self._jobs):
                job.abort(CancelledError())
            self._cancel_on_cluster(queued)
            for tid in queued:
                entry = self._pending.pop(tid, None)
                if entry is not None:
                    entry.fail(self, CancelledError())

    # Ctrl-C (interrupt()) cancels this pool's work on the cluster; a task already running on
    # a worker finishes there, its result dropped.

    def cancel_job(self, job):
        """Stops the map and takes its chunks back from the cluster (one running on a worker
        finishes there, its result dropped); their outcome is CancelledError."""
        job.abort(CancelledError())
        with self._lock:
            tids = [tid for tid, entry in list(self._pending.items())
                    if getattr(entry, "job", None) is job]
            entries = [self._pending.pop(t) for t in tids if t in self._pending]
            self._cancel_on_cluster(tids)
        for entry in entries:
            entry.fail(self, CancelledError())

    def worker_pids(self):
        try:
            return sorted(self._client.run(os.getpid).values())
        except Exception:
            return []


def _frame(parts):
    """One writable frame of out-of-band parts: numpy arrays and memoryviews received from it are
    writable, as those received through the arena are."""
    return bytearray().join(parts)


# -- on the cluster's workers --------------------------------------------------------------------

class _OneTask:
    """What _worker.main needs of a Region, for one task: it runs the task through the same loop
    as a worker process, so that results and errors take exactly the same form."""

    max_payload = MAX_PAYLOAD

    def __init__(self, kind, payload):
        self._task = (1, kind, 0, payload)
        self.result = None

    def next_task(self, k, spin_ns):
        task, self._task = self._task, None
        return task

    def send_result(self, k, tid, kind, aux, payload):
        if type(payload) is list:
            payload = _frame(payload)
        self.result = (kind, aux, payload)

    def set_item(self, k, i):
        pass


_init_lock = threading.Lock()
_initialized: dict[str, tuple] = {}  # pool key -> the initializer's outcome in this process


def _initialize(pool_key, init_blob):
    with _init_lock:
        outcome = _initialized.get(pool_key)
        if outcome is None:
            try:
                _, initializer, initargs = ser.loads(init_blob)
                initializer(*initargs)
                outcome = (True, None)
            except BaseException as exc:  # noqa: B902
                outcome = (False, ser.dumps_exception(exc, "initializer"))
            _initialized[pool_key] = outcome
        return outcome


def run_task(pool_key, init_blob, kind, payload):
    """Runs one task (or chunk) in a cluster worker; returns (kind, aux, payload) as a worker
    process would publish it in the result ring."""
    if init_blob is not None:
        ok, error = _initialize(pool_key, init_blob)
        if not ok:
            return RESULT_INIT_ERR, 0, error
    box = _OneTask(kind, payload)
    W.main(box, 0, None, (), 1)
    return box.result
