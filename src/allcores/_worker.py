"""The worker process's loop: take a task from the shared ring, run it, publish its result.

A worker is forked from the pool's template process and runs until the task ring closes, its
task budget (maxtasksperchild) is spent, or it is killed. Every exception a task raises, even
SystemExit, becomes that task's result; the loop itself never dies of a task.
"""
from __future__ import annotations

import itertools
import os
import pickle
import time

from . import _oob
from . import _serialize as ser
from ._protocol import (EXIT_CANNOT_MAP, KIND_MASK, OOB, RESULT_CHUNK, RESULT_ERR,
                        RESULT_INIT_ERR, RESULT_OK, TASK_CALL, TRACK)
from .errors import ResultPicklingError

EXIT_INIT_FAILED = 3

# How long a worker that just finished a task spins for the next before sleeping; the ring lets
# only one worker spin at a time.
WORKER_SPIN_NS = 100_000

_loads = pickle.loads
_dumps = pickle.dumps

# Forks into a child of the process that imported this module, counted in the child: a worker
# sees that a task forked and returned into the loop as the child without asking the kernel for
# its pid after every task (getpid() is a system call: 0.18 µs on the 2-core VM).
_forks = [0]


def _count_fork():
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)


def _dump_value(value, what: str) -> tuple[int, bytes]:
    try:
        if _oob.wants_oob(value) or (type(value) is tuple and value and type(value[0]) is list
                                     and value[0] and _oob.is_big(value[0][0])):
            return RESULT_OK | OOB, _oob.dumps(value)
        return RESULT_OK, _dumps(value, ser.PROTOCOL)
    except Exception:
        try:
            return RESULT_OK, ser.cloudpickle().dumps(value, ser.PROTOCOL)
        except Exception as exc:
            err = ResultPicklingError(
                f"cannot send the result of task {what} back: {type(value).__qualname__} object "
                f"{ser.short_repr(value)}: {exc}", repr(exc), ser.short_repr(value))
            return RESULT_ERR, ser.dumps_exception(err, what)


def _run_chunk_fast(region, k, fn, items, star, what):
    # list.extend keeps what it appended before an exception, so a failure costs nothing until
    # it happens: tiny items run at the speed of map() itself.
    values = []
    errors = {}
    n = len(items)
    mapper = itertools.starmap if star else map
    start = 0
    while start < n:
        try:
            values.extend(mapper(fn, items if start == 0 else itertools.islice(items, start, None)))
            break
        except BaseException as exc:  # noqa: B902 - a task's failure is its result
            idx = len(values)
            values.append(None)
            errors[idx] = ser.dumps_exception(exc, what)
            start = idx + 1
            region.set_item(k, start)
    return values, errors


def _run_chunk_tracked(region, k, fn, items, star, what):
    values = []
    errors = {}
    append = values.append
    set_item = region.set_item
    for i, item in enumerate(items):
        if i:
            set_item(k, i)
        try:
            append(fn(*item) if star else fn(item))
        except BaseException as exc:  # noqa: B902 - a task's failure is its result
            append(None)
            errors[i] = ser.dumps_exception(exc, what)
    return values, errors


def main(region, k: int, initializer, initargs, maxtasks, log_init_errors=False,
         shared_modules=False) -> int:
    """Runs worker slot k. Returns the process exit code. shared_modules: this worker runs in
    the program's own interpreter (a thread)."""
    forks = _forks[0]
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:  # noqa: B902
            if log_init_errors:  # as concurrent.futures' workers report it
                try:
                    import logging
                    logging.getLogger("concurrent.futures").critical(
                        "Exception in initializer:", exc_info=True)
                except BaseException:  # noqa: B902 - the parent still learns of the failure
                    pass
            what = f"initializer {ser.describe(initializer)}"
            region.send_result(k, 0, RESULT_INIT_ERR, k, ser.dumps_exception(exc, what))
            return EXIT_INIT_FAILED
    fns: dict[bytes, tuple] = {}  # function pickle -> (function, its name for messages)
    # A function named by reference is looked up once, unless this worker shares the program's
    # modules (a thread of its process), where the program may rebind that name at any time.
    keep_fns = not shared_modules
    done = 0
    next_task = region.next_task
    send = region.send_result
    perf = time.perf_counter_ns
    while maxtasks is None or done < maxtasks:
        try:
            task = next_task(k, WORKER_SPIN_NS)
        except MemoryError:
            # The arena segment holding the task's payload does not fit in this process's
            # address space. The task stays recorded as this worker's: the parent frees its
            # block, fails it with MemoryError and starts a fresh worker.
            return EXIT_CANNOT_MAP
        if task is None:
            break
        tid, kind, aux, payload = task
        elapsed = 0
        # Inline bit tests, not _protocol's helpers: this runs once per task.
        track = kind & TRACK
        oob = kind & OOB
        kind &= KIND_MASK
        what = "?"
        try:
            fn_blob, body, extra = _oob.loads(payload) if oob else _loads(payload)
            known = fns.get(fn_blob) if keep_fns and type(fn_blob) is bytes else None
            if known is None:
                if type(fn_blob) is bytes:  # by reference (see ser.dumps_callable)
                    fn = _loads(fn_blob)
                    known = (fn, ser.describe(fn))
                    if keep_fns:
                        if len(fns) > 256:
                            fns.clear()
                        fns[fn_blob] = known
                else:  # by value: a fresh copy for every task, as the standard library does
                    fn = _loads(fn_blob[0])
                    known = (fn, ser.describe(fn))
            fn, what = known
            if kind == TASK_CALL:
                t0 = perf()
                value = fn(*body, **extra) if extra else fn(*body)
                elapsed = perf() - t0
                rkind, out = _dump_value(value, what)
            else:
                t0 = perf()
                values, errors = (_run_chunk_tracked if track else _run_chunk_fast)(
                    region, k, fn, body, extra, what)
                chunk_ns = perf() - t0
                elapsed = chunk_ns // max(1, len(body))  # per item, for the parent's wake policy
                rkind, out = _dump_value((values, errors, chunk_ns), what)
                if rkind & KIND_MASK == RESULT_OK:
                    rkind = RESULT_CHUNK | (rkind & OOB)
                else:  # one value could not be pickled: find it, fail just that item
                    rkind, out = RESULT_CHUNK, _dumps(_isolate_unpicklable(values, errors, what) + (chunk_ns,),
                                                 ser.PROTOCOL)
        except BaseException as exc:  # noqa: B902
            rkind, out = RESULT_ERR, ser.dumps_exception(exc, what)
        if _forks[0] != forks:
            # The task forked and this is the child returning into the loop: it must not act as a
            # second copy of this worker.
            os._exit(0)
        try:
            send(k, tid, rkind, elapsed if elapsed < 0xFFFFFFFF else 0xFFFFFFFF, out)
        except MemoryError as exc:  # larger than the whole shared region
            size = _oob.total(out) if isinstance(out, list) else len(out)
            err = MemoryError(f"the result of task {what} takes {size} bytes, more than the "
                              f"pool's shared region can hold ({region.max_payload} bytes): {exc}")
            send(k, tid, RESULT_ERR, 0, ser.dumps_exception(err, what))
        done += 1
        # An idle worker must not pin its last task's arena blocks (a big argument, a result
        # that is a view of it) while it waits for the next task, maybe for ever.
        task = payload = fn_blob = body = extra = value = values = out = None
    return 0


def _isolate_unpicklable(values, errors, what):
    for i, v in enumerate(values):
        if i in errors:
            continue
        rkind, out = _dump_value(v, what)
        if rkind != RESULT_OK:
            values[i] = None
            errors[i] = out
    return values, errors


def name_this_worker(k):
    """Names this worker as multiprocessing names its pool workers, so that tasks can tell them
    apart: "AllcoresPoolWorker-N" and current_process()._identity == (N,), which programs use
    as a worker's number (a tqdm bar's position, a GPU to take). N is the worker's slot, 1 to
    the pool's size: a replacement worker takes its predecessor's number."""
    import multiprocessing
    me = multiprocessing.current_process()
    me.name = f"AllcoresPoolWorker-{k + 1}"
    me._identity = (k + 1,)
