"""The seeds' shared counter: 2 fork processes x 1,000,000 increments each, with
allcores.Counter (one atomic add), allcores.Value under its lock, and multiprocessing.Value under
its lock. Timed from a start signal to the last join (process start excluded); the cases
alternate for ROUNDS rounds and the medians are compared. Every run checks the exact total.

    python benchmarks/bench_shared_counter.py [increments per process]
"""
import multiprocessing as mp
import statistics
import sys
import time

import allcores

ROUNDS = 3


def _counter(go, c, n):
    go.wait()
    for _ in range(n):
        c += 1


def _locked_value(go, v, n):
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def _run(target, obj, n):
    go = allcores.Event()
    procs = [mp.get_context("fork").Process(target=target, args=(go, obj, n)) for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.2)  # both processes wait on the event
    t0 = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    return time.perf_counter() - t0


def main(n):
    cases = {
        "allcores.Counter": (_counter, lambda: allcores.Counter()),
        "allcores.Value + lock": (_locked_value, lambda: allcores.Value("q", 0)),
        "multiprocessing.Value + lock": (_locked_value, lambda: mp.Value("q", 0)),
    }
    times = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, (target, make) in cases.items():
            obj = make()
            times[name].append(_run(target, obj, n))
            assert obj.value == 2 * n, (name, obj.value)
    base = statistics.median(times["multiprocessing.Value + lock"])
    print(f"Python {sys.version.split()[0]}, 2 processes x {n} increments, median of {ROUNDS}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:30s} {2 * n / med / 1e6:7.2f} M increments/s  {base / med:6.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
