"""What the GIL meter costs the program it measures (a bench case).

A CPU-bound pure-Python loop of fixed size runs alternately with and without the meter; the
result gives the median run time of each, the slowdown, and the sampler's own CPU as a share of
the metered run time (the steadier figure on a noisy machine).

    python -m allcores_bench.gil_cost [--seconds 0.5] [--repeats 7] [--interval US] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

from allcores.gil.meter import DEFAULT_INTERVAL_US, meter


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def _run(n: int, threads: int) -> None:
    if threads == 1:
        _spin(n)
        return
    ts = [threading.Thread(target=_spin, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def measure(seconds: float = 0.5, repeats: int = 7, interval_us: float | None = None,
            threads: int = 1) -> dict:
    """Runs the loop `repeats` times each way, alternating; returns medians and shares."""
    n = 200_000
    while True:  # size the work to about `seconds`
        t0 = time.perf_counter()
        _spin(n)
        dt = time.perf_counter() - t0
        if dt >= 0.05:
            n = int(n * seconds / dt)
            break
        n *= 4
    plain, metered, share = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _run(n, threads)
        plain.append(time.perf_counter() - t0)
        m = meter(interval_us, timeline=False)
        t0 = time.perf_counter()
        with m:
            _run(n, threads)
        metered.append(time.perf_counter() - t0)
        r = m.report()
        share.append(r.sampler_cost)
    p, q = statistics.median(plain), statistics.median(metered)
    return {"interval_us": interval_us or DEFAULT_INTERVAL_US, "budget": interval_us is None, "threads": threads, "repeats": repeats, "plain_s": p, "metered_s": q,
            "slowdown": q / p - 1, "sampler_cpu_share": statistics.median(share),
            "plain_all": plain, "metered_all": metered}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m allcores_bench.gil_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--interval", type=float, default=None,
                    help=f"microseconds (default {DEFAULT_INTERVAL_US}, stretched to the cost budget)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = measure(a.seconds, a.repeats, a.interval, a.threads)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"interval {r['interval_us']:g} us, {r['threads']} thread(s), {r['repeats']} runs each: "
              f"plain {r['plain_s']:.3f} s, metered {r['metered_s']:.3f} s, slowdown {r['slowdown'] * 100:+.1f}%, "
              f"sampler CPU {r['sampler_cpu_share'] * 100:.1f}% of the run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
