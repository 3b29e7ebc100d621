"""What the Pool API tests check through process ids, checked on every backend through a worker
token (process, interpreter and thread): work spreads over the workers, runs at the same time,
maxtasksperchild replaces a worker, tiny tasks travel in batches, a failing initializer breaks
an executor, terminate() wakes callers waiting in other threads."""
import functools
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import pytest

from backend_impls import any_backend  # noqa: F401 - fixture
from backend_tasks import (fail_init, meet_then_random, meet_token, square, started_then_nap,
                           token_after, worker_token)
from helpers_tasks import wait_until


def _recycles(backend):
    if backend.name == "dask":
        pytest.skip("dask workers belong to the cluster: maxtasksperchild cannot replace them")


def test_tasks_do_not_run_in_the_caller(any_backend):
    with any_backend.pool(2) as pool:
        tokens = pool.map(worker_token, range(4), 1)
    assert worker_token() not in tokens


def test_long_tasks_are_spread_over_the_workers(any_backend):
    with any_backend.pool(2) as pool:
        tokens = pool.map(token_after, [0.3] * 6)
    assert len(set(tokens)) == 2


def test_workers_run_at_the_same_time(any_backend, tmp_path):
    with any_backend.pool(2) as pool:
        tokens = pool.map(functools.partial(meet_token, str(tmp_path), 2), range(2), 1)
    assert len(set(tokens)) == 2


def test_more_workers_than_cores(any_backend, tmp_path):
    if any_backend.name == "dask":
        pytest.skip("the cluster has 2 worker processes, whatever `processes` asks for")
    n = (os.cpu_count() or 1) + 2
    with any_backend.pool(n) as pool:
        tokens = pool.map(functools.partial(meet_token, str(tmp_path), n), range(n), 1)
    assert len(set(tokens)) == n


def test_each_worker_draws_its_own_random_numbers(any_backend, tmp_path):
    with any_backend.pool(2) as pool:
        draws = pool.map(functools.partial(meet_then_random, str(tmp_path), 2), range(2), 1)
    assert draws[0] != draws[1]


def test_automatic_chunks_keep_long_tasks_apart(any_backend, tmp_path):
    with any_backend.pool(2) as pool:
        tokens = pool.map(functools.partial(meet_token, str(tmp_path), 2), range(2))
    assert len(set(tokens)) == 2


def test_maxtasksperchild_replaces_workers(any_backend):
    _recycles(any_backend)
    with any_backend.pool(1, maxtasksperchild=2) as pool:
        tokens = [pool.apply(worker_token) for _ in range(6)]
    assert tokens[0] == tokens[1] and tokens[2] == tokens[3] and tokens[4] == tokens[5]
    assert len(set(tokens)) == 3


def test_max_tasks_per_child_in_the_executor(any_backend):
    _recycles(any_backend)
    with any_backend.executor(1, max_tasks_per_child=2) as ex:
        tokens = [ex.submit(worker_token).result(30) for _ in range(4)]
    assert tokens[0] == tokens[1] and tokens[2] == tokens[3] and tokens[1] != tokens[2]


def test_many_tiny_tasks_are_batched(any_backend):
    """With maxtasksperchild=1 (a worker per task or batch), far fewer workers than tasks."""
    _recycles(any_backend)
    with any_backend.pool(2, maxtasksperchild=1) as pool:
        tokens = pool.map(worker_token, range(1000))
        lazily = list(pool.imap(worker_token, range(1000)))
    assert len(tokens) == len(lazily) == 1000
    assert len(set(tokens)) < 100 and len(set(lazily)) < 100


def test_tiny_tasks_travel_in_batches_on_every_backend(any_backend):
    """The same without maxtasksperchild, so that dask is seen too: map and imap with
    chunksize=None send 2000 tiny items as far fewer tasks (one id per task sent)."""
    with any_backend.pool(2) as pool:
        engine = pool._engine
        sent = []
        register = engine.register
        engine.register = lambda entry: sent.append(1) or register(entry)
        assert pool.map(square, range(2000)) == [x * x for x in range(2000)]
        in_map = len(sent)
        assert list(pool.imap(square, range(2000))) == [x * x for x in range(2000)]
        in_imap = len(sent) - in_map
    assert 1 <= in_map < 200 and 1 <= in_imap < 200, (in_map, in_imap)


WAKE_S = 2.0  # terminate() wakes waiting callers within this
NAP_S = 3.0  # while running tasks go on for longer where they cannot be stopped


@pytest.mark.timeout(60)
def test_terminate_wakes_callers_waiting_in_other_threads_on_every_backend(any_backend,
                                                                          tmp_path):
    """Twin of test_pool_lifecycle.py's (whose tasks register by pid and sleep 60 s): threads
    blocked in map() and get() when another thread terminates the pool get an exception within
    WAKE_S, before the running tasks would have ended (thread and dask workers finish them)."""
    running = str(tmp_path)
    task = functools.partial(started_then_nap, running, secs=NAP_S)
    pool = any_backend.pool(2)
    outcomes = {}

    def wait(name, call):
        try:
            outcomes[name] = call()
        except BaseException as exc:  # what it raised is the outcome
            outcomes[name] = exc
        outcomes[name + " woke"] = time.monotonic()

    threads = [threading.Thread(target=wait, args=("map", lambda: pool.map(task, range(4), 1))),
               threading.Thread(target=wait,
                                args=("get", lambda: pool.apply_async(task, ("get",)).get()))]
    for t in threads:
        t.start()
    wait_until(lambda: len(os.listdir(running)) >= 2, what="the tasks' start")
    time.sleep(0.2)  # lets both threads reach their wait
    terminated = time.monotonic()
    pool.terminate()
    for t in threads:
        t.join(WAKE_S + 10)
    try:
        assert not any(t.is_alive() for t in threads), "a caller still waits after terminate()"
        assert isinstance(outcomes["map"], BaseException), outcomes
        assert isinstance(outcomes["get"], BaseException), outcomes
        woke = max(outcomes["map woke"], outcomes["get woke"]) - terminated
        assert woke < WAKE_S, f"callers woke {woke:.2f} s after terminate()"
    finally:
        pool.join()


def test_two_pools_have_their_own_workers(any_backend):
    if any_backend.name == "dask":
        pytest.skip("two pools on one dask cluster share its workers")
    with any_backend.pool(1) as a, any_backend.pool(1) as b:
        assert a.apply(worker_token) != b.apply(worker_token)


def test_failing_initializer_breaks_the_executor(any_backend):
    """BrokenProcessPool, whether the first submit() already sees the broken executor or its
    future does."""
    ex = any_backend.executor(1, initializer=fail_init, initargs=("cannot init",))
    try:
        with pytest.raises(BrokenProcessPool):
            ex.submit(square, 2).result(timeout=30)
        with pytest.raises(BrokenProcessPool):
            ex.submit(square, 3).result(timeout=30)
    finally:
        ex.shutdown(wait=True)
