"""Chaos: workers are killed at random while thousands of tasks run. Every task either returns
its own result or raises WorkerLost, at most one task is lost per kill, and the pool keeps
serving afterwards."""
import os
import random
import signal
import threading
import time

import pytest

import allcores
from engine_tasks import sleep_then, square

pytestmark = pytest.mark.timeout(120)


def _killer(pool, stop, kills, rng):
    while not stop.is_set():
        time.sleep(rng.uniform(0.005, 0.03))
        pids = pool.worker_pids()
        if not pids:
            continue
        try:
            os.kill(rng.choice(pids), signal.SIGKILL)
            kills.append(1)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("seed", [1, 2])
def test_chaos_submit(seed):
    rng = random.Random(seed)
    with allcores.Pool(2) as pool:
        stop = threading.Event()
        kills = []
        killer = threading.Thread(target=_killer, args=(pool, stop, kills, rng))
        futures = [pool.submit(sleep_then, i, rng.choice([0, 0, 0.001, 0.002])) for i in range(3000)]
        killer.start()
        ok = lost = 0
        for i, f in enumerate(futures):
            try:
                assert f.result(timeout=60) == i
                ok += 1
            except allcores.WorkerLost as e:
                assert e.pid and e.signal == "SIGKILL"
                lost += 1
        stop.set()
        killer.join()
        assert ok + lost == 3000
        assert len(kills) > 0
        assert lost <= len(kills)
        # the pool still serves, with all its workers
        assert pool.map(square, range(100)) == [x * x for x in range(100)]
        print(f"chaos seed {seed}: {len(kills)} kills, {lost} lost, {ok} ok, 0 wrong")


def test_chaos_imap_positions():
    """imap raises WorkerLost at the killed task's position and yields every other result."""
    with allcores.Pool(2) as pool:
        stop = threading.Event()
        kills = []
        killer = threading.Thread(target=_killer, args=(pool, stop, kills, random.Random(3)))
        killer.start()
        it = pool.imap(_SleepThen(0.001), range(1500), chunksize=1)
        got = {}
        for i in range(1500):
            try:
                got[i] = next(it)
            except allcores.WorkerLost:
                got[i] = "lost"
        stop.set()
        killer.join()
        with pytest.raises(StopIteration):
            next(it)
        wrong = [i for i, v in got.items() if v != "lost" and v != i]
        lost = sum(1 for v in got.values() if v == "lost")
        assert wrong == []
        assert lost <= len(kills)


class _SleepThen:
    def __init__(self, secs):
        self.secs = secs

    def __call__(self, x):
        time.sleep(self.secs)
        return x
