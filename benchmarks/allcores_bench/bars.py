"""The performance targets ("bars"), each a check on the figures of one run. Each case module
registers its own with @bar. A bar whose case was not run is left out; a bar whose case ran
but whose figures are missing (a row failed) fails, so a broken allcores never passes by silence."""
from __future__ import annotations

BARS = []


def bar(text, case, *rows):
    """Registers fn(results) -> (passed, detail), or None when a figure is missing. `rows` are
    the rows the bar reads (default: allcores.Pool's); a bar is left out when its case or one of
    its rows was not run (--cases, --libs)."""
    def register(fn):
        BARS.append((text, case, rows or ("allcores",), fn))
        return fn
    return register


def figure(results, case, lib, key=None):
    c = results.get(case)
    if not c:
        return None
    v = c["rows"].get(lib, {}).get(key or c["figure"])
    return v if isinstance(v, (int, float)) and v > 0 else None


def advantage(results, case, peer, ours="allcores"):
    """How many times better `ours` is than `peer` on the case's headline figure (> 1: better)."""
    a, b = figure(results, case, ours), figure(results, case, peer)
    if a is None or b is None:
        return None
    return b / a if results[case]["lower_is_better"] else a / b


def _at_least(results, case, peer, factor, ours="allcores"):
    x = advantage(results, case, peer, ours)
    if x is None:
        return None
    return x >= factor, f"{x:.1f}x (needs {factor:g}x)"


def _at_most_times(results, case, peer, limit):
    a, b = figure(results, case, "allcores"), figure(results, case, peer)
    if a is None or b is None:
        return None
    return a / b <= limit, f"{a / b:.2f}x of it ({a:.1f} vs {b:.1f}; limit {limit:g}x)"


@bar("round trip: median <= 15 µs", "rtt")
def _rtt_abs(r):
    v = figure(r, "rtt", "allcores")
    return None if v is None else (v <= 15, f"{v:.1f} µs")


@bar("round trip: >= 10x ProcessPoolExecutor", "rtt", "allcores",
     "ProcessPoolExecutor")
def _rtt_ppe(r):
    return _at_least(r, "rtt", "ProcessPoolExecutor", 10)


@bar("round trip: allcores.ProcessPoolExecutor >= 10x ProcessPoolExecutor", "rtt",
     "allcores.executor", "ProcessPoolExecutor")
def _rtt_ppe_exec(r):
    return _at_least(r, "rtt", "ProcessPoolExecutor", 10, ours="allcores.executor")


@bar("submit() then result(): >= 10x ProcessPoolExecutor", "submit", "allcores",
     "ProcessPoolExecutor")
def _submit_ppe(r):
    return _at_least(r, "submit", "ProcessPoolExecutor", 10)


@bar("submit() then result(): allcores.ProcessPoolExecutor >= 10x ProcessPoolExecutor",
     "submit", "allcores.executor", "ProcessPoolExecutor")
def _submit_ppe_exec(r):
    return _at_least(r, "submit", "ProcessPoolExecutor", 10, ours="allcores.executor")


@bar("imap(chunksize=1): >= 3x multiprocessing.Pool", "imap1", "allcores", "multiprocessing")
def _imap1(r):
    return _at_least(r, "imap1", "multiprocessing", 3)


@bar("map with automatic chunks: at least as fast as multiprocessing.Pool.map's default",
     "map", "allcores", "multiprocessing")
def _map(r):
    return _at_least(r, "map", "multiprocessing", 1)


@bar("CPU-bound efficiency: within 3% of the ideal row", "cpu", "allcores", "ideal")
def _cpu(r):
    v = figure(r, "cpu", "allcores", "vs_ideal")
    if v is None:
        return None
    # Both speedups come from the one median round the ratio was taken from.
    ours = figure(r, "cpu", "allcores", "speedup") or 0
    ideal = figure(r, "cpu", "allcores", "ideal_speedup") or 0
    return v >= 0.97, (f"{v:.1%} of ideal, paired per round (speedup {ours:.2f}x, the ideal "
                       f"row's {ideal:.2f}x in the same round)")


@bar("start-up to first result: <= 1.2x multiprocessing.Pool (fork)", "startup", "allcores",
     "multiprocessing")
def _startup(r):
    return _at_most_times(r, "startup", "multiprocessing", 1.2)


@bar("private memory per worker: <= 1.2x multiprocessing.Pool (fork)", "memory", "allcores",
     "multiprocessing")
def _memory(r):
    return _at_most_times(r, "memory", "multiprocessing", 1.2)


def check(results):
    """[(bar, passed, detail)] for every bar whose case was run."""
    out = []
    for text, case, rows, fn in BARS:
        if case not in results or not set(rows) <= set(results[case]["rows"]):
            continue
        verdict = fn(results) or (False, "no figure: a row it needs failed (see the table)")
        out.append((text, bool(verdict[0]), verdict[1]))
    return out
