"""Timing helpers shared by the examples: time a callable, print a table of wall times and
speedups against the first row. Kept apart so every example measures and prints the same way."""
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")
#: (name, wall seconds) rows, as print_table takes them.
Rows = list[tuple[str, float]]


def timed(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> tuple[_T, float]:
    """Run fn(*args, **kwargs) once; return (result, wall seconds)."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def print_table(rows: Sequence[tuple[str, float]], title: str | None = None,
                baseline: str | None = None) -> None:
    """rows: [(name, seconds)]. Speedups are relative to the row named baseline (default: the
    first), so "2.00x" reads as "twice as fast as that row"."""
    if title:
        print(title)
    base = dict(rows)[baseline] if baseline else rows[0][1]
    width = max(len(name) for name, _ in rows)
    print(f"  {'':{width}}  {'wall':>8}  {'speedup':>7}")
    for name, secs in rows:
        print(f"  {name:{width}}  {secs:7.3f}s  {base / secs:6.2f}x")


def speedup(rows: Sequence[tuple[str, float]], name: str, baseline: str | None = None) -> float:
    """The speedup of row `name` against `baseline` (default: the first row)."""
    times = dict(rows)
    return (times[baseline] if baseline else rows[0][1]) / times[name]


def compare(runs: Sequence[tuple[str, Callable[..., _T]]], *args: Any) -> tuple[Rows, _T, bool]:
    """Time each (name, fn) of runs on the same args. Returns (rows, first result, same): rows
    for print_table, the first run's result, and whether every run returned an equal result."""
    timings = [(name, *timed(fn, *args)) for name, fn in runs]
    first = timings[0][1]
    same = all(result == first for _, result, _ in timings)
    return [(name, secs) for name, _, secs in timings], first, same


def say_identical(same: bool, detail: str = "") -> None:
    print(f"results identical: {'yes' if same else 'NO'}{detail}")
