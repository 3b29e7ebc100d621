"""The transfer cases: 64 MiB of bytes and a 64 MiB numpy array to a worker and back,
and a shared array of 1 MiB and of 1 GiB handed to a task (smaller with --quick), against
ProcessPoolExecutor, multiprocessing.Pool, joblib (which memmaps big numpy arrays by itself) and
hand-written multiprocessing.shared_memory.

The payload is made once per process (workloads.make_payload) and reused: making a fresh 64 MiB
object faults in 16,384 fresh pages, which costs more than the transfer on these VMs, and is not
the transfer. What the receiver builds (bytes are rebuilt as bytes, in fresh memory) is counted:
a user pays it."""
from __future__ import annotations

import statistics
import time

from .adapters import open_adapter
from .bars import bar, figure
from .case import case
from .report import sizes
from .shm_peer import ShmPool
from .workloads import ends, make_payload, payload, size_of

PEERS = ["allcores", "ProcessPoolExecutor", "multiprocessing", "joblib", "shm"]
LABELS = {"shm": ShmPool.label,
          "copy_mapped": "limit: one copy into memory already mapped",
          "copy_fresh": "limit: one copy into fresh memory (bytes(x), x.copy())"}
GB = 1e9


def _open(lib, workers):
    return ShmPool(workers) if lib == "shm" else open_adapter(lib, workers)


def _seconds(fn, p):
    """The median time of fn(). Warm-up calls (the arena grows, the workers map what they map)
    double as a probe of the cost, so that a slow peer makes fewer calls (at most cap_s)."""
    t0 = time.perf_counter()
    for _ in range(p["warm"]):
        fn()
    probe = (time.perf_counter() - t0) / p["warm"]
    times = []
    for _ in range(max(1, min(p["n"], int(p["cap_s"] / probe)))):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def _transfer(kind, lib, workers, p):
    nbytes = p["mib"] << 20
    x = make_payload(kind, nbytes)
    a = _open(lib, workers)
    try:
        if lib == "shm":
            to, back = (lambda: a.to(x)), (lambda: a.back(kind, nbytes))
        else:
            to, back = (lambda: a.one(size_of, x)), (lambda: a.one(payload, (kind, nbytes)))
        if to() != nbytes or size_of(back()) != nbytes:
            raise AssertionError("wrong size")
        to_s, n_to = _seconds(to, p)
        back_s, n_back = _seconds(back, p)
    finally:
        a.close()
    out = {"gbs": min(nbytes / to_s, nbytes / back_s) / GB, "to_gbs": nbytes / to_s / GB,
           "back_gbs": nbytes / back_s / GB, "to_ms": to_s * 1e3, "back_ms": back_s * 1e3,
           "n": min(n_to, n_back)}
    if lib == "allcores":
        out["also"] = _limits(kind, x, p)
    return out


def _limits(kind, x, p):
    """The machine's limits beside allcores' row (design.md's "limit" column): one copy into
    memory already mapped (what a sender's copy into the arena can reach), and one into fresh
    memory, as a receiver pays that builds a new object: a bytes object is always fresh memory,
    faulted in 4 KiB pages (numpy asks the kernel for huge pages, so its fresh copy is cheaper)."""
    import numpy as np
    src = np.frombuffer(x, np.uint8) if kind == "bytes" else x
    dst = np.ones_like(src)  # touched once, as the arena is
    fresh = (lambda: bytes(memoryview(x))) if kind == "bytes" else src.copy
    out = {}
    for name, fn in (("copy_mapped", lambda: np.copyto(dst, src)), ("copy_fresh", fresh)):
        rate = src.nbytes / _seconds(fn, dict(p, n=5))[0] / GB
        out[name] = {"gbs": rate, "to_gbs": rate, "back_gbs": rate}
    return out


TRANSFER = dict(figure="gbs", unit="GB/s, the slower way", lower_is_better=False, libs=PEERS,
                params={"mib": 64, "warm": 1, "n": 8, "cap_s": 0.8},
                quick={"mib": 1, "warm": 1, "n": 3, "cap_s": 0.3}, labels=LABELS,
                columns=[("to_gbs", "to a worker GB/s", "{:.2f}"),
                         ("back_gbs", "back GB/s", "{:.2f}"), ("to_ms", "to ms", "{:.1f}"),
                         ("back_ms", "back ms", "{:.1f}"), ("n", "transfers", "{:.0f}")])


# The titles leave the sizes out: the tables and charts add the sizes the run really used
# (report.sizes), since --quick moves 1 MiB where a full run moves 64 MiB.
@case("bytes64", "bytes to a worker (a task taking it) and back (a task returning it)",
      **TRANSFER)
def bytes_64(lib, workers, p):
    return _transfer("bytes", lib, workers, p)


@case("numpy64", "a numpy array to a worker and back", **TRANSFER)
def numpy_64(lib, workers, p):
    return _transfer("numpy", lib, workers, p)


@case("shared_array", "a shared array handed to a task, µs per hand-off", figure="us",
      unit="µs, the big one", lower_is_better=True,
      libs=["allcores", "shm"], params={"small_mib": 1, "big_mib": 1024, "n": 300},
      quick={"big_mib": 16, "n": 30}, labels=LABELS,
      columns=[("small_us", "small µs", "{:.1f}"), ("big_over_small", "big / small", "{:.2f}")])
def shared_array(lib, workers, p):
    """allcores.shared_array passed as a task's argument; the hand-written peer passes a block's
    name. The two sizes alternate, so that the machine's drift hits both alike."""
    sizes = (p["small_mib"] << 20, p["big_mib"] << 20)
    if lib == "shm":
        a = ShmPool(workers)
        hand = {n: (lambda n=n: a.hand_off(n)) for n in sizes}
    else:
        import allcores
        a = open_adapter(lib, workers)
        arrays = {n: allcores.shared_array(n, "uint8") for n in sizes}
        hand = {n: (lambda n=n: a.one(ends, arrays[n])) for n in sizes}
    try:
        times = {n: [] for n in sizes}
        for i in range(p["n"] + 10):
            for n in sizes:
                t0 = time.perf_counter_ns()
                if hand[n]() != 0:
                    raise AssertionError("wrong result")
                if i >= 10:  # the first ones map the arrays in the workers: a warm-up
                    times[n].append(time.perf_counter_ns() - t0)
    finally:
        a.close()
    small, big = (statistics.median(times[n]) / 1e3 for n in sizes)
    return {"us": big, "small_us": small, "big_over_small": big / small}


def _measured(r, kind, **bar_params):
    """"" when the case ran with the sizes the bar names; else the sizes it did use (--quick),
    to go before the bar's figures."""
    params = r[kind].get("params", {})
    if all(params.get(k, v) == v for k, v in bar_params.items()):
        return ""
    return f"measured at {sizes(params)}, not the bar's size: "


def _each_way(r, kind, need):
    to, back = (figure(r, kind, "allcores", k) for k in ("to_gbs", "back_gbs"))
    if to is None or back is None:
        return None
    return min(to, back) >= need, (f"{_measured(r, kind, mib=64)}to a worker {to:.2f} GB/s, "
                                   f"back {back:.2f} GB/s")


def _vs_ppe(r, kind, need):
    x = [(figure(r, kind, "allcores", k), figure(r, kind, "ProcessPoolExecutor", k))
         for k in ("to_gbs", "back_gbs")]
    if any(v is None for pair in x for v in pair):
        return None
    (to, back) = (ours / theirs for ours, theirs in x)
    return min(to, back) >= need, (f"{_measured(r, kind, mib=64)}to a worker {to:.1f}x, "
                                   f"back {back:.1f}x (needs {need:g}x)")


for _kind, _what in (("bytes64", "64 MiB bytes"), ("numpy64", "64 MiB numpy array")):
    bar(f"{_what}: >= 5 GB/s each way", _kind)(
        lambda r, k=_kind: _each_way(r, k, 5))
    bar(f"{_what}: >= 10x ProcessPoolExecutor each way", _kind, "allcores",
        "ProcessPoolExecutor")(lambda r, k=_kind: _vs_ppe(r, k, 10))


@bar("shared array hand-off: 1 GiB within 2x of 1 MiB", "shared_array")
def _shared_constant(r):
    x = figure(r, "shared_array", "allcores", "big_over_small")
    if x is None:
        return None
    big, small = (figure(r, "shared_array", "allcores", k) for k in ("us", "small_us"))
    return x <= 2, (f"{_measured(r, 'shared_array', big_mib=1024, small_mib=1)}{x:.2f}x "
                    f"({big:.1f} vs {small:.1f} µs)")
