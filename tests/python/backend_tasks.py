"""Task functions for the backend tests: they identify the worker running them without relying
on process ids (thread and interpreter workers share the test process's pid)."""
import os
import sys
import threading
import time

_local = threading.local()


def worker_token(_=None):
    """A token unique to the worker running this task: its process, interpreter and thread (a
    replacement worker, even on a reused thread id, gets a new one)."""
    pid = os.getpid()
    mine = getattr(_local, "token", None)
    if mine is None or mine[0] != pid:  # a forked worker inherits its parent thread's local
        mine = _local.token = (pid, os.urandom(8).hex())
    return f"{pid}-{mine[1]}"


def token_after(secs):
    time.sleep(secs)
    return worker_token()


def meet_token(directory, n, _=None, limit=30.0):
    """Registers this worker in directory and waits until n workers are there at once: returns
    only if n tasks run at the same time, in n different workers."""
    me = worker_token()
    with open(os.path.join(directory, me), "w"):
        pass
    deadline = time.monotonic() + limit
    while len(os.listdir(directory)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(directory))} of {n} workers met")
        time.sleep(0.01)
    return me


def started_then_nap(directory, x, secs=1.0):
    """Registers this task as running (a file of its own: workers may share a pid), then sleeps
    secs in short naps (an interpreter worker's interrupt lands between two) and returns x."""
    with open(os.path.join(directory, f"{worker_token()}-{x}"), "w"):
        pass
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return x


def interpreter_id(_=None):
    """The id of the interpreter running this task (0: the main interpreter)."""
    try:
        import _interpreters as interpreters  # 3.13
    except ImportError:
        import _xxsubinterpreters as interpreters  # 3.12
    current = interpreters.get_current()
    return int(current[0] if isinstance(current, tuple) else current)


def spin_until_interrupted(marker):
    """Pure Python that never ends by itself: creates marker, then loops."""
    with open(marker, "w"):
        pass
    n = 0
    while True:
        n += 1


def numpy_sum(n):
    import numpy
    return int(numpy.arange(n).sum())


def import_module(name):
    __import__(name)
    return name


def hash_of(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def length(x):
    return len(x)


def compressed_length(data):
    import zlib
    return len(zlib.compress(data, level=1))  # a keyword: Argument Clinic's parser


def core_round_trip(n):
    """Uses allcores' own C extension inside the worker: a Region of its own, n tasks through its
    ring and back off it."""
    from allcores import _core
    region = _core.Region(1, 4, 4, 1 << 20)
    ids = []
    for i in range(n):
        assert region.push_task(i + 1, 0, 0, b"x" * (i * 1000), 0.0)
        ids.extend(region.drain_tasks())
    region.destroy()
    return ids


def python_version(_=None):
    return sys.version_info[:2]


def square(x):
    return x * x


_state = {}


def set_state(value):
    _state["value"] = value


def get_state(_=None):
    return _state.get("value")


def fail_init(message="cannot init"):
    raise RuntimeError(message)


def add(a, b):
    return a + b


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x * x


def meet_then_random(directory, n, _=None):
    """Waits until n workers meet (see meet_token), then draws 64 random bits."""
    import random
    meet_token(directory, n)
    return random.getrandbits(64)


def process_name(_=None):
    import multiprocessing
    return multiprocessing.current_process().name


def meet_then_interpreter_id(directory, n, _=None):
    """Waits until n workers meet (see meet_token), then names its interpreter."""
    meet_token(directory, n)
    return interpreter_id()
