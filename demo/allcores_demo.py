"""allcores demo: threads, processes and allcores on CPU-bound and waiting work, measured on
this machine.

Each step runs real work, prints wall time, speedup and cores used, and one line, computed from
those numbers, saying what they show. Cores used is CPU seconds over wall seconds: this process's
own (os.times(), every thread) plus each pool worker's, read from /proc/PID/stat while the worker
lives. getrusage(RUSAGE_CHILDREN) would miss them: it counts only children already waited for,
and allcores' workers are children of its template process, not of this one.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import multiprocessing
import os
import socket
import sys
import threading
import time

import allcores


def spin(n: int) -> int:
    """CPU-bound pure Python: the kind of work the GIL serializes."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cpu_seconds(pids) -> float:
    """CPU time of this process (every thread) and of the given ones, in seconds. The scheduler's
    nanosecond count (/proc/PID/schedstat) where the kernel keeps it: the clock-tick counts of
    /proc/PID/stat are 10 ms coarse, too coarse for the quick demo's 0.05 s tasks."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                total += int(f.read().split()[0]) / 1e9
            continue
        except (OSError, IndexError, ValueError):
            pass
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _runq_seconds():
    """Seconds this process's threads (those alive now) have spent runnable but without a CPU:
    the second field of /proc/self/task/TID/schedstat. None where the kernel does not keep it."""
    total, seen = 0, False
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
            seen = True
        except (OSError, IndexError, ValueError):
            pass  # the thread ended meanwhile
    return total / 1e9 if seen else None


def _n(count, word):
    """"1 thread", "2 threads"."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class Row:
    def __init__(self, name, wall, cpu):
        self.name, self.wall, self.cpu = name, wall, cpu


def _measure(name, run, pids=()):
    pids = list(pids)
    c0, t0 = _cpu_seconds(pids), time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    return Row(name, wall, _cpu_seconds(pids) - c0)


def _calibrate(target_s: float) -> int:
    n = 20000
    while True:
        t0 = time.perf_counter()
        spin(n)
        dt = time.perf_counter() - t0
        if dt > 0.02:
            return max(1000, int(n * target_s / dt))
        n *= 2


def _table(rows, base):
    print(f"  {'':34s} {'wall':>8s} {'speedup':>8s} {'cores used':>11s}")
    for r in rows:
        print(f"  {r.name:34s} {r.wall:7.2f}s {base / r.wall:7.2f}x {r.cpu / r.wall:10.2f}")


def cpu_bound(workers: int, task_s: float):
    n = _calibrate(task_s)
    tasks = [n] * (2 * workers)
    print(f"\n1. CPU-bound pure Python: {len(tasks)} calls of spin() ~{task_s:.2f} s each, "
          f"{_n(workers, 'worker')} on {os.cpu_count()} cores")
    rows = [_measure("serial", lambda: [spin(t) for t in tasks])]
    with cf.ThreadPoolExecutor(workers) as ex:
        rows.append(_measure(_n(workers, "thread"), lambda: list(ex.map(spin, tasks))))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as mp_pool:
        mp_pool.map(spin, [10] * workers)
        rows.append(_measure("multiprocessing.Pool", lambda: mp_pool.map(spin, tasks),
                             [p.pid for p in mp_pool._pool]))
    with allcores.Pool(workers) as pool:
        pool.map(spin, [10] * workers)
        rows.append(_measure("allcores.Pool", lambda: pool.map(spin, tasks),
                             pool.worker_pids()))
    _table(rows, rows[0].wall)
    print("  -> " + cpu_verdict(rows, workers))
    return rows


def cpu_verdict(rows, workers):
    """The line under the CPU-bound table, from its numbers: serial, threads, then pools."""
    serial, threads, pools = rows[0], rows[1], rows[2:]
    cores = min(workers, os.cpu_count() or 1)
    best = max(pools, key=lambda r: serial.wall / r.wall)
    text = (f"threads: {serial.wall / threads.wall:.2f}x on {threads.cpu / threads.wall:.2f} "
            f"cores — the GIL lets one thread run Python at a time; processes: "
            + ", ".join(f"{r.name} {serial.wall / r.wall:.2f}x on {r.cpu / r.wall:.2f}"
                        for r in pools)
            + f" of {cores} cores — each process has its own GIL.")
    speedup, used = serial.wall / best.wall, best.cpu / best.wall
    if speedup < 0.85 * used:
        text += (f" The speedup ({speedup:.2f}x) is below the cores used ({used:.2f}): each busy "
                 f"core ran this code slower than one core did alone (other load on the machine, "
                 f"or cores that share hardware).")
    return text


class _SlowServer:
    """A TCP server on 127.0.0.1 that answers each request after `delay` seconds, as a remote
    service would: one thread per connection, so requests overlap on its side too. close() ends
    every thread it started, so that none outlives the step (a later step's GIL timeline would
    show it as a lane of its own)."""

    def __init__(self, delay):
        self.delay = delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self._closing = False
        self._answers = []
        self._thread = threading.Thread(target=self._serve, name="demo-server", daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self._closing:  # close()'s wake-up connection
                conn.close()
                return
            t = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._answers.append(t)
            t.start()

    def _answer(self, conn):
        with conn:
            request = conn.recv(64)
            time.sleep(self.delay)
            conn.sendall(b"reply to " + request)

    def close(self):
        # Closing the listening socket does not wake a thread blocked in accept() on Linux: a
        # connection of our own does, and the thread sees _closing and returns.
        self._closing = True
        try:
            socket.create_connection(self.address, timeout=5).close()
        except OSError:
            pass  # the thread is gone already (accept() failed)
        self._thread.join(timeout=5)
        for t in self._answers:
            t.join(timeout=5)
        self.sock.close()


def fetch(address) -> bytes:
    with socket.create_connection(address) as conn:
        conn.sendall(b"GET")
        return conn.recv(64)


def io_bound(workers: int):
    n = 4 * workers
    print(f"\n2. I/O-bound: {n} calls of time.sleep(0.1), then {n} requests to a server on "
          f"127.0.0.1 that answers after 0.1 s")
    tasks = [0.1] * n
    rows = [_measure("sleep, serial", lambda: [sleepy(t) for t in tasks])]
    with cf.ThreadPoolExecutor(n) as ex:
        rows.append(_measure(f"sleep, {_n(n, 'thread')}", lambda: list(ex.map(sleepy, tasks))))
    server = _SlowServer(0.1)
    try:
        addresses = [server.address] * n
        rows.append(_measure("sockets, serial", lambda: [fetch(a) for a in addresses]))
        with cf.ThreadPoolExecutor(n) as ex:
            rows.append(_measure(f"sockets, {_n(n, 'thread')}",
                                 lambda: list(ex.map(fetch, addresses))))
    finally:
        server.close()
    _table(rows, rows[0].wall)
    print(f"  -> threads overlap waiting (sleep {rows[0].wall / rows[1].wall:.1f}x, sockets "
          f"{rows[2].wall / rows[3].wall:.1f}x, using {rows[3].cpu / rows[3].wall:.2f} cores): a "
          f"thread releases the GIL while it sleeps or waits on I/O, so threads are the right "
          f"tool here.")


#: Threads that spent at least this share of their runnable time without a CPU were held back
#: by other work (the doctor's cpu-starved finding uses the same 20%).
STARVED_SHARE = 0.2


def c_releases_gil(workers: int):
    data = os.urandom(32 << 20)
    print(f"\n3. C code that releases the GIL: sha256 of {workers * 4} buffers of 32 MiB")
    tasks = [data] * (workers * 4)
    rows = [_measure("serial", lambda: [digest(d) for d in tasks])]
    with cf.ThreadPoolExecutor(workers) as ex:
        list(ex.map(len, tasks[:workers]))  # the threads exist before the run-queue reading
        runq0 = _runq_seconds()
        rows.append(_measure(_n(workers, "thread"), lambda: list(ex.map(digest, tasks))))
        runq1 = _runq_seconds()
    _table(rows, rows[0].wall)
    starved = None if runq0 is None or runq1 is None else max(0.0, runq1 - runq0)
    print("  -> " + c_verdict(rows[1], workers, starved, os.getloadavg()[0]))


def c_verdict(threads, workers, starved, load):
    """The line under the hashlib table. Other work is blamed for a low core count only when the
    threads' measured run-queue time (`starved`, seconds runnable without a CPU) shows it."""
    used = threads.cpu / threads.wall
    who = f"{_n(workers, 'thread')} {'uses' if workers == 1 else 'use'}"
    if workers < 2:
        return (f"hashlib releases the GIL on big buffers, so threads can use several cores; "
                f"with one worker there is nothing to run beside it ({used:.2f} cores).")
    if used >= 1.3:
        return (f"hashlib releases the GIL on big buffers: {who} {used:.2f} cores without any "
                f"process.")
    text = (f"hashlib releases the GIL on big buffers, so threads can use several cores, but they "
            f"got only {used:.2f} here")
    if starved is None:
        return (text + f": this kernel does not report how long they waited for a CPU, so the "
                f"cause is not measured (load average {load:.1f}).")
    share = starved / max(starved + threads.cpu, 1e-9)
    waited = (f"{starved:.2f} s runnable without a CPU, {share:.0%} of the time they were "
              f"ready to run")
    if share >= STARVED_SHARE:
        return text + f": other work held the cores, the threads waited {waited}."
    return (text + f", and not for lack of a CPU ({waited}): the hashing itself did not overlap "
            f"on this machine.")


def _two_spinners(n, meter, timeline=False):
    """Two threads each run spin(n); returns (Row, the GIL meter's report or None)."""
    threads = [threading.Thread(target=spin, args=(n,), name=f"spinner-{i}") for i in range(2)]

    def run():
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if meter is None:
        return _measure("2 threads", run), None
    with meter(timeline=timeline) as m:
        row = _measure("2 threads", run)
    return row, m.report()


def _meter():
    """(allcores.gil.meter, None), or (None, why it cannot run here)."""
    try:
        from allcores.gil import meter
    except ImportError as exc:
        return None, f"the GIL meter is not built in this installation ({exc})"
    return meter, None


def switch_interval(thread_s: float = 0.15):
    print("\n4. sys.setswitchinterval: how often two CPU-bound threads hand the GIL over")
    meter, why = _meter()
    n = _calibrate(thread_s)
    saved = sys.getswitchinterval()
    runs = []
    try:
        for interval in (0.005, 0.0005):
            sys.setswitchinterval(interval)  # before the meter starts: it reads the interval
            row, report = _two_spinners(n, meter)
            switches = None if report is None else report.switches
            if report is not None and switches is None:
                why = "; ".join(report.notes) or "the GIL meter could not read the GIL here"
            runs.append((interval, row, switches, _starved_share(report)))
            counted = (f"{switches} switches, counted by the GIL meter" if switches is not None
                       else "switches not measured")
            print(f"  interval {interval * 1e3:4.1f} ms: 2 threads took {row.wall:.2f} s on "
                  f"{row.cpu / row.wall:.2f} cores, {counted}")
    finally:
        sys.setswitchinterval(saved)
    print("  -> " + switch_verdict(runs, why))
    return runs


def _starved_share(report):
    """The spinners' share of their runnable time spent without a CPU, from the meter's
    per-thread run-queue times; None without a report."""
    if report is None:
        return None
    spinners = [t for t in report.threads if t.name.startswith("spinner-")]
    waited = sum(t.runq_s for t in spinners)
    return waited / max(waited + sum(t.cpu_s for t in spinners), 1e-9) if spinners else None


def switch_verdict(runs, why=None):
    """The line under the switch-interval step, from (interval, Row, switches or None, starved
    share or None) at 5 ms and at 0.5 ms."""
    (i0, r0, s0, _), (i1, r1, s1, starved) = runs
    factor = round(i0 / i1)
    wall = f"wall time {r0.wall:.2f} -> {r1.wall:.2f} s ({(r1.wall / r0.wall - 1) * 100:+.0f}%)"
    cores = f"cores used {r0.cpu / r0.wall:.2f} -> {r1.cpu / r1.wall:.2f}"
    if s0 is None or s1 is None:
        return (f"switches were not counted ({why}); {wall}, {cores}: a shorter interval makes "
                f"the threads hand the GIL over more often, never run at once.")
    if s1 >= 1.5 * max(s0, 1):
        did = (f"a {factor}x shorter interval made {s1 / max(s0, 1):.1f}x more hand-offs "
               f"({s0} -> {s1})")
    else:
        did = (f"the {factor}x shorter interval did not multiply the hand-offs here "
               f"({s0} -> {s1}): a thread hands over only while the other one, on a CPU, asks "
               f"for the GIL")
        if starved is not None and starved >= STARVED_SHARE:
            did += (f", and other work kept the threads off the CPUs {starved:.0%} of the time "
                    f"they were ready to run")
    return (f"{did}; {wall}, {cores}: more hand-offs add no cores, only one thread holds the "
            f"GIL at a time.")


def counter_race():
    shared = getattr(allcores, "Counter", None)
    print("\n5. A counter shared by 2 processes, 200,000 increments each")
    ctx = multiprocessing.get_context("fork")
    raw = ctx.Value("q", 0, lock=False)
    locked = ctx.Value("q", 0)

    def bump_raw():
        for _ in range(200_000):
            raw.value += 1

    def bump_locked():
        for _ in range(200_000):
            with locked.get_lock():
                locked.value += 1

    for fn in (bump_raw, bump_locked):
        ps = [ctx.Process(target=fn) for _ in range(2)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
    print(f"  without a lock: {raw.value:,} (lost {400_000 - raw.value:,} updates: "
          f"read-modify-write races)")
    print(f"  with a lock:    {locked.value:,}")
    if shared is not None:
        c = shared(0)

        def bump_atomic():
            for _ in range(200_000):
                c.add(1)
        ps = [ctx.Process(target=bump_atomic) for _ in range(2)]
        t0 = time.perf_counter()
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        print(f"  allcores.Counter (lock-free): {c.value:,} in {time.perf_counter() - t0:.2f} s")
    if raw.value < 400_000:
        print("  -> += on shared memory is not atomic across processes: use a lock, or an "
              "atomic counter.")
    else:
        print("  -> no update was lost this time: the race needs both processes running at "
              "once, which a busy machine does not always give; += is still not atomic.")


def gil_timeline(thread_s: float = 0.3, html: str = "allcores-demo-gil.html"):
    meter, why = _meter()
    if meter is None:
        print(f"\n6. GIL timeline: not measured, {why}")
        return None
    print("\n6. Who holds the GIL: two CPU-bound threads under the GIL meter")
    _, report = _two_spinners(_calibrate(thread_s), meter, timeline=True)
    if report.switches is None:
        print(f"  GIL not read ({'; '.join(report.notes)}); {report.cores_used:.2f} cores used")
    else:
        print(f"  GIL held {report.held:.0%}, {report.switches} switches, "
              f"{report.cores_used:.2f} cores used")
    # The verdict's paragraphs (contention, then CPU starvation...) stay under the arrow.
    print("  -> " + "\n     ".join(p.replace("\n", " ") for p in report.verdict.split("\n\n")))
    path = os.path.abspath(html)
    try:
        report.to_html(path)
        print(f"  timeline written to {path}")
    except Exception as exc:  # the report is a bonus, never a failure of the demo
        print(f"  (timeline not written: {exc})")
    return report


#: The steps in the order they run, by the name --steps takes.
STEPS = ["cpu", "io", "c", "switch", "counter", "gil"]
#: What --quick leaves out (the longer steps; tests run them apart, with small sizes).
QUICK_SKIPS = ["c", "switch", "gil"]

DESCRIPTION = """allcores demo: threads, processes and allcores on CPU-bound and waiting work,
measured on this machine.

steps: 1 cpu (CPU-bound threads vs processes vs allcores), 2 io (threads overlapping sleeps and
sockets), 3 c (hashlib releasing the GIL), 4 switch (sys.setswitchinterval, switches counted by
the GIL meter), 5 counter (the counter race), 6 gil (the GIL timeline and its HTML report)."""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="allcores demo", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                    help="processes and threads per pool (default: the CPU count)")
    ap.add_argument("--task-seconds", type=float, default=0.25,
                    help="length of one CPU-bound task in step 1 (default 0.25; --quick: 0.05); "
                         "steps 4 and 6 scale with it")
    ap.add_argument("--quick", action="store_true",
                    help="0.05 s tasks, and skips steps 3 (c: hashlib), 4 (switch: "
                         "sys.setswitchinterval) and 6 (gil: the GIL timeline and its HTML "
                         "report); for tests")
    ap.add_argument("--steps", metavar="LIST",
                    help=f"comma-separated steps to run, of: {', '.join(STEPS)} (default: all; "
                         f"with --quick: {', '.join(s for s in STEPS if s not in QUICK_SKIPS)})")
    ap.add_argument("--html", metavar="F", default="allcores-demo-gil.html",
                    help="where step 6 writes the GIL timeline (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.quick:
        args.task_seconds = 0.05
    if args.steps:
        steps = [x for x in args.steps.split(",") if x]
        unknown = [x for x in steps if x not in STEPS]
        if unknown:
            ap.error(f"unknown step(s): {', '.join(unknown)}; known: {', '.join(STEPS)}")
    else:
        steps = [x for x in STEPS if not (args.quick and x in QUICK_SKIPS)]
    t0 = time.perf_counter()
    print(f"allcores {allcores.__version__} on Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores")
    run = {"cpu": lambda: cpu_bound(args.workers, args.task_seconds),
           "io": lambda: io_bound(args.workers),
           "c": lambda: c_releases_gil(args.workers),
           "switch": lambda: switch_interval(min(0.15, args.task_seconds)),
           "counter": counter_race,
           "gil": lambda: gil_timeline(min(0.3, 2 * args.task_seconds), args.html)}
    for step in STEPS:
        if step in steps:
            run[step]()
    print(f"\ndemo took {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
