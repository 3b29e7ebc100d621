"""Log analytics on every core: the case that starts "why do my threads use one core?".

Generates a web-server access log (combined format plus latency; --mb, a few hundred MB by
default), then computes status counts, top clients and p50/p95/p99 latency per endpoint four
ways: serially, with a ThreadPoolExecutor, with concurrent.futures.ProcessPoolExecutor and with
allcores.Pool. Each worker reads its own byte range of the file (no log data crosses processes)
and returns exact counts that are merged by addition, so all four results must be identical.

    python examples/log_analytics.py                  # 300 MB, one worker per core
    python examples/log_analytics.py --mb 20 --workers 2 --path /tmp/access.log
"""
import argparse
import concurrent.futures as cf
import os
import sys
import tempfile

import allcores

import loggen
import logstats
from _timing import Rows, compare, print_table, say_identical, speedup, timed
from logstats import Job, Stats


def run_serial(jobs: list[Job], workers: int) -> Stats:
    return logstats.merge(map(logstats.parse_range, jobs))


def run_threads(jobs: list[Job], workers: int) -> Stats:
    with cf.ThreadPoolExecutor(workers) as ex:
        return logstats.merge(ex.map(logstats.parse_range, jobs))


def run_process_pool_executor(jobs: list[Job], workers: int) -> Stats:
    with cf.ProcessPoolExecutor(workers) as ex:
        return logstats.merge(ex.map(logstats.parse_range, jobs))


def run_allcores(jobs: list[Job], workers: int) -> Stats:
    # chunksize=1: the jobs are already big (megabytes each); one per task balances the cores.
    with allcores.Pool(workers) as pool:
        return logstats.merge(pool.imap_unordered(logstats.parse_range, jobs, chunksize=1))


RUNS = [("serial", run_serial), ("threads", run_threads),
        ("ProcessPoolExecutor", run_process_pool_executor), ("allcores.Pool", run_allcores)]


def chunk_bytes(size: int, workers: int) -> int:
    """About 8 MB a chunk, but at least 4 chunks a worker so a slow chunk cannot leave a core
    idle at the end; never under 64 KiB (tiny files)."""
    return max(64 * 1024, min(8 << 20, size // (workers * 4) + 1))


def analyze(path: str, workers: int) -> tuple[Rows, Stats, bool]:
    """Run every method; return (rows of wall times, the serial stats, whether all are equal)."""
    jobs = logstats.byte_ranges(path, chunk_bytes(os.path.getsize(path), workers))
    print(f"{len(jobs)} byte-range chunks, {workers} workers")
    return compare(RUNS, jobs, workers)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--mb", type=float, default=300.0, help="log size in MB (default 300)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(),
                    help="threads or processes per pool (default: the CPU count)")
    ap.add_argument("--path", help="write the log here and keep it (default: a temporary file)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary log file")
    ap.add_argument("--seed", type=int, default=1, help="same seed, same log")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.path:
        path = args.path
    else:
        fd, path = tempfile.mkstemp(prefix="allcores-access-", suffix=".log")
        os.close(fd)
    try:
        (size, count), secs = timed(loggen.write_log, path, args.mb, args.seed)
        print(f"generated {count:,} lines, {size / 1e6:.1f} MB in {secs:.1f}s: {path}")
        rows, stats, same = analyze(path, args.workers)
    finally:
        if not (args.path or args.keep):
            os.unlink(path)
    print("\n".join(logstats.report(stats)))
    print_table(rows, title="\nwall time (pool start-up included), speedup against serial:")
    say_identical(same, f" ({len(rows)} runs compared exactly)")
    print("-> " + conclusion(rows, args.workers))
    return 0 if same else 1


#: A speedup at least this large counts as a gain; below it, timing noise could explain it.
GAIN = 1.2


def conclusion(rows: Rows, workers: int) -> str:
    """The last line, from the measured speedups: what threads and processes did on this run."""
    threads = speedup(rows, "threads")
    pools = {name: speedup(rows, name) for name in ("ProcessPoolExecutor", "allcores.Pool")}
    both = ", ".join(f"{name} {x:.2f}x" for name, x in pools.items())
    workers_text = f"{workers} worker{'s' if workers != 1 else ''}"
    if threads < GAIN:
        text = f"parsing is pure Python, so threads share one GIL ({threads:.2f}x)"
    else:
        text = f"threads gained {threads:.2f}x, though parsing is pure Python under one GIL"
    if max(pools.values()) >= GAIN:
        return text + f"; processes use the cores: {both} with {workers_text}"
    if workers < 2:
        return text + f"; with {workers_text} processes have no core to add ({both})"
    return (text + f"; processes did not beat serial on this run ({both} with {workers_text}): "
            f"they need free cores and a log big enough that parsing outweighs starting the "
            f"pool (serial took {rows[0][1]:.2f} s; try a bigger --mb)")


if __name__ == "__main__":
    sys.exit(main())
