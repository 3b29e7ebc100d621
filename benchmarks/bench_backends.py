"""CPU-bound work and memory per worker on the pool's backends: backend='interpreter'
(subinterpreters with their own GIL, Python 3.12+) against backend='process', with
backend='thread' for contrast.

CPU: W tasks of ~0.2 s of pure Python (the seeds' loop, calibrated here to 0.2 s) through
pool.map(work, [n] * W, chunksize=1) on warm pools of W workers (every worker ran tasks first).
Each round times one serial call and each backend's map, in an order that rotates from round to
round; the figures are medians over rounds, efficiency = W x serial / wall, and "interp/process"
is the median of the per-round ratios of wall times.

Memory: for each backend a fresh child process measures USS (private memory: Private_Clean +
Private_Dirty) and RSS before the pool and after every worker ran a task; "per worker" is what
the pool adds to the machine divided by W: for interpreters the growth of the one process, for
processes the parent's growth plus the template's and the workers' USS.

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
        serial = []
        ratios = []
        for r in range(rounds):
            order = backends[r % len(backends):] + backends[:r % len(backends)]
            serial.append(_time(work, n))
            got = {}
            for b in order:
                got[b] = _time(pools[b].map, work, [n] * workers, 1)
                walls[b].append(got[b])
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
                              "walls": walls[b]}
    if ratios:
        out["interp_over_process"] = statistics.median(ratios)
        out["ratios"] = ratios
    return out


def _mem(pid):
    m = psutil.Process(pid).memory_full_info()
    return m.uss, m.rss


def memory_child(backend, workers):
    """Runs in a fresh process: what one pool of W warm workers adds to the machine."""
    import gc
    gc.collect()
    uss0, rss0 = _mem(os.getpid())
    pool = allcores.Pool(workers, backend=backend)
    pool.map(nap, [0.2] * workers, 1)   # every worker ran a task
    pool.map(work, [1000] * (8 * workers), 1)
    time.sleep(0.3)
    uss1, rss1 = _mem(os.getpid())
    res = {"parent_uss": uss1 - uss0, "parent_rss": rss1 - rss0, "workers": []}
    if backend == "process":
        for pid in pool.worker_pids():
            res["workers"].append(_mem(pid))
        template = psutil.Process(pool._engine._template_pid)
        res["template"] = _mem(template.pid)
    pool.terminate()
    pool.join()
    print(json.dumps(res))


def memory_case(workers, backends):
    out = {}
    for b in backends:
        if b == "thread":
            continue
        proc = subprocess.run([sys.executable, __file__, "--memory-child", b, "--workers",
                               str(workers)], capture_output=True, text=True, timeout=120)
        if proc.returncode:
            out[b] = {"error": proc.stderr.strip().splitlines()[-1:]}
            continue
        r = json.loads(proc.stdout)
        total_uss = r["parent_uss"] + sum(u for u, _ in r["workers"])
        if "template" in r:
            total_uss += r["template"][0]
        r["per_worker_uss"] = total_uss / workers
        if r["workers"]:
            r["worker_uss_each"] = [u for u, _ in r["workers"]]
            r["worker_rss_each"] = [s for _, s in r["workers"]]
        else:
            r["per_worker_rss"] = r["parent_rss"] / workers
        out[b] = r
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
        line = f"memory {b:12s} per worker: USS {r['per_worker_uss'] / mib:6.2f} MiB"
        if "worker_uss_each" in r:
            line += (f" (workers' own USS {[round(u / mib, 2) for u in r['worker_uss_each']]} MiB,"
                     f" template {r['template'][0] / mib:.2f}, parent +{r['parent_uss'] / mib:.2f})")
        else:
            line += f"; RSS {r['per_worker_rss'] / mib:6.2f} MiB (one process grows by W x this)"
        print(line)
    cpu = cpu_case(args.workers, args.rounds, backends)
    print(f"cpu: W={args.workers} tasks of {cpu['serial_s']:.3f} s (work({cpu['n']})), "
          f"{args.rounds} rounds")
    for b, r in cpu["backends"].items():
        print(f"  {b:12s} wall {r['wall_s']:.3f} s  efficiency {r['efficiency']:.2f}")
    if "interp_over_process" in cpu:
        print(f"  interpreter / process wall time: {cpu['interp_over_process']:.3f} "
              f"(rounds: {', '.join(f'{x:.3f}' for x in cpu['ratios'])})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": sys.version, "cores": os.cpu_count(), "memory": mem,
                       "cpu": cpu, "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
