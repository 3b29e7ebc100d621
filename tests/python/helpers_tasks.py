"""Task functions for the pool behaviour tests.

They live in an importable module so that workers of every implementation under test (allcores,
multiprocessing, concurrent.futures, even with the spawn start method) load them by reference.
"""
import dataclasses
import os
import signal
import sys
import threading
import time


def square(x):
    return x * x


def ident(x):
    return x


def add(a, b):
    return a + b


def add3(a, b, c=0):
    return a + b + c


def kwargs_echo(*args, **kwargs):
    return args, kwargs


def pid_of(_=None):
    return os.getpid()


def sleep_then(x, secs):
    time.sleep(secs)
    return x


def sleep_pid(secs):
    time.sleep(secs)
    return os.getpid()


def sleep_long(_=None):
    time.sleep(60)
    return "woke up"


def length(data):
    return len(data)


def make_bytes(n):
    return b"\xab" * n


def describe(obj):
    """What the worker received: its repr, so the caller can compare structure."""
    return repr(obj)


# -- errors -------------------------------------------------------------------------------------

class CustomError(Exception):
    """An exception with several arguments that pickles fine."""


def raise_value_error(x=None):
    raise ValueError(f"bad value {x!r}")


def raise_custom(*args):
    raise CustomError(*args)


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x * x


def fail_on_many(x, bad):
    if x in bad:
        raise KeyError(x)
    return x


class CannotRebuild(Exception):
    """Pickles as (cls, args) but needs two arguments to be rebuilt: unpickling it fails."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def raise_cannot_rebuild(_=None):
    raise CannotRebuild("cannot rebuild me", 7)


def raise_holding_lock(_=None):
    e = RuntimeError("exception holding a lock")
    e.lock = threading.Lock()
    raise e


def return_lock(_=None):
    return threading.Lock()


def lock_at(x, bad):
    return threading.Lock() if x == bad else x


def call_sys_exit(code):
    sys.exit(code)


# -- worker death -------------------------------------------------------------------------------

def kill_self(_=None):
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


def segfault(_=None):
    # Workers inherit pytest's faulthandler, which would print this worker's stack on the test's
    # terminal; the worker dies of SIGSEGV either way.
    import ctypes  # here, not at the top: Python 3.12 refuses ctypes in a subinterpreter
    import faulthandler
    faulthandler.disable()
    ctypes.string_at(0)


def exit_now(code=3):
    os._exit(code)


def die_on(x, bad, how="kill"):
    if x == bad:
        if how == "kill":
            kill_self()
        elif how == "exit":
            exit_now(5)
        else:
            segfault()
    return x * x


def pid_then_die(path):
    """Writes this worker's pid to path, then is killed."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    kill_self()


# -- initializers and per-worker state ----------------------------------------------------------

_state = {}


def init_state(value, other=None):
    _state["value"] = value
    _state["other"] = other
    _state["pid"] = os.getpid()


def read_state(_=None):
    return _state.get("value"), _state.get("other"), _state.get("pid") == os.getpid()


def init_fail(msg="initializer failed"):
    raise RuntimeError(msg)


# -- laziness -----------------------------------------------------------------------------------

def mark_started(path, secs=60):
    """Creates path (to show that the task started) and sleeps."""
    with open(path, "w"):
        pass
    time.sleep(secs)
    return path


def wait_for_file(path, limit=30.0):
    """Blocks until path exists (a gate the test opens by creating it)."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} never opened")
        time.sleep(0.01)
    return path


def gated_square(x, gate):
    """Square of x, for x >= 2 only once the gate file exists (the caller stays in control)."""
    if x >= 2:
        wait_for_file(gate)
    return x * x


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float
    tags: tuple = ()


def move(p, dx):
    return Point(p.x + dx, p.y, p.tags + ("moved",))


# -- test-side helpers (run in the test process) ------------------------------------------------

def open_gate(path):
    with open(path, "w"):
        pass


def wait_until(predicate, limit=20.0, what="the condition"):
    """Polls predicate until it is true; raises AssertionError (not a hang) when it never is."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit} s")
        time.sleep(0.01)


def process_gone(pid, zombie_ok=False):
    """True when no process pid runs any more. An unreaped zombie counts as still there unless
    zombie_ok (for orphans, whose reaping is up to whatever adopted them)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return zombie_ok and state in ("Z", "X")


def meet(directory, n, limit=30.0):
    """Registers this worker in directory and waits until n workers are there at once: returns
    only if n tasks run at the same time."""
    with open(os.path.join(directory, str(os.getpid())), "w"):
        pass
    deadline = time.monotonic() + limit
    while len(os.listdir(directory)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(directory))} of {n} workers met")
        time.sleep(0.01)
    return os.getpid()


def signal_then_wait(started, gate):
    """Creates the file started (the test sees the task running), then waits for the gate."""
    with open(started, "w"):
        pass
    return wait_for_file(gate)


def pid_then_sleep(path, secs=60):
    """Writes this worker's pid to path, then sleeps."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    time.sleep(secs)
    return os.getpid()


def sleep_on(x, slow, secs=60):
    if x == slow:
        time.sleep(secs)
    return x * x


def started_then_sleep(directory, x, secs=60):
    """Registers this task as running (a file named after the worker's pid) and sleeps."""
    with open(os.path.join(directory, str(os.getpid())), "w"):
        pass
    time.sleep(secs)
    return x


def add_one_in_place(a):
    """Modifies its argument in place, as many multiprocessing users do with numpy arrays."""
    a += 1
    return float(a.sum())


def zeros(n):
    import numpy
    return numpy.zeros(n)


def say(text):
    print(text)
    return text


def environment(name):
    return os.environ.get(name), os.getcwd(), _state.get("value")


def process_name(_=None):
    import multiprocessing
    return multiprocessing.current_process().name


def raise_with_attribute(code):
    e = CustomError("with attribute")
    e.code = code
    raise e


def random_bits(_=None):
    import random
    return random.getrandbits(64)


def meet_then_random(directory, n):
    meet(directory, n)
    return random_bits()


def make_exception(msg):
    return ValueError(msg)


def nested_pool_sum(n):
    """A task that uses a pool of its own (nested parallelism)."""
    import allcores
    with allcores.Pool(2) as pool:
        return sum(pool.map(square, range(n)))


def nested_default_sum(n):
    import allcores
    return sum(allcores.map(square, range(n)))


def pattern(n, seed):
    """n deterministic pseudo-random bytes (cheap: a repeated 256-byte block rotated by seed)."""
    block = bytes((i * 131 + seed * 17) & 0xFF for i in range(256))
    reps = n // 256 + 1
    return (block * reps)[:n]


def digest(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def echo_pattern(data, n, seed):
    """Checks the argument it got and answers with a pattern of its own."""
    return digest(data), pattern(n, seed)


def describe_array(a):
    # pickling keeps Fortran order and makes other non-contiguous arrays C-contiguous
    order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    return (a.shape, a.dtype.str, order,
            a.tolist() if a.size < 50 or a.dtype.hasobject else digest(a.tobytes(order="A")))


def array_roundtrip(a):
    return a


def mutate(buf):
    """Changes its (mutable) argument in place and reports its type."""
    buf[0] = 7
    return type(buf).__name__, buf[0], len(buf)


def doubled(a):
    """A result as big as its argument (a numpy array, received as a view of shared memory)."""
    return a * 2
