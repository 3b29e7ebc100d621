"""The shared-region engine under the process, thread and interpreter backends: one shared
region, a collector, N workers started by the backend's host (_backend_process, _backend_thread,
_backend_interpreter). Shown here with the process backend's host, a template process:

Data flow (nothing passes through a pipe or a per-task helper thread)::

    caller thread                 shared region (memfd)                 worker k (forked from
    -------------                 ---------------------                 the template process)
    submit(fn, args) --pickle--> [task ring: slots | arena blocks] --futex--> next_task()
                                                                              fn(*args)
    future.result() <--------- [result ring] <-------------------------------- send_result()
        ^ spins briefly, then          |
        | waits on the future          +--> collector thread (no GIL while waiting): completes
        |                                   futures, runs callbacks, feeds lazy maps, handles
        +----------------------------------- worker deaths, timeouts and respawns

- The template process is forked once, before the pool starts any thread; every worker is forked
  from it (single-threaded, so no inherited locks). It reaps workers and reports exits in the
  region; its workers die with it (PR_SET_PDEATHSIG), and it dies with the parent (pidfd).
- Each worker records in the region which task it holds; when one dies, the parent fails exactly
  that task (WorkerLost), gives back a task it had taken but not started, and forks a replacement.
"""
from __future__ import annotations

import collections
import errno
import os
import threading
import time
import weakref
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool

from . import _arena_size
from . import _core
from . import _oob
from . import _serialize as ser
from ._engine_base import CallEntry, EngineBase, entry_what
from ._futures import TaskFuture
from ._protocol import (EXIT_CANNOT_MAP, OOB, RESULT_INIT_ERR, RESULT_UNREADABLE, TASK_CALL,
                        TASK_CHUNK, WorkerState, task_kind, worker_slot)
from .errors import TaskTimeout, WorkerLost

# Ring sizes: enough queued tasks to keep every worker busy while the parent is descheduled, small
# enough that the rings' pages (512 B a slot) stay warm in cache.
TASK_SLOTS = 1024
RESULT_SLOTS = 1024
def _default_arena_bytes():
    """Half the machine's memory, at most 64 GiB: the most that queued arguments and results may
    occupy at once. Pages cost memory only once touched and are reused after that; past this,
    submit() waits for workers to consume (back-pressure) and a single larger payload fails."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        ram = 8 << 30
    return max(64 << 20, min(1 << 36, ram // 2))


ARENA_BYTES = _default_arena_bytes()


def _unreadable_error(err: int, what: str) -> BaseException:
    """The error of a task whose result this process could not read (err: the errno the binding
    reported, RESULT_UNREADABLE)."""
    if err == errno.ENOMEM:  # its arena segment does not fit in this process's address space
        return _arena_size.unmappable_error(None, what)
    # It travelled in a segment of its own (the arena was full), opened through its worker.
    if err == errno.ESTALE:
        return WorkerLost(f"the worker that ran {what} exited before its result could be read")
    return OSError(err, f"the result of {what} could not be read from its worker: "
                        f"{os.strerror(err)}")
# How often the collector wakes with nothing to do, to check timeouts and the template; with
# lazy waking it also wakes a worker for any task left queued (a safety net, see ring.c).
IDLE_TICK_S = 0.05
# The caller spins this long at most for a result before sleeping on the future (adaptive below).
MAX_SPIN_NS = 200_000
# A caller waiting in wait_for() re-checks its condition at least this often.
FG_SLICE_S = 0.01
# Tasks shorter than this (measured in the workers) switch the task ring to lazy waking: a busy
# worker will be back sooner than a sleeping one could be woken. Hysteresis avoids flapping.
LAZY_WAKE_BELOW_NS = 30_000
EAGER_WAKE_ABOVE_NS = 100_000

_live_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


class Engine(EngineBase):
    """One pool's shared region, its collector and its workers, started by a host of type
    host_type (see _backend_process.ProcessHost for what a host does). Thread-safe."""

    host_type = None

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasks=None,
                 task_timeout=None, name="allcores", arena_size=None, *, executor=False):
        super().__init__(processes, initializer, maxtasks, task_timeout, executor=executor)
        processes = self.nworkers
        # concurrent.futures' behaviours: a failing initializer is logged (in the worker, to the
        # "concurrent.futures" logger, where the host can: a process), and queued work is
        # finished at interpreter exit.
        self.finish_at_exit = executor
        arena_bytes, arena_source = _arena_size.choose(arena_size, ARENA_BYTES)
        try:
            self._region = _core.Region(processes, TASK_SLOTS, RESULT_SLOTS, arena_bytes)
        except (MemoryError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno != errno.ENOMEM:
                raise
            raise _arena_size.region_error(exc, arena_bytes, arena_source) from exc
        self.max_payload = self._region.max_payload
        self._held = threading.local()  # .n: result batches this thread is completing
        self._overflow: collections.deque = collections.deque()  # tasks waiting for ring room
        self._timed_out: dict[int, float] = {}
        self._drain_requested = False      # task ring closed: workers exit when it is empty
        self._rtt_ema = 0.0
        self._fg = 0                       # caller threads collecting in wait_for()
        self._fg_left = threading.Event()  # set when the last of them leaves
        self._exec_ema = None       # task execution time measured by the workers
        self._lazy_wake = False
        self._worker_pids: dict[int, int] = {}
        self._init_error: BaseException | None = None
        for k in range(processes):
            self._region.request_spawn(k)
        self._host_status = None
        self._host = self.host_type(self)
        self._host.start(initializer, initargs, maxtasks, executor)
        self._collector_thread = threading.Thread(
            target=self._collect_loop, name=f"{name}-collector", daemon=True)
        self._collector_thread.start()
        _live_engines.add(self)

    # -- submitting -----------------------------------------------------------------------------

    def submit_call(self, fn, args, kwargs, timeout=None):
        """Queues fn(*args, **kwargs); returns its TaskFuture (pickling errors are set on it).
        timeout: this task's task_timeout, checked by the caller (check_timeout)."""
        self.check_usable()
        tid = next(self._ids)
        future = TaskFuture(self, tid)
        try:
            blob = ser.dumps_callable(fn, self.main_names)
            payload = ser.dumps_call(blob, fn, args, kwargs)
        except BaseException as exc:  # noqa: B902
            future.set_exception(exc)
            return future
        kind = TASK_CALL
        if type(payload) is list:
            kind |= OOB
            size = _oob.total(payload)
        else:
            size = len(payload)
        if size > self.max_payload:
            future.set_exception(MemoryError(
                f"the arguments of task {ser.describe(fn)} take {size} bytes, more than the "
                f"pool's shared region can hold ({self.max_payload} bytes)"))
            return future
        self._pending[tid] = CallEntry(future, fn, time.perf_counter_ns(), timeout)
        if timeout is not None:
            self._timed_entries += 1
            future.add_done_callback(self._untime)
        self._push(tid, kind, payload)
        return future

    def submit_chunk(self, tid, payload, track):
        # Map jobs never block their feeder: it may run in the collector thread.
        kind = task_kind(TASK_CHUNK, track=bool(track), oob=type(payload) is list)
        self._push(tid, kind, payload, block=False)

    def is_running(self, tid):
        """True when a worker holds task tid (it has taken it and not yet published its result)."""
        if not tid or self._terminated or self.in_forked_child():
            return False
        region = self._region
        return any(worker_slot(region, k).tid == tid for k in range(self.nworkers))

    def _untime(self, _=None):
        self._timed_entries -= 1

    def direct_queue(self):
        return self._region.push_task, self._overflow

    def _push(self, tid, kind, payload, block=True):
        region = self._region
        try:
            if not self._overflow and region.push_task(tid, kind, 0, payload, 0.0):
                return
            if not block or self._overflow or threading.current_thread() is self._collector_thread:
                # The collector must never block on a full ring: it is what drains the results
                # the workers are waiting to publish.
                self._overflow.append((tid, kind, payload))
                return
            while not region.push_task(tid, kind, 0, payload, 0.1):
                if self._broken is not None or self._terminated:
                    self._refuse(tid)
                    return
        except _core.ClosedError:  # the pool broke or stopped since the caller checked
            self._refuse(tid)

    def _refuse(self, tid):
        """Fails task tid, which the pool stopped or broke before it could be queued."""
        entry = self._pending.pop(tid, None)
        if entry is not None:
            broken = self._broken
            exc = BrokenProcessPool(str(broken) if broken is not None else
                                    "the pool stopped before the task was queued")
            exc.__cause__ = broken
            entry.fail(self, exc)

    def _flush_overflow(self):
        ov = self._overflow
        region = self._region
        while ov:
            tid, kind, payload = ov[0]
            try:
                if not region.push_task(tid, kind, 0, payload, 0.0):
                    return
            except _core.ClosedError:  # the pool broke or stopped: none of them can be queued now
                while ov:
                    self._refuse(ov.popleft()[0])
                return
            ov.popleft()

    # -- results ---------------------------------------------------------------------------------

    def _complete(self, items):
        pending = self._pending
        now = time.perf_counter_ns()
        ema = self._exec_ema
        rtt_ema = self._rtt_ema
        init_err = RESULT_INIT_ERR
        to_feed = set()  # map jobs that completed chunks: fed once, after the batch
        try:
            for tid, kind, aux, payload in items:
                if kind == RESULT_UNREADABLE:
                    entry = pending.pop(tid, None)
                    if entry is not None:
                        entry.fail(self, _unreadable_error(aux, entry_what(entry, 0)))
                    continue
                ema = aux if ema is None else 0.9 * ema + 0.1 * aux
                if kind == init_err:
                    self._on_init_error(payload)
                    continue
                entry = pending.pop(tid, None)
                if entry is None:
                    continue  # cancelled, timed out, or failed already
                rtt = now - entry.t0
                rtt_ema = rtt if not rtt_ema else 0.8 * rtt_ema + 0.2 * rtt
                entry.deliver(self, kind, payload, to_feed)
        finally:
            self._rtt_ema = rtt_ema
            for job in to_feed:
                job.feed()
        self._exec_ema = ema
        if ema is not None:
            lazy = ema < LAZY_WAKE_BELOW_NS if not self._lazy_wake else ema < EAGER_WAKE_ABOVE_NS
            if lazy != self._lazy_wake:
                self._lazy_wake = lazy
                self._region.set_lazy_wake(lazy)

    def _complete_popped(self, items):
        """Completes what pop_results() returned, then tells the region these results are no
        longer in this thread's hands (see _take_published)."""
        held = self._held
        held.n = getattr(held, "n", 0) + 1
        try:
            with self._lock:
                self._complete(items)
        finally:
            held.n -= 1
            self._region.pop_done()

    def _take_published(self):
        """Under self._lock: completes every published result. Returns False while another
        thread holds results it took off the ring and has not completed yet: a task whose
        worker died or a pool whose workers are gone must not be failed before those are."""
        region = self._region
        items, _ = region.pop_results(1 << 20, 0.0, 0, region.event)
        if items:
            try:
                self._complete(items)
            finally:
                region.pop_done()
        # Batches this very thread is completing (a callback that waits on the pool) do not
        # count: waiting for them would wait forever.
        return region.popping() <= getattr(self._held, "n", 0)

    def wait_for(self, done, timeout=None):
        """Wait in the calling thread until done() is true, collecting results meanwhile.

        The waiting thread is the collector while it waits: results complete in the thread
        that wants them, without a hand-off to the collector thread (which costs a wake-up and a
        GIL switch per batch). The collector thread stays parked while any caller waits here.
        Returns done(); False when timeout (seconds) passed first.
        """
        if done():
            return True
        if self.in_forked_child():
            return done()
        deadline = None if timeout is None else time.monotonic() + timeout
        region = self._region
        rtt = self._rtt_ema
        spin = int(min(MAX_SPIN_NS, 2 * rtt)) if rtt and rtt < 4 * MAX_SPIN_NS else 0
        self._fg += 1
        try:
            while True:
                # Read before done(): a thread that completes our result after done() looked
                # bumps it (wake_results), which ends the pop_results() wait below at once.
                poke = region.poke
                if done():
                    break
                slice_s = FG_SLICE_S
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    slice_s = min(slice_s, left)
                if self._broken is not None or self._terminated:
                    return done()
                items, event = region.pop_results(512, slice_s, spin, self._seen_event, poke)
                spin = 0
                if items:
                    self._complete_popped(items)
                    if self._fg > 1:
                        region.wake_results()  # another waiting caller may want what we did
                if event != self._seen_event and not self._handle_workers(event):
                    time.sleep(0.0002)  # lets the thread holding results complete them
                if self._overflow:
                    with self._lock:
                        self._flush_overflow()
            return True
        finally:
            self._fg -= 1
            if not self._fg:
                self._fg_left.set()

    _seen_event = 0

    def _collect_loop(self):
        region = self._region
        try:
            while True:
                if self._fg:
                    # A caller is collecting in wait_for(): stay out of its way (no GIL contention)
                    # but keep watching timeouts and the template.
                    self._fg_left.wait(0.005)
                    self._fg_left.clear()
                    if self._fg:
                        if self._timeouts_active():
                            self._check_timeouts()
                        if self._host_status is None and self._host_exited():
                            self._on_host_gone()
                        if self._closing and not self._drain_requested and not self._jobs:
                            with self._lock:
                                self._maybe_drain()
                        if self._finished():
                            break
                        continue
                if self._overflow:
                    with self._lock:
                        self._flush_overflow()
                if self._closing and not self._drain_requested and not self._jobs:
                    with self._lock:
                        self._maybe_drain()  # one that had to wait for the overflow
                tick = IDLE_TICK_S
                if self.task_timeout is not None:
                    tick = min(tick, max(0.005, self.task_timeout / 4))
                elif self._timed_entries:
                    tick = min(tick, 0.01)
                if self._overflow:
                    tick = 0.001
                elif self._drain_requested and not self._pending:
                    tick = 0.002  # the host exits any moment now: join() should not wait a tick
                items, event = region.pop_results(512, tick, 0, self._seen_event)
                if items:
                    self._complete_popped(items)
                    items = None  # the payloads' arena blocks go with their last user, not later
                    if self._fg:
                        region.wake_results()  # a caller began waiting meanwhile: let it look
                if event != self._seen_event or self._timed_out:
                    if not self._handle_workers(event):
                        time.sleep(0.0002)  # lets the thread holding results complete them
                    elif self._fg:
                        region.wake_results()  # it may have failed a task a caller waits for
                if self._timeouts_active():
                    self._check_timeouts()
                if self._lazy_wake:
                    region.kick()
                if self._host_status is None and self._host_exited():
                    self._on_host_gone()
                if self._finished():
                    break
        except BaseException as exc:  # noqa: B902 - never die silently: break the pool instead
            if isinstance(exc, (_core.ClosedError, _core.CorruptError)):
                # The core's own errors are no public type: tasks fail as the stdlib's would.
                self._break(BrokenProcessPool(f"the pool's shared region failed: {exc}"), exc)
            else:
                self._break(exc)
        finally:
            self._on_collector_exit()

    def _finished(self):
        if self._terminated:
            return True
        if self._broken is not None and self._host_status is not None:
            return True
        return self._drain_requested and not self._pending and not self._overflow and \
            self._host_status is not None

    def _on_host_gone(self):
        if self._drain_requested or self._terminated:
            # Workers exited after the ring drained: deliver what they published (including
            # results other threads are completing right now), then fail anything that can no
            # longer complete.
            give_up = time.monotonic() + 2.0
            while True:
                with self._lock:
                    if self._take_published() or time.monotonic() > give_up:
                        self._handle_workers(self._region.event)
                        self._fail_all(
                            BrokenProcessPool("the pool shut down before the task completed"))
                        return
                time.sleep(0.0005)  # the other thread needs self._lock to complete them
        if self._host.restart():
            return
        self._break(BrokenProcessPool(
            f"the pool's {self._host.describe()} died unexpectedly (status {self._host_status}); "
            f"its workers died with it"))

    def _handle_workers(self, event):
        """Reaps exited workers (failing or re-sending their tasks) and respawns them. Returns
        False when it must look again later (another thread holds results)."""
        with self._lock:
            # A dead worker may have published its last result just before dying: take every
            # published result first, so that only a task with no result is declared lost.
            if not self._take_published():
                return False  # another thread is completing results: look again after it
            self._seen_event = event
            region = self._region
            respawn = False
            for k in range(self.nworkers):
                slot = worker_slot(region, k)
                if slot.state == WorkerState.EXITED:
                    reaped = region.reap(k)
                    if reaped is not None:
                        respawn |= self._on_worker_exit(k, *reaped)
                elif slot.state in (WorkerState.STARTING, WorkerState.IDLE) and slot.pid > 0:
                    self._worker_pids[k] = slot.pid
            if respawn:
                self._host.wake()
        return True

    def _on_worker_exit(self, k, pid, status, spawn_errno, task_id, item, recovered):
        self._worker_pids.pop(k, None)
        if recovered is not None:
            tid, kind, _aux, payload = recovered
            self._overflow.appendleft((tid, kind, payload))
        if task_id:
            entry = self._pending.get(task_id)
            if entry is not None:
                deadline = self._timed_out.pop(task_id, None)
                if deadline is not None:
                    exc = TaskTimeout(f"{entry_what(entry, item)} ran longer than "
                                      f"task_timeout={deadline}s; worker {pid} was killed and "
                                      f"replaced")
                elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_CANNOT_MAP:
                    exc = _arena_size.unmappable_error(pid, entry_what(entry, item))
                else:
                    exc = WorkerLost.from_wait_status(pid, status, entry_what(entry, item))
                del self._pending[task_id]
                entry.fail(self, exc, item)
        if spawn_errno:
            self._break(OSError(spawn_errno, f"cannot fork a worker: {os.strerror(spawn_errno)}"))
            return False
        if self._terminated or self._drain_requested or self._init_error is not None:
            return False
        return bool(self._region.request_spawn(k))

    def _timeouts_active(self):
        return self.task_timeout is not None or self._timed_entries > 0

    def _check_timeouts(self):
        default = self.task_timeout
        now = _core.now_ns()
        region = self._region
        with self._lock:
            for k in range(self.nworkers):
                slot = worker_slot(region, k)
                tid = slot.tid
                if not tid or slot.state != WorkerState.IDLE or tid in self._timed_out:
                    continue
                entry = self._pending.get(tid)
                if entry is None:
                    continue
                limit = entry.timeout if entry.timeout is not None else default
                if limit is not None and now - slot.started > limit * 1e9:
                    self._timed_out[tid] = limit
                    region.request_kill(k)
                    self._host.wake()

    # -- failure and shutdown ------------------------------------------------------------------

    def _drop_tasks(self, task_ids):
        self._overflow.clear()

    def _after_fail_all(self):
        if self._fg:
            self._region.wake_results()  # callers waiting in wait_for() look at once

    def _on_broken(self):
        self._stop_processes()

    # -- what the worker host (host_type) may use of its engine ------------------------------

    @property
    def region(self):
        """The shared region: the host starts workers on its slots."""
        return self._region

    @property
    def stopped(self):
        """True once the pool broke or was terminated: no new workers."""
        return self._broken is not None or self._terminated

    @property
    def draining(self):
        """True once the task ring is closed: workers exit when it is empty."""
        return self._drain_requested

    def break_pool(self, exc, cause=None):
        """The host cannot go on: the pool breaks with exc."""
        self._break(exc, cause)

    def reap_workers(self):
        """Reaps exited workers as _handle_workers() does, waiting for a thread that holds
        results to complete them first."""
        region = self._region
        while not self._handle_workers(region.event):
            time.sleep(0.0002)

    def host_restarting(self):
        """The host died and starts again: False (no restart) when the pool stopped meanwhile."""
        with self._lock:
            if self._broken is not None or self._terminated:
                return False
            self._host_status = None
        return True

    def _host_exited(self):
        """True once the host has exited; sets _host_status."""
        status = self._host.exit_status()
        if status is None:
            return False
        self._host_status = status
        return True

    def _stop_processes(self):
        self._host.stop()

    def _on_collector_exit(self):
        if self._host_status is None:
            self._stop_processes()
            self._host.join()
            self._host_status = 0
        with self._lock:
            if self._pending or self._overflow:
                self._fail_all(self._broken or CancelledError())
        self._host.close()

    def close(self):
        """No new work; workers exit once every queued task is done. Maps in progress go on:
        a lazy one (imap) keeps reading its input as its results are consumed, until join()."""
        if self.in_forked_child():
            return
        with self._lock:
            self._closing = True
            self._maybe_drain()

    def _maybe_drain(self):
        """Under self._lock: once closing and no map feeds any more, close the task ring. Tasks
        still waiting in the overflow must reach the ring first: while some do, the collector
        calls this again after flushing (nothing waits here, under the lock)."""
        if self._closing and not self._jobs and not self._drain_requested:
            if self.maxtasks is not None and self._pending and not self._broken:
                # A worker that reaches its task limit must still be replaced while tasks are
                # queued: the ring closes once every task has completed (the collector asks again).
                return
            if self._overflow:
                self._flush_overflow()
                if self._overflow:
                    return
            self._drain_requested = True
            self._region.shutdown(1)
            self._host.wake()

    def _on_job_done(self):
        self._maybe_drain()

    def terminate(self):
        """Stop now: kill the workers, cancel what has not completed."""
        if self.in_forked_child():
            return
        with self._lock:
            self._closing = True
            self._terminated = True
            self._fail_all(CancelledError())
        self._stop_processes()
        self.join()

    def join(self, timeout=None):
        if self.in_forked_child():
            return True
        if self._closing and self._jobs and not self._terminated:
            # Lazy maps stop waiting for their consumer: their results wait in their iterators
            # (as multiprocessing's do), or, for an iterator the program dropped, no more of the
            # input is read (see MapJob.finish).
            for job in list(self._jobs):
                job.finish()
        t = self._collector_thread
        if t is not threading.current_thread():
            t.join(timeout)
        return not t.is_alive()

    def cancel_queued(self):
        """Take every queued (not started) task off the ring and cancel its future."""
        with self._lock:
            ids = self._region.drain_tasks()
            ids.extend(tid for tid, _, _ in self._overflow)
            self._overflow.clear()
            for tid in ids:
                entry = self._pending.pop(tid, None)
                if entry is not None:
                    entry.fail(self, CancelledError())

    def _cancel_waiting(self):
        self.cancel_queued()

    def _stop_running(self):
        # Running tasks' workers are killed (and replaced); a host whose workers cannot be
        # killed interrupts their tasks where it can.
        for k in range(self.nworkers):
            if worker_slot(self._region, k).tid:
                self._region.request_kill(k)
        self._host.wake()
        self._host.interrupt_running()

    def worker_pids(self, timeout=10.0):
        """The workers' pids. Workers asked for but not forked yet (the pool just started, or one
        is being replaced) are waited for, up to timeout seconds, unless the pool is broken."""
        region, n = self._region, self.nworkers
        deadline = time.monotonic() + timeout
        while True:
            slots = [worker_slot(region, k) for k in range(n)]
            coming = any(s.state == WorkerState.SPAWN or
                         (s.state == WorkerState.STARTING and s.pid <= 0) for s in slots)
            if not coming or self._broken is not None or self._terminated or \
                    time.monotonic() >= deadline:
                return [s.pid for s in slots if s.pid > 0]
            time.sleep(0.002)


_interpreter_exiting = False


def interpreter_exiting():
    """True once the interpreter began to exit (threading's exit hooks ran)."""
    return _interpreter_exiting


def _python_exit():
    """Runs before atexit's hooks, as concurrent.futures' own: from here on no executor takes new
    work, and an executor the program left open finishes what it was given (its futures
    complete) before the interpreter goes on exiting."""
    global _interpreter_exiting
    _interpreter_exiting = True
    engines = [e for e in list(_live_engines)
               if e.finish_at_exit and e._pid == os.getpid() and not e._terminated]
    for engine in engines:
        try:
            engine.close()
        except Exception:
            pass
    for engine in engines:
        try:
            engine.join()
        except Exception:
            pass


def _atexit():
    """Pools left running are terminated at exit, as multiprocessing's finalizers do."""
    for engine in list(_live_engines):
        try:
            if engine._pid == os.getpid():
                engine.terminate()
        except Exception:
            pass


import atexit  # noqa: E402

threading._register_atexit(_python_exit)
atexit.register(_atexit)
