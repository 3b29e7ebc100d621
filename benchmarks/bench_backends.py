"""CPU-bound work and memory per worker on the pool's backends: backend='interpreter'
(subinterpreters with their own GIL, Python 3.12+) against backend='process', with
backend='thread' for contrast.

CPU: W tasks of ~0.2 s of pure Python (the seeds' loop, calibrated here to 0.2 s) through
pool.map(work, [n] * W, chunksize=1) on warm pools of W workers (every worker ran tasks first).
Each round times one serial call and each backend's map, in an order that rotates from round to
round; the figures are medians over rounds, efficiency = W x serial / wall, and "interp/process"
is the median of the per-round ratios of wall times. Each task also reports the CPU time its
thread spent: on a machine other jobs keep busy the wall times scatter, CPU times much less.

Memory: a fresh child process measures USS (private memory: Private_Clean + Private_Dirty) and
RSS before a pool and after every worker ran a task; what the pool adds to the machine is the
parent's growth plus the template's and the workers' own (processes), or the growth of the one
process (interpreters). "Per worker" is how much that total grows from W to 2W workers, per
added worker (fixed costs cancel out), median of 3 pairs of runs.

    python benchmarks/bench_backends.py [--workers W] [--rounds R] [--json FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import psutil

import allcores

BACKENDS = ["process", "interpreter", "thread"]
TARGET_S = 0.2


def work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def timed_work(n):
    """work(n), returning the CPU time this thread spent on it and the wall time it took: on a
    busy machine the wall time of a task varies with the load, its CPU time does not."""
    c0, t0 = time.thread_time(), time.perf_counter()
    work(n)
    return time.thread_time() - c0, time.perf_counter() - t0


def nap(secs):
    time.sleep(secs)
    return os.getpid()


def calibrate():
    n = 200_000
    while True:
        t = _time(work, n)
        if t > 0.05:
            return int(n * TARGET_S / t)
        n *= 2


def _time(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def cpu_case(workers, rounds, backends):
    n = min(calibrate() for _ in range(3))
    pools = {b: allcores.Pool(workers, backend=b) for b in backends}
    try:
        for pool in pools.values():  # warm: every worker ran tasks
            pool.map(nap, [0.05] * (2 * workers), 1)
            pool.map(work, [n // 20] * (4 * workers), 1)
        walls = {b: [] for b in backends}
        cpus = {b: [] for b in backends}
        serial = []
        ratios = []
        for r in range(rounds):
            order = backends[r % len(backends):] + backends[:r % len(backends)]
            serial.append(_time(work, n))
            got = {}
            for b in order:
                t0 = time.perf_counter()
                per_task = pools[b].map(timed_work, [n] * workers, 1)
                got[b] = time.perf_counter() - t0
                walls[b].append(got[b])
                cpus[b].extend(cpu for cpu, _ in per_task)
            if "interpreter" in got and "process" in got:
                ratios.append(got["interpreter"] / got["process"])
    finally:
        for pool in pools.values():
            pool.terminate()
            pool.join()
    t1 = statistics.median(serial)
    out = {"n": n, "serial_s": t1, "workers": workers, "rounds": rounds, "backends": {}}
    for b in backends:
        wall = statistics.median(walls[b])
        out["backends"][b] = {"wall_s": wall, "efficiency": workers * t1 / wall,
                              "task_cpu_s": statistics.median(cpus[b]), "walls": walls[b]}
    if ratios:
        out["interp_over_process"] = statistics.median(ratios)
        out["ratios"] = ratios
    return out


def _mem(pid):
    m = psutil.Process(pid).memory_full_info()
    return m.uss, m.rss


def memory_child(backend, workers):
    """Runs in a fresh process: USS and RSS of the pool's processes with W warm workers."""
    import gc
    gc.collect()
    uss0, rss0 = _mem(os.getpid())
    pool = allcores.Pool(workers, backend=backend)
    pool.map(nap, [0.2] * workers, 1)   # every worker ran a task
    pool.map(work, [1000] * (8 * workers), 1)
    time.sleep(0.3)
    gc.collect()
    uss1, rss1 = _mem(os.getpid())
    res = {"parent_uss": uss1 - uss0, "parent_rss": rss1 - rss0, "workers": [], "template": None}
    if backend == "process":
        res["workers"] = [_mem(pid) for pid in pool.worker_pids()]
        res["template"] = _mem(pool._engine._template_pid)
    pool.terminate()
    pool.join()
    print(json.dumps(res))


def _memory_run(backend, workers):
    proc = subprocess.run([sys.executable, __file__, "--memory-child", backend, "--workers",
                           str(workers)], capture_output=True, text=True, timeout=120)
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1:])
    r = json.loads(proc.stdout)
    # What the pool adds to the machine: the parent's growth and every process of the pool.
    r["total_uss"] = r["parent_uss"] + sum(u for u, _ in r["workers"]) + \
        (r["template"][0] if r["template"] else 0)
    r["total_rss"] = r["parent_rss"] + sum(s for _, s in r["workers"]) + \
        (r["template"][1] if r["template"] else 0)
    return r


def memory_case(workers, backends, repeats=3):
    """Per worker: the growth of the pool's total from W to 2W workers, divided by W (fixed costs
    such as the collector thread, the region's touched pages and the template cancel out);
    median of `repeats` pairs of fresh processes."""
    out = {}
    for b in backends:
        if b == "thread":
            continue
        slopes_uss, slopes_rss, runs = [], [], []
        try:
            for _ in range(repeats):
                small, big = _memory_run(b, workers), _memory_run(b, 2 * workers)
                slopes_uss.append((big["total_uss"] - small["total_uss"]) / workers)
                slopes_rss.append((big["total_rss"] - small["total_rss"]) / workers)
                runs.append((small, big))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            out[b] = {"error": str(exc)}
            continue
        out[b] = {"per_worker_uss": statistics.median(slopes_uss),
                  "per_worker_rss": statistics.median(slopes_rss),
                  "slopes_uss": slopes_uss, "runs": runs}
        if b == "process":
            out[b]["worker_uss_each"] = [u for s, bg in runs for u, _ in s["workers"]]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json")
    ap.add_argument("--memory-child")
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args.workers)
    backends = [b for b in BACKENDS if b != "interpreter" or sys.version_info >= (3, 12)]
    mib = 1 << 20
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, W={args.workers}")
    mem = memory_case(args.workers, backends)
    for b, r in mem.items():
        if "error" in r:
            print(f"memory {b}: failed: {r['error']}")
            continue
        line = (f"memory {b:12s} per worker: USS {r['per_worker_uss'] / mib:6.2f} MiB, "
                f"RSS {r['per_worker_rss'] / mib:6.2f} MiB "
                f"(USS slopes {', '.join(f'{x / mib:.2f}' for x in r['slopes_uss'])})")
        if "worker_uss_each" in r:
            each = sorted(u / mib for u in r["worker_uss_each"])
            line += f"; a worker process's own USS {each[0]:.2f}-{each[-1]:.2f} MiB"
        print(line)
    cpu = cpu_case(args.workers, args.rounds, backends)
    print(f"cpu: W={args.workers} tasks of {cpu['serial_s']:.3f} s (work({cpu['n']})), "
          f"{args.rounds} rounds")
    for b, r in cpu["backends"].items():
        print(f"  {b:12s} wall {r['wall_s']:.3f} s  efficiency {r['efficiency']:.2f}  "
              f"CPU per task {r['task_cpu_s']:.3f} s")
    if "interp_over_process" in cpu:
        b = cpu["backends"]
        print(f"  interpreter / process CPU time per task: "
              f"{b['interpreter']['task_cpu_s'] / b['process']['task_cpu_s']:.3f}")
        print(f"  interpreter / process wall time: {cpu['interp_over_process']:.3f} "
              f"(rounds: {', '.join(f'{x:.3f}' for x in cpu['ratios'])})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": sys.version, "cores": os.cpu_count(), "memory": mem,
                       "cpu": cpu, "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
