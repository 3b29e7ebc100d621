"""The futures a pool's engine completes: TaskFuture, and the helpers that complete any future.

TaskFuture is a concurrent.futures.Future that knows the engine and the task behind it, so that
result() collects results in the waiting thread and running()/cancel() ask the workers. Every
engine (process, thread, interpreter, dask) hands these out; what they need of an engine is
wait_for(done, timeout), interrupt() and is_running(task_id).
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING

_cond_lock = threading.Lock()
_LOGGER = logging.getLogger("concurrent.futures")
_DONE_STATES = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class TaskFuture(Future):
    """A concurrent.futures.Future tuned for many short tasks.

    - Its condition is created only when a thread first waits on it (most futures of a burst
      complete before anyone waits), which halves the cost of a future.
    - result() first helps: it drains the result ring itself for a few microseconds, which saves
      the wake-up of the collector thread on short tasks.
    - Ctrl-C while waiting stops the pool's current work (Engine.interrupt) and re-raises.
    """

    def __init__(self, engine=None, tid=0):
        self._engine = engine  # None: a plain Future (no pool behind it, or cancelled)
        self._tid = tid
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters = []
        self._done_callbacks = []

    def __getattr__(self, name):
        if name != "_condition":
            raise AttributeError(name)
        with _cond_lock:
            cond = self.__dict__.get("_condition")
            if cond is None:
                cond = self.__dict__["_condition"] = threading.Condition()
        return cond

    def _finish_unwatched(self, result, exception):
        """Completes the future if nobody ever looked at its condition; returns False otherwise.
        Creating the condition takes _cond_lock, so a waiter either sees FINISHED or exists."""
        with _cond_lock:
            if "_condition" in self.__dict__:
                return False
            if self._state in _DONE_STATES:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._exception = exception
            self._state = FINISHED
        self._invoke_callbacks()
        return True

    def _invoke_callbacks(self):
        # As concurrent.futures logs and contains a callback's Exception; here any exception
        # (SystemExit too) is: a callback runs in whichever thread completes the future, often
        # in the middle of a batch of other results, which must not be lost with it. Ctrl-C in
        # the main thread is the exception: it propagates once every callback ran.
        interrupted = None
        for callback in self._done_callbacks:
            try:
                _call_back(self, callback)
            except KeyboardInterrupt as exc:
                interrupted = exc
        if interrupted is not None:
            try:
                raise interrupted
            finally:
                interrupted = None

    def add_done_callback(self, fn):
        with self._condition:
            if self._state not in _DONE_STATES:
                self._done_callbacks.append(fn)
                return
        _call_back(self, fn)  # done already: now, in this thread, contained as above

    def running(self):
        """True while a worker runs this task."""
        if self._state == PENDING and self._engine is not None:
            return self._engine.is_running(self._tid)
        return super().running()

    def cancel(self):
        """Cancel the task if no worker has started it (as concurrent.futures does); a cancelled
        task never reports, and if a worker takes it later its result is dropped."""
        if self._state == PENDING and self._engine is not None and \
                self._engine.is_running(self._tid):
            return False
        return super().cancel()

    def set_result(self, result):
        if not self._finish_unwatched(result, None):
            super().set_result(result)

    def set_exception(self, exception):
        if not self._finish_unwatched(None, exception):
            super().set_exception(exception)

    def _wait(self, timeout):
        """Collects results in this thread until done; returns what is left of timeout for the
        final wait on the condition (0 once done)."""
        end = None if timeout is None else time.monotonic() + timeout
        try:
            if self._engine.wait_for(self.done, timeout):
                return 0
        except KeyboardInterrupt:
            self._engine.interrupt()
            raise
        return None if end is None else max(0.0, end - time.monotonic())

    def done(self):
        # One attribute read is atomic: no condition (and no lock) for the common question.
        return self._state in _DONE_STATES

    def result(self, timeout=None):
        if self._state != FINISHED and self._engine is not None:
            timeout = self._wait(timeout)
        if self._state == FINISHED:  # set before _state: see _finish_unwatched
            exc = self._exception
            if exc is None:
                return self._result
            try:
                raise exc
            finally:
                # No cycle through the traceback's frame (as Future.result breaks it).
                self = exc = None  # noqa: F841
        return super().result(timeout)

    def exception(self, timeout=None):
        if self._state != FINISHED and self._engine is not None:
            timeout = self._wait(timeout)
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)


def run_contained(callback, arg, report):
    """callback(arg); whatever it raises is contained and report() called in its except block
    (to log or print it), all but Ctrl-C in the main thread, which propagates. A callback that
    raises must never cost another future its result."""
    try:
        callback(arg)
    except BaseException as exc:  # noqa: B902
        if isinstance(exc, KeyboardInterrupt) and \
                threading.current_thread() is threading.main_thread():
            raise
        report(arg)


def _log_callback_error(fut):
    _LOGGER.exception("exception calling callback for %r", fut)


def _call_back(fut, callback):
    """callback(fut), contained and logged as concurrent.futures does."""
    run_contained(callback, fut, _log_callback_error)


def cancel(fut):
    """Cancel a future so that wait() and as_completed() see it as done, as an executor does.
    The pool stopped the task, even if a worker had started it (an interrupt kills that worker),
    so the future is cancelled without asking whether it runs: refusing would leave it pending
    forever, since its entry is gone and no result will ever complete it."""
    if isinstance(fut, TaskFuture):
        fut._engine = None
    if fut.cancel():
        fut.set_running_or_notify_cancel()
    elif not fut.done():  # a plain Future already marked running by its owner
        set_exception(fut, CancelledError())


def set_result(fut, value):
    try:
        fut.set_result(value)
    except InvalidStateError:
        pass  # cancelled meanwhile


def set_exception(fut, exc):
    try:
        fut.set_exception(exc)
    except InvalidStateError:
        pass
