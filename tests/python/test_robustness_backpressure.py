"""Back-pressure: submitting far more tasks than the workers can take never piles them all up in
the caller: submit() blocks while the pool's queue is full, and everything completes once the
workers move again. (multiprocessing and concurrent.futures queue without bound.)
"""
import threading

import pytest

from helpers_tasks import open_gate, square, wait_for_file, wait_until

pytestmark = pytest.mark.timeout(60)

N = 20_000


def test_submit_blocks_while_the_workers_are_stuck(allcores_impl, gate):
    with allcores_impl.pool(1) as pool:
        blocker = pool.submit(wait_for_file, gate)
        futures = []
        finished = threading.Event()

        def feed():
            for i in range(N):
                futures.append(pool.submit(square, i))
            finished.set()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: len(futures) > 100, what="the first submissions")
        finished.wait(1.0)  # time enough to queue everything if nothing pushes back
        assert not finished.is_set(), "all tasks were queued while no worker could take one"
        queued = len(futures)
        assert queued < N
        open_gate(gate)
        assert finished.wait(50)
        feeder.join(10)
        assert blocker.result(30) == gate
        assert [f.result(30) for f in futures[::997]] == [i * i for i in range(0, N, 997)]


def test_executor_submit_blocks_while_the_workers_are_stuck(allcores_impl, gate):
    with allcores_impl.executor(1) as ex:
        blocker = ex.submit(wait_for_file, gate)
        futures = []
        finished = threading.Event()

        def feed():
            for i in range(N):
                futures.append(ex.submit(square, i))
            finished.set()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: len(futures) > 100, what="the first submissions")
        finished.wait(1.0)
        assert not finished.is_set(), "all tasks were queued while no worker could take one"
        open_gate(gate)
        assert finished.wait(50)
        feeder.join(10)
        assert blocker.result(30) == gate
        assert sum(f.result(30) for f in futures) == sum(i * i for i in range(N))
