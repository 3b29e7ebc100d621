"""The pool cases: round trip, tiny tasks one by one and batched, CPU-bound efficiency
against W independent processes, start-up to first result, private memory per worker.

Each function runs in a fresh child process for one library (see child.py) and returns its
figures; every row warms its pool up before it measures."""
from __future__ import annotations

import os
import statistics
import time

from .adapters import ADAPTERS, ORDER, open_adapter
from .case import Skip, case
from .workloads import inc, pid_after, work

ALL = ORDER
WITH_SUBMIT = [lib for lib in ORDER if lib != "joblib"]  # joblib has no submit()


def _verb(adapter, name):
    verb = getattr(adapter, name)
    if verb is None:
        raise Skip(f"{type(adapter).label} has no such call")
    return verb


def _check(out, n):
    if len(out) != n or out[0] != 1 or out[-1] != n:
        raise AssertionError(f"wrong results: {len(out)} of {n}")


def _per_task(adapter, verb_name, p):
    """µs per inc() task through one verb. The warm-up doubles as a probe of the cost, so a
    library far slower than the rest runs fewer tasks (at most cap_s seconds) instead of
    stalling the bench; the row reports the n it ran."""
    verb = _verb(adapter, verb_name)
    probe = min(p["n"], p["warm"])
    t0 = time.perf_counter()
    _check(verb(inc, range(probe)), probe)
    per_task = (time.perf_counter() - t0) / probe
    n = p["n"] if per_task * p["n"] <= p["cap_s"] else max(probe, int(p["cap_s"] / per_task))
    t0 = time.perf_counter()
    out = verb(inc, range(n))
    dt = time.perf_counter() - t0
    _check(out, n)
    return {"us": dt / n * 1e6, "n": n}


@case("rtt", "one tiny task's round trip: submit(f).result() / apply(f)", figure="us",
      unit="µs, median", lower_is_better=True, libs=ALL,
      params={"n": 2000, "warm": 200, "cap_s": 3.0}, quick={"n": 300, "warm": 50, "cap_s": 0.5},
      columns=[("p99_us", "p99 µs", "{:,.1f}")])
def round_trip(lib, workers, p):
    a = open_adapter(lib, workers)
    try:
        t0 = time.perf_counter()
        for i in range(p["warm"]):
            a.one(inc, i)
        mean = (time.perf_counter() - t0) / p["warm"]
        n = max(100, min(p["n"], int(p["cap_s"] / mean)))
        ts = []
        for i in range(n):
            t0 = time.perf_counter_ns()
            if a.one(inc, i) != i + 1:
                raise AssertionError("wrong result")
            ts.append(time.perf_counter_ns() - t0)
        ts.sort()
        return {"us": statistics.median(ts) / 1e3, "p99_us": ts[int(len(ts) * 0.99)] / 1e3,
                "min_us": ts[0] / 1e3, "n": n}
    finally:
        a.close()


@case("submit", "tiny tasks one by one: 20,000 submit(), then result()", figure="us",
      unit="µs/task", lower_is_better=True, libs=WITH_SUBMIT,
      params={"n": 20000, "warm": 2000, "cap_s": 20.0},
      quick={"n": 2000, "warm": 500, "cap_s": 2.0},
      columns=[("n", "tasks", "{:,.0f}")])
def submit_then_result(lib, workers, p):
    a = open_adapter(lib, workers)
    try:
        return _per_task(a, "submit_all", p)
    finally:
        a.close()


@case("imap1", "tiny tasks one by one: imap(chunksize=1) (Executor.map(chunksize=1))",
      figure="us", unit="µs/task", lower_is_better=True, libs=ALL,
      params={"n": 20000, "warm": 2000, "cap_s": 3.0}, quick={"n": 2000, "warm": 500, "cap_s": 0.5},
      columns=[("n", "tasks", "{:,.0f}")])
def imap_chunksize_1(lib, workers, p):
    a = open_adapter(lib, workers)
    try:
        return _per_task(a, "imap1", p)
    finally:
        a.close()


@case("map", "tiny tasks batched: map() with automatic chunks (allcores) or the default",
      figure="us", unit="µs/task", lower_is_better=True, libs=ALL,
      params={"n": 200000, "warm": 2000, "cap_s": 3.0},
      quick={"n": 20000, "warm": 2000, "cap_s": 0.5}, columns=[("n", "tasks", "{:,.0f}")])
def map_auto(lib, workers, p):
    a = open_adapter(lib, workers)
    try:
        return _per_task(a, "map", p)
    finally:
        a.close()


class _Ideal:
    """W processes forked before any pool exists, each running work(n) when its pipe says go:
    the most W processes can do on this machine, with no pool in between."""

    def __init__(self, workers, n):
        self.workers, self.pids, self.go = workers, [], []
        self.done, done_w = os.pipe()
        for _ in range(workers):
            go_r, go_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    while os.read(go_r, 1) == b"g":
                        work(n)
                        os.write(done_w, b"d")
                finally:
                    os._exit(0)
            os.close(go_r)
            self.pids.append(pid)
            self.go.append(go_w)
        os.close(done_w)

    def run(self):
        t0 = time.perf_counter()
        for fd in self.go:
            os.write(fd, b"g")
        left = self.workers
        while left:
            left -= len(os.read(self.done, left))
        return time.perf_counter() - t0

    def close(self):
        # A quit byte, not end of file: a pool's processes forked meanwhile hold copies of
        # the write ends.
        for fd in self.go:
            os.write(fd, b"q")
            os.close(fd)
        for pid in self.pids:
            os.waitpid(pid, 0)
        os.close(self.done)


def paired_rounds(steps, rounds):
    """Times every step ({name: fn returning seconds}) once per round, in an order rotated from
    round to round, after a warm-up round that is not kept (a library's workers, the ideal
    processes and the parent are all past their first call); returns a dict of seconds per
    round. The steps of a round meet the same machine: a ratio within a round cancels the drift
    of a shared VM, which swings single timings by tens of percent."""
    names = list(steps)
    for name in names:
        steps[name]()
    out = []
    for r in range(rounds):
        k = r % len(names)
        out.append({name: steps[name]() for name in names[k:] + names[:k]})
    return out


def median_round(rounds, key):
    """The round whose key(round) is the median (the lower middle one of an even count), so
    that every figure reported from it comes from the same paired timings."""
    return sorted(rounds, key=key)[(len(rounds) - 1) // 2]


@case("cpu", "CPU-bound: W tasks of ~0.2 s pure Python, efficiency = speedup / W",
      figure="efficiency", unit="efficiency", lower_is_better=False, libs=ALL,
      params={"rounds": 9, "task_s": 0.2}, quick={"rounds": 3, "task_s": 0.05}, reps=1,
      columns=[("wall_s", "wall s", "{:.3f}"), ("speedup", "speedup", "{:.2f}x"),
               ("ideal_speedup", "ideal, same round", "{:.2f}x"),
               ("vs_ideal", "of ideal", "{:.1%}")])
def cpu_bound(lib, workers, p):
    """Each round times, in rotating order, one serial call, the ideal row (W calls in W
    processes started in advance) and the library's map of W calls. Every figure of the row
    comes from one round, the one whose ratio ideal / library is the median: its speedup, the
    ideal's speedup in the same round and their ratio ("of ideal") agree, which medians taken
    apart (and over repetitions) did not. One repetition: the pairing is within the rounds."""
    n = p["work_n"]
    ideal = _Ideal(workers, n)
    a = None
    try:
        a = open_adapter(lib, workers)
        expected = work(n)
        if a.map(work, [n // 10] * workers) != [work(n // 10)] * workers:
            raise AssertionError("wrong results")

        def serial():
            t0 = time.perf_counter()
            work(n)
            return time.perf_counter() - t0

        def pool():
            t0 = time.perf_counter()
            out = a.map(work, [n] * workers)
            dt = time.perf_counter() - t0
            if list(out) != [expected] * workers:
                raise AssertionError("wrong results")
            return dt

        rounds = paired_rounds({"serial": serial, "ideal": ideal.run, "pool": pool},
                               p["rounds"])
        m = median_round(rounds, lambda r: r["ideal"] / r["pool"])
        one, wall, ideal_s = m["serial"], m["pool"], m["ideal"]
        return {"wall_s": wall, "speedup": workers * one / wall, "efficiency": one / wall,
                "ideal_speedup": workers * one / ideal_s, "vs_ideal": ideal_s / wall,
                "also": {"serial": {"wall_s": workers * one, "speedup": 1.0,
                                    "efficiency": 1 / workers},
                         "ideal": {"wall_s": ideal_s, "speedup": workers * one / ideal_s,
                                   "efficiency": one / ideal_s, "vs_ideal": 1.0}}}
    finally:
        if a is not None:
            a.close()
        ideal.close()


@case("startup", "start-up to first result: pool creation + one task (library imported)",
      figure="ms", unit="ms", lower_is_better=True, libs=ALL,
      params={"rounds": 3}, quick={"rounds": 2},
      columns=[("again_ms", "next pools ms", "{:.1f}")])
def startup(lib, workers, p):
    """`ms` is the first pool of a fresh process, what a script pays; `again_ms` the median of
    the pools made after it in the same process."""
    ADAPTERS[lib].prepare()
    times = []
    for _ in range(p["rounds"]):
        t0 = time.perf_counter()
        a = ADAPTERS[lib](workers)
        try:
            if a.one(inc, 1) != 2:
                raise AssertionError("wrong result")
            times.append(time.perf_counter() - t0)
        finally:
            a.close()
    out = {"ms": times[0] * 1e3}
    if len(times) > 1:
        out["again_ms"] = statistics.median(times[1:]) * 1e3
    return out


def private_mib(pid):
    """USS (Private_Clean + Private_Dirty) and PSS of a process, in MiB."""
    try:
        fields = {}
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1])
        return ((fields["Private_Clean"] + fields["Private_Dirty"]) / 1024,
                fields["Pss"] / 1024)
    except (OSError, KeyError):
        import psutil
        info = psutil.Process(pid).memory_full_info()
        return info.uss / (1 << 20), info.pss / (1 << 20)


def _descendants():
    try:
        import psutil
    except ImportError:
        return []
    return [c.pid for c in psutil.Process().children(recursive=True)]


@case("memory", "private memory per worker (USS: Private_Clean + Private_Dirty)",
      figure="mib", unit="MiB/worker", lower_is_better=True, libs=ALL,
      params={"tasks": 10000}, quick={"tasks": 2000},
      columns=[("pss_mib", "PSS MiB", "{:.1f}"), ("others_mib", "other processes MiB", "{:.1f}")])
def memory(lib, workers, p):
    """After every worker has run tasks (sleeps that spread over all of them, then tiny ones),
    the mean USS of the workers; `others_mib` is the USS of the pool's other processes (a
    template, a resource tracker), all together."""
    a = open_adapter(lib, workers)
    try:
        spread = a.imap1 or a.submit_all or a.map
        pids = set()
        for _ in range(50):
            pids.update(spread(pid_after, [0.01] * (2 * workers)))
            if len(pids) >= workers:
                break
        _check(a.map(inc, range(p["tasks"])), p["tasks"])
        time.sleep(0.2)
        mine = [private_mib(pid) for pid in sorted(pids)]
        others = []
        for pid in _descendants():
            if pid not in pids:
                try:
                    others.append(private_mib(pid)[0])
                except Exception:  # exited meanwhile, or a zombie
                    pass
        return {"mib": statistics.fmean(m[0] for m in mine),
                "pss_mib": statistics.fmean(m[1] for m in mine),
                "workers": len(mine), "others_mib": sum(others), "others": len(others)}
    finally:
        a.close()
