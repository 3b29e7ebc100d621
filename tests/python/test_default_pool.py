"""allcores.map / allcores.submit / allcores.default_pool(): one process-wide pool, started on
first use, reused by every call, closed at exit.
"""
import concurrent.futures as cf
import functools
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import helpers_tasks as T
from helpers_tasks import process_gone, square, wait_until

pytestmark = pytest.mark.timeout(60)

allcores = pytest.importorskip("allcores")


@pytest.fixture
def meet_dir(tmp_path):
    def make(name):
        d = tmp_path / name
        d.mkdir()
        return str(d)
    return make


def test_default_pool_is_one_pool(allcores_impl):
    a = allcores.default_pool()
    b = allcores.default_pool()
    assert a is b
    assert isinstance(a, allcores.Pool)
    assert a.apply(square, (3,)) == 9


def test_default_pool_has_a_worker_per_core(allcores_impl, meet_dir):
    n = os.cpu_count()
    pids = allcores.map(functools.partial(T.meet, meet_dir("m")), [n] * n, 1)
    assert len(set(pids)) == n


def test_map_and_submit(allcores_impl):
    assert allcores.map(square, range(100)) == [x * x for x in range(100)]
    assert allcores.map(square, range(10), chunksize=3) == [x * x for x in range(10)]
    fut = allcores.submit(T.add3, 1, 2, c=3)
    assert isinstance(fut, cf.Future)
    assert fut.result(30) == 6


def test_default_map_of_lambdas(allcores_impl):
    k = 3
    assert allcores.map(lambda x: x * k, [1, 2]) == [3, 6]
    assert allcores.submit(lambda: "hi").result(30) == "hi"


def test_default_map_errors(allcores_impl):
    with pytest.raises(ValueError, match="item 2 is bad"):
        allcores.map(functools.partial(T.fail_on, bad=2), range(5))
    with pytest.raises(ValueError):
        allcores.submit(T.raise_value_error).result(30)
    assert allcores.map(square, [4]) == [16]


def test_workers_are_reused_across_calls(allcores_impl, meet_dir):
    """The pool is started once: the same workers serve every call."""
    first = set(allcores.map(functools.partial(T.meet, meet_dir("a")), [2, 2], 1))
    allcores.map(square, range(1000))
    allcores.submit(square, 2).result(30)
    second = set(allcores.map(functools.partial(T.meet, meet_dir("b")), [2, 2], 1))
    assert first == second
    assert allcores.default_pool() is allcores.default_pool()


def test_default_pool_from_many_threads_is_one_pool(allcores_impl):
    pools, results = [], []
    barrier = threading.Barrier(4)

    def run():
        barrier.wait()
        pools.append(allcores.default_pool())
        results.append(allcores.map(square, range(20)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(pools) == 4 and all(p is pools[0] for p in pools)
    assert results == [[x * x for x in range(20)]] * 4


def test_a_closed_default_pool_is_replaced(allcores_impl):
    old = allcores.default_pool()
    old.terminate()
    old.join()
    assert allcores.map(square, [5]) == [25]
    assert allcores.default_pool() is not old


_SCRIPT = textwrap.dedent('''
    import functools, os, sys, time
    import allcores

    def meet(directory, n):
        open(os.path.join(directory, str(os.getpid())), "w").close()
        while len(os.listdir(directory)) < n:
            time.sleep(0.01)
        return os.getpid()

    if __name__ == "__main__":
        directory, mode = sys.argv[1], sys.argv[2]
        n = os.cpu_count()
        pids = allcores.map(functools.partial(meet, directory), [n] * n, 1)
        assert allcores.submit(pow, 2, 10).result() == 1024
        assert allcores.map(lambda x: -x, [1]) == [-1]
        print(" ".join(map(str, sorted(set(pids)))), flush=True)
        if mode == "busy":
            allcores.submit(time.sleep, 60)   # still running at exit
        elif mode == "exception":
            raise SystemExit("leaving with an error")
''')


@pytest.mark.parametrize("mode", ["idle", "busy", "exception"])
def test_default_pool_is_closed_at_exit(allcores_impl, tmp_path, meet_dir, mode):
    script = tmp_path / "prog.py"
    script.write_text(_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), meet_dir("m"), mode], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    if mode == "exception":
        assert proc.returncode == 1 and proc.stderr.strip() == "leaving with an error"
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""  # no traceback, no warning, no leaked-resource message
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == os.cpu_count()
    for pid in pids:
        wait_until(lambda: process_gone(pid, zombie_ok=True), limit=5,
                   what=f"the exit of worker {pid}")
