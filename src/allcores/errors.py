"""Exceptions raised by allcores pools.

WorkerLost and TaskTimeout fail one task; the pool itself goes on serving. Both subclass the
exceptions users of concurrent.futures already catch (BrokenProcessPool, TimeoutError).
"""
from __future__ import annotations

import pickle
import signal as _signal
from concurrent.futures.process import BrokenProcessPool
# The worker's formatted traceback, attached as ``__cause__`` of a re-raised task exception:
# multiprocessing's own class, so code that looks for it there finds it (``.tb``, ``str()``).
from multiprocessing.pool import MaybeEncodingError, RemoteTraceback

__all__ = [
    "WorkerLost", "TaskTimeout", "TaskExit", "RemoteTraceback", "PicklingError",
    "ResultPicklingError", "UnpicklableTaskError", "BrokenProcessPool",
]


class WorkerLost(BrokenProcessPool):
    """The worker process running this task died (killed, crashed, exited).

    Only this task fails; the worker is replaced and the pool keeps serving. ``pid`` is the dead
    worker's process id, ``exitcode`` its exit status (None when killed by a signal) and
    ``signal`` the name of the signal that killed it (None when it exited).
    """

    def __init__(self, message: str = "worker lost", pid: int | None = None,
                 exitcode: int | None = None, signal: str | None = None):
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.pid, self.exitcode, self.signal))

    @classmethod
    def from_wait_status(cls, pid: int, status: int, what: str) -> "WorkerLost":
        if status < 0:
            return cls(f"worker could not be started while running {what}", pid)
        import os
        if os.WIFSIGNALED(status):
            signum = os.WTERMSIG(status)
            try:
                name = _signal.Signals(signum).name
            except ValueError:
                name = f"signal {signum}"
            hint = " (likely the out-of-memory killer or an explicit kill)" if name == "SIGKILL" else ""
            return _with_cause(cls(f"worker {pid} was killed by {name}{hint} while running {what}",
                                   pid, None, name), pid, -signum)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        return _with_cause(cls(f"worker {pid} exited with code {code} while running {what}", pid,
                               code, None), pid, code)


def _with_cause(exc: WorkerLost, pid: int, exitcode: int) -> WorkerLost:
    """Says which process ended, as the cause concurrent.futures (3.15) gives its
    BrokenProcessPool: a remote traceback whose text names the pid and the exit code
    (multiprocessing's: negative for a signal)."""
    from concurrent.futures import process
    remote = getattr(process, "_RemoteTraceback", RemoteTraceback)
    exc.__cause__ = remote(f"\n'''\nProcess {pid} terminated abruptly with exit code {exitcode}'''")
    return exc


class TaskTimeout(TimeoutError):
    """A task ran longer than its ``task_timeout``; its worker was killed and replaced."""


class TaskExit(SystemExit):
    """A task called sys.exit() (or raised SystemExit); the worker caught it and kept serving.

    A SystemExit with the task's ``code``, as concurrent.futures raises from result(): a program
    that does not catch it exits with that code. ``task`` names the task's function.
    """

    def __init__(self, code=None, task: str = "?"):
        super().__init__(code)
        self.task = task

    def __str__(self) -> str:
        return f"task {self.task} called sys.exit({self.code!r}); the worker caught it and goes on"

    def __reduce__(self):
        return (type(self), (self.code, self.task))


class PicklingError(pickle.PicklingError, TypeError):
    """A task's function, argument or result could not be pickled; the message names the object."""


class ResultPicklingError(PicklingError, MaybeEncodingError):
    """A task's result could not be pickled to be sent back: also multiprocessing's
    MaybeEncodingError, which multiprocessing.Pool raises then. ``exc`` and ``value`` are the
    reprs of the pickling error and of the result, as there."""

    def __init__(self, message: str, exc: str = "", value: str = ""):
        Exception.__init__(self, message)
        self.exc = exc
        self.value = value

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):
        return (type(self), (self.args[0], self.exc, self.value))


class UnpicklableTaskError(RuntimeError):
    """A task raised an exception that could not be sent back as itself; the message and the
    worker's traceback describe the original."""
