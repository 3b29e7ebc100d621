"""What the benchmark's workers run: module-level functions, so every library can pickle them
by reference."""
import os
import time


def inc(x):
    """The tiny task: its cost is the library's, not the work's."""
    return x + 1


def work(n):
    """The CPU-bound pure-Python loop of the demo and the bench."""
    s = 0
    for i in range(n):
        s += i * i
    return s


def timed(fn, *args):
    """Seconds fn(*args) took (run in the parent, between the pool's calls)."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def timed_map(map_fn, n, workers, expected):
    """Seconds map_fn(work, [n] * workers) took to give all its results, checked against
    expected (a map that returns wrong results is a bug, not a figure)."""
    t0 = time.perf_counter()
    out = list(map_fn(work, [n] * workers))
    dt = time.perf_counter() - t0
    if out != [expected] * workers:
        raise AssertionError("wrong results")
    return dt


def pid_after(delay):
    """Sleeps, then names the worker: spreads a few tasks over every worker of a pool."""
    time.sleep(delay)
    return os.getpid()


# --- big payloads (transfer_cases.py) ---------------------------------------------------------

_PAYLOADS = {}


def make_payload(kind, nbytes):
    """A payload of nbytes: bytes, or a numpy uint8 array. Kept per process and reused, so that a
    transfer's time never includes making (and faulting in) a fresh payload."""
    key = (kind, nbytes)
    if key not in _PAYLOADS:
        if kind == "numpy":
            import numpy as np
            _PAYLOADS[key] = np.full(nbytes, 7, dtype=np.uint8)
        else:
            _PAYLOADS[key] = b"\x07" * nbytes
    return _PAYLOADS[key]


def size_of(x):
    """The task "to a worker": receiving the payload is the cost; nothing else is done with it."""
    return x.nbytes if hasattr(x, "nbytes") else len(x)


def payload(spec):
    """The task "back from a worker": returns the worker's own payload (spec: (kind, nbytes)),
    made once."""
    return make_payload(*spec)


def ends(a):
    """The task a shared array is handed to: reads its first and last element (so the mapping
    is real) and nothing between, since the hand-off, not a scan, is measured."""
    return int(a[0]) + int(a[-1])
