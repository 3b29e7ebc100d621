"""What the benchmark's workers run: module-level functions, so every library can pickle them
by reference."""
import os
import time


def inc(x):
    """The tiny task: its cost is the library's, not the work's."""
    return x + 1


def work(n):
    """The seeds' CPU-bound pure-Python loop."""
    s = 0
    for i in range(n):
        s += i * i
    return s


def pid_after(delay):
    """Sleeps, then names the worker: spreads a few tasks over every worker of a pool."""
    time.sleep(delay)
    return os.getpid()
