"""The counter race: processes adding to one shared number.

`value.value += 1` on a multiprocessing.Value is a read then a write; two processes interleaving
them overwrite each other's increments, even though each read and each write takes the Value's
lock. Holding the lock around the whole `+=` fixes it, at the price of a lock round trip per
increment. allcores.Counter does `c += 1` as one atomic instruction in shared memory: exact,
and no lock at all.

    python examples/counter_race.py --workers 2 --increments 200000
"""
import argparse
import multiprocessing as mp
import os
import sys
from collections.abc import Callable
from typing import Any

import allcores

from _timing import Rows, print_table, timed

# Fork children inherit the shared objects (a multiprocessing.Value cannot be pickled to them).
CTX = mp.get_context("fork")


def add_unlocked(value: Any, n: int) -> None:
    for _ in range(n):
        value.value += 1  # read, then write: another process may write in between


def add_locked(value: Any, n: int) -> None:
    lock = value.get_lock()
    for _ in range(n):
        with lock:
            value.value += 1


def add_counter(counter: allcores.Counter, n: int) -> None:
    for _ in range(n):
        counter += 1  # one atomic add; the name stays bound to the shared counter


def race(target: Callable[[Any, int], None], shared: Any, workers: int, n: int) -> int:
    """Run target(shared, n) in `workers` processes at once and wait for all of them."""
    procs = [CTX.Process(target=target, args=(shared, n)) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return int(shared.value)


CASES: list[tuple[str, Callable[[Any, int], None], Callable[[], Any]]] = [
    ("multiprocessing.Value, no lock", add_unlocked, lambda: CTX.Value("q", 0)),
    ("multiprocessing.Value + lock", add_locked, lambda: CTX.Value("q", 0)),
    ("allcores.Counter", add_counter, lambda: allcores.Counter(0)),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 1))
    ap.add_argument("--increments", type=int, default=200_000, help="per process")
    args = ap.parse_args(argv)
    expected = args.workers * args.increments
    print(f"{args.workers} processes x {args.increments:,} increments = {expected:,} expected")
    rows: Rows = []
    lost: dict[str, int] = {}
    for name, target, make in CASES:
        total, secs = timed(race, target, make(), args.workers, args.increments)
        lost[name] = expected - total
        rows.append((name, secs))
        print(f"  {name:32} total {total:>11,}  lost {lost[name]:>9,}")
    print_table(rows, title="wall time, speedup against the locked Value (the exact stdlib way):",
                baseline="multiprocessing.Value + lock")
    exact = lost["multiprocessing.Value + lock"] == 0 and lost["allcores.Counter"] == 0
    times = dict(rows)
    print(f"-> without a lock {lost['multiprocessing.Value, no lock']:,} increments were lost; "
          f"the lock and allcores.Counter are exact ({'yes' if exact else 'NO'}), and the "
          f"Counter is {times['multiprocessing.Value + lock'] / times['allcores.Counter']:.1f}x "
          f"faster than the locked Value")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
