"""Misbehaving benchmark cases, loaded into bench children through ALLCORES_BENCH_CASES by
test_bench.py: a row that hangs with a process of its own, one that raises, one that dies."""
import os
import time

from allcores_bench.case import case


@case("test_hang", "hangs", figure="s", unit="s", lower_is_better=True, libs=["allcores"],
      params={})
def hang(lib, workers, p):
    pid = os.fork()
    if pid == 0:  # a "worker" that would outlive the row if the bench only killed the row
        while True:
            time.sleep(1)
    with open(p["pids"], "w") as f:
        f.write(f"{os.getpid()} {pid}")
    while True:
        time.sleep(1)


@case("test_raise", "raises", figure="s", unit="s", lower_is_better=True, libs=["allcores"],
      params={})
def raises(lib, workers, p):
    raise ValueError("broken peer")


@case("test_die", "dies", figure="s", unit="s", lower_is_better=True, libs=["allcores"],
      params={})
def dies(lib, workers, p):
    os._exit(3)
