"""Processes, file descriptors and memory across many pools; parent death; fork safety."""
import gc
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

import allcores
from engine_tasks import log_something, square

pytestmark = pytest.mark.timeout(300)


def _fds():
    return len(os.listdir("/proc/self/fd"))


_CYCLES_SCRIPT = textwrap.dedent("""
    import gc, json, os, sys
    import psutil
    import allcores
    from engine_tasks import square

    def fds():
        return len(os.listdir("/proc/self/fd"))

    def maps():
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)

    me = psutil.Process()
    for _ in range(20):  # warm up the allocator and imports
        with allcores.Pool(1) as p:
            p.apply(square, (2,))
    gc.collect()
    before = fds(), maps(), me.memory_info().rss
    cycles = int(sys.argv[1])
    for i in range(cycles):
        if i % 2:
            with allcores.Pool(1) as p:
                assert p.apply(square, (i,)) == i * i
        else:
            p = allcores.Pool(1)
            assert p.apply(square, (i,)) == i * i
            p.close()
            p.join()
    del p
    gc.collect()
    after = fds(), maps(), me.memory_info().rss
    left = [c.pid for c in me.children(recursive=True)]
    print(json.dumps({"before": before, "after": after, "left": left}))
""")


def test_create_destroy_cycles_leak_nothing():
    """Pools created and destroyed repeatedly leave no process, fd or mapping behind, and the
    parent's memory stays flat. It runs in a fresh interpreter: the test process's own memory
    (gigabytes after the other tests) would make every fork slow and RSS noisy.
    ALLCORES_LEAK_CYCLES=10000 runs the full 10,000 cycles."""
    import json
    cycles = int(os.environ.get("ALLCORES_LEAK_CYCLES", "500"))
    out = subprocess.run([sys.executable, "-c", _CYCLES_SCRIPT, str(cycles)],
                         cwd=os.path.dirname(__file__), capture_output=True, text=True,
                         timeout=280)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    (fds0, maps0, rss0), (fds1, maps1, rss1) = got["before"], got["after"]
    assert got["left"] == []
    assert fds1 <= fds0 + 2
    assert maps1 <= maps0 + 10
    growth = rss1 - rss0
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over {cycles} pools"


def test_many_tasks_memory_flat():
    me = psutil.Process()
    with allcores.Pool(2) as pool:
        for _ in range(3):
            for f in [pool.submit(square, i) for i in range(10_000)]:
                f.result()
        gc.collect()
        rss0 = me.memory_info().rss
        fds0 = _fds()
        for _ in range(10):
            for f in [pool.submit(square, i) for i in range(10_000)]:
                f.result()
        gc.collect()
        assert _fds() == fds0
        assert me.memory_info().rss - rss0 < 10 * 2**20
        stats = pool._engine.region.stats()
        assert stats["tasks_queued"] == 0 and stats["results_queued"] == 0
        assert stats["arena_allocs"] == stats["arena_frees"]


def test_terminate_leaves_no_process():
    pool = allcores.Pool(2)
    pool.apply(square, (3,))
    deadline = time.monotonic() + 5
    while len(psutil.Process().children(recursive=True)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    kids = psutil.Process().children(recursive=True)
    assert len(kids) == 3  # template + 2 workers
    pool.terminate()
    pool.join()
    gone, alive = psutil.wait_procs(kids, timeout=5)
    assert alive == []


PARENT_SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {path!r})
    import allcores
    from engine_tasks import sleep_then
    pool = allcores.Pool(2)
    pool.apply(sleep_then, (1, 0))
    futs = [pool.submit(sleep_then, i, 30) for i in range(2)]
    t0 = time.monotonic()  # on a loaded machine the second worker may still be starting
    while len(pool.worker_pids()) < 2 and time.monotonic() - t0 < 20:
        time.sleep(0.01)
    print(" ".join(str(p) for p in pool.worker_pids()), flush=True)
    time.sleep(60)
""")


def test_parent_sigkill_takes_workers_down():
    """Parent killed by SIGKILL: every worker (and the template) exits within a second."""
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen([sys.executable, "-c", PARENT_SCRIPT.format(path=here)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2
        parent = psutil.Process(proc.pid)
        family = [psutil.Process(p) for p in pids] + parent.children(recursive=False)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        t0 = time.monotonic()
        # Orphans are reaped by init whenever it gets to it: a zombie has exited.
        while any(_alive(p) for p in family) and time.monotonic() - t0 < 5:
            time.sleep(0.005)
        took = time.monotonic() - t0
        assert not any(_alive(p) for p in family)
        # The bar is 1 s (tests/c/test-template.c asserts it without Python); a loaded CI
        # machine delays the kernel's reaping of the orphans, so this guard is looser.
        assert took < 3.0, f"workers outlived their parent by {took:.2f} s"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _alive(p):
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_pool_created_while_threads_hold_locks():
    """Fork safety: a pool created while another thread holds the logging lock (and an
    allocator-heavy thread runs) never deadlocks; workers can log."""
    handler = logging.StreamHandler(open(os.devnull, "w"))
    logger = logging.getLogger("allcores-test")
    logger.addHandler(handler)
    stop = threading.Event()

    def hold_logging_lock():
        while not stop.is_set():
            with handler.lock:
                time.sleep(0.001)

    def churn():
        while not stop.is_set():
            [bytearray(1000) for _ in range(1000)]

    threads = [threading.Thread(target=hold_logging_lock), threading.Thread(target=churn)]
    for t in threads:
        t.start()
    try:
        for _ in range(10):
            with allcores.Pool(2) as pool:
                assert pool.map(log_something, range(20), chunksize=1) == list(range(20))
    finally:
        stop.set()
        for t in threads:
            t.join()
        logger.removeHandler(handler)
        handler.stream.close()


def test_pool_in_forked_child_is_refused_and_default_pool_is_new():
    pool = allcores.default_pool()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            try:
                pool.submit(square, 2)
                msg = b"no error"
            except RuntimeError:
                msg = b"refused:" + str(allcores.map(square, [3])[0]).encode()
        except BaseException as e:
            msg = repr(e).encode()
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    out = os.read(r, 1000)
    os.waitpid(pid, 0)
    os.close(r)
    assert out == b"refused:9"
