"""allcores demo: the seeds' claims, measured on this machine.

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
          f"{workers} workers on {os.cpu_count()} cores")
    rows = [_measure("serial", lambda: [spin(t) for t in tasks])]
    with cf.ThreadPoolExecutor(workers) as ex:
        rows.append(_measure(f"{workers} threads", lambda: list(ex.map(spin, tasks))))
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
    service would: one thread per connection, so requests overlap on its side too."""

    def __init__(self, delay):
        self.delay = delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            request = conn.recv(64)
            time.sleep(self.delay)
            conn.sendall(b"reply to " + request)

    def close(self):
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
        rows.append(_measure(f"sleep, {n} threads", lambda: list(ex.map(sleepy, tasks))))
    server = _SlowServer(0.1)
    try:
        addresses = [server.address] * n
        rows.append(_measure("sockets, serial", lambda: [fetch(a) for a in addresses]))
        with cf.ThreadPoolExecutor(n) as ex:
            rows.append(_measure(f"sockets, {n} threads", lambda: list(ex.map(fetch, addresses))))
    finally:
        server.close()
    _table(rows, rows[0].wall)
    print(f"  -> threads overlap waiting (sleep {rows[0].wall / rows[1].wall:.1f}x, sockets "
          f"{rows[2].wall / rows[3].wall:.1f}x, using {rows[3].cpu / rows[3].wall:.2f} cores): a "
          f"thread releases the GIL while it sleeps or waits on I/O, so threads are the right "
          f"tool here.")


def c_releases_gil(workers: int):
    data = os.urandom(32 << 20)
    print(f"\n3. C code that releases the GIL: sha256 of {workers * 4} buffers of 32 MiB")
    tasks = [data] * (workers * 4)
    rows = [_measure("serial", lambda: [digest(d) for d in tasks])]
    with cf.ThreadPoolExecutor(workers) as ex:
        rows.append(_measure(f"{workers} threads", lambda: list(ex.map(digest, tasks))))
    _table(rows, rows[0].wall)
    used = rows[1].cpu / rows[1].wall
    if used >= 1.3:
        print(f"  -> hashlib releases the GIL on big buffers: {workers} threads use {used:.2f} "
              f"cores without any process.")
    else:
        print(f"  -> hashlib releases the GIL on big buffers, so threads may use several cores, "
              f"but they got only {used:.2f} here: other work held the cores (load average "
              f"{os.getloadavg()[0]:.1f}).")


def switch_interval():
    print("\n4. sys.setswitchinterval: how often a CPU-bound thread must hand the GIL over")
    n = _calibrate(0.15)
    saved = sys.getswitchinterval()
    try:
        used = []
        for interval in (0.005, 0.0005):
            sys.setswitchinterval(interval)
            threads = [threading.Thread(target=spin, args=(n,)) for _ in range(2)]

            def run():
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            row = _measure(f"interval {interval * 1e3:.1f} ms", run)
            used.append(row.cpu / row.wall)
            print(f"  interval {interval * 1e3:4.1f} ms: 2 threads took {row.wall:.2f} s on "
                  f"{used[-1]:.2f} cores (up to {int(row.wall / interval)} hand-offs)")
    finally:
        sys.setswitchinterval(saved)
    print(f"  -> a 10x shorter interval means up to 10x more hand-offs, not more cores "
          f"({used[0]:.2f} then {used[1]:.2f}): only one thread holds the GIL at a time.")


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


def gil_timeline():
    try:
        from allcores import gil
        meter = gil.meter
    except (ImportError, AttributeError):
        print("\n6. GIL timeline: the GIL meter is not built in this installation")
        return
    print("\n6. Who holds the GIL: two CPU-bound threads under the GIL meter")
    n = _calibrate(0.3)
    with meter() as m:
        ts = [threading.Thread(target=spin, args=(n,), name=f"spinner-{i}") for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    report = m.report()
    print(f"  GIL held {report.held:.0%}, {report.switches} switches, "
          f"{report.cores_used:.2f} cores used")
    print(f"  -> {report.verdict}")
    path = os.path.abspath("allcores-demo-gil.html")
    try:
        report.to_html(path)
        print(f"  timeline written to {path}")
    except Exception as exc:  # the report is a bonus, never a failure of the demo
        print(f"  (timeline not written: {exc})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="allcores demo", description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--task-seconds", type=float, default=0.25)
    ap.add_argument("--quick", action="store_true", help="smaller runs (for tests)")
    args = ap.parse_args(argv)
    if args.quick:
        args.task_seconds = 0.05
    t0 = time.perf_counter()
    print(f"allcores {allcores.__version__} on Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores")
    cpu_bound(args.workers, args.task_seconds)
    io_bound(args.workers)
    if not args.quick:
        c_releases_gil(args.workers)
        switch_interval()
    counter_race()
    if not args.quick:
        gil_timeline()
    print(f"\ndemo took {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
