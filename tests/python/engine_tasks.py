"""Task functions for the engine tests; importable, so workers load them by reference."""
import os
import signal
import threading
import time


def square(x):
    return x * x


def ident(x):
    return x


def sleep_then(x, secs):
    time.sleep(secs)
    return x


def pid_of(_=None):
    return os.getpid()


def kill_self(_=None):
    os.kill(os.getpid(), signal.SIGKILL)


def big_result(n):
    return b"x" * n


def unpicklable_result(_=None):
    return threading.Lock()


class Unpicklable(Exception):
    def __init__(self, a, b):  # pickle rebuilds with one argument: this fails to unpickle
        super().__init__(a)
        self.b = b


def raise_unpicklable(_=None):
    raise Unpicklable("bad", 2)


def raise_with_lock(_=None):
    e = ValueError("holds a lock")
    e.lock = threading.Lock()
    raise e


def fork_in_task(_=None):
    pid = os.fork()
    if pid == 0:
        return "child"  # the worker loop must not let this copy act as a worker
    os.waitpid(pid, 0)
    return "parent"


def log_something(x):
    import logging
    logging.getLogger("allcores-test").warning("task %s", x)
    return x
