"""What the Pool API tests check through process ids, checked on every backend through a worker
token (process, interpreter and thread): work spreads over the workers, runs at the same time,
maxtasksperchild replaces a worker, tiny tasks travel in batches, a failing initializer breaks
an executor."""
import functools
import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from backend_impls import any_backend  # noqa: F401 - fixture
from backend_tasks import (fail_init, meet_then_random, meet_token, square, token_after,
                           worker_token)


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
