"""Bad input gets a clear exception naming what was wrong, and the pool stays usable."""
import threading

import pytest

import allcores
from engine_tasks import (big_result, fork_in_task, ident, raise_unpicklable, raise_with_lock,
                          square, unpicklable_result)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pool():
    with allcores.Pool(2) as p:
        yield p


def test_unpicklable_argument_names_it(pool):
    fut = pool.submit(ident, threading.Lock())
    with pytest.raises(allcores.PicklingError, match=r"argument 0 \(lock object"):
        fut.result(10)
    assert pool.apply(square, (4,)) == 16


def test_unpicklable_argument_in_map(pool):
    with pytest.raises(TypeError, match="lock"):
        pool.map(ident, [1, threading.Lock(), 3])
    assert pool.map(square, [1, 2]) == [1, 4]


@pytest.mark.parametrize("api", ["imap", "imap_unordered", "executor_map"])
@pytest.mark.parametrize("chunksize", [1, 3, None])
def test_unpicklable_item_in_a_lazy_map_fails_at_its_position(pool, api, chunksize):
    # The chunk that could not be pickled was counted as sent: the iterator waited for ever.
    items = [1, 2, threading.Lock(), 4, 5]
    if api == "executor_map":
        with allcores.ProcessPoolExecutor(2) as ex:
            it = ex.map(ident, items, chunksize=chunksize or 1)
            assert [next(it), next(it)] == [1, 2]
            with pytest.raises(allcores.PicklingError, match=r"cannot send item .*lock"):
                next(it)
            assert list(ex.map(square, [1, 2])) == [1, 4]
        return
    it = getattr(pool, api)(ident, items, chunksize)
    outcomes = []
    for _ in range(len(items)):
        try:
            outcomes.append(next(it))
        except allcores.PicklingError as exc:
            assert "lock" in str(exc)
            outcomes.append("error")
    with pytest.raises(StopIteration):
        next(it)
    if api == "imap":
        assert outcomes == [1, 2, "error", 4, 5]
    else:
        assert sorted(outcomes, key=str) == sorted([1, 2, "error", 4, 5], key=str)
    assert pool.map(square, [1, 2]) == [1, 4]


def test_unpicklable_function(pool):
    lock = threading.Lock()
    fut = pool.submit(lambda: lock.acquire())
    with pytest.raises(allcores.PicklingError, match="lambda"):
        fut.result(10)
    assert pool.apply(square, (5,)) == 25


def test_unpicklable_result_names_it(pool):
    with pytest.raises(allcores.PicklingError, match="unpicklable_result.*lock"):
        pool.apply(unpicklable_result)
    assert pool.apply(square, (6,)) == 36


def test_unpicklable_result_in_map_fails_that_item(pool):
    it = pool.imap(_maybe_lock, [1, 2, 3], chunksize=3)
    assert next(it) == 1
    with pytest.raises(allcores.PicklingError):
        next(it)
    assert next(it) == 3


def _maybe_lock(x):
    return threading.Lock() if x == 2 else x


def test_exception_that_cannot_be_rebuilt(pool):
    with pytest.raises(allcores.UnpicklableTaskError, match="Unpicklable.*bad") as info:
        pool.apply(raise_unpicklable)
    assert "raise_unpicklable" in str(info.value.__cause__)


def test_exception_that_cannot_be_pickled(pool):
    with pytest.raises(allcores.UnpicklableTaskError, match="holds a lock"):
        pool.apply(raise_with_lock)
    assert pool.apply(square, (7,)) == 49


def test_sys_exit_in_task(pool):
    import sys
    with pytest.raises(allcores.TaskExit, match=r"sys.exit\(3\)"):
        pool.apply(sys.exit, (3,))
    assert pool.apply(square, (8,)) == 64


def test_fork_in_task(pool):
    assert pool.apply(fork_in_task) == "parent"
    assert pool.map(square, range(10)) == [x * x for x in range(10)]


def test_result_larger_than_region():
    import allcores._engine as E
    saved = E.ARENA_BYTES
    E.ARENA_BYTES = 64 << 20
    try:
        with allcores.Pool(1) as small:
            with pytest.raises(MemoryError, match="shared region"):
                small.apply(big_result, (80 << 20,))
            with pytest.raises(MemoryError, match="shared region"):
                small.apply(ident, (b"y" * (80 << 20),))
            assert len(small.apply(big_result, (10 << 20,))) == 10 << 20
    finally:
        E.ARENA_BYTES = saved


def test_initializer_that_raises_breaks_cleanly():
    def bad():
        raise ValueError("bad init")
    with allcores.Pool(2, initializer=bad) as p:
        with pytest.raises(allcores.BrokenProcessPool, match="initializer.*bad init"):
            p.apply(square, (1,))
        with pytest.raises(allcores.BrokenProcessPool, match="initializer.*bad init"):
            p.apply(square, (2,))


def test_per_call_task_timeout():
    import time
    from engine_tasks import sleep_then
    with allcores.Pool(2) as p:
        t0 = time.monotonic()
        with pytest.raises(allcores.TaskTimeout, match="task_timeout=0.2"):
            p.apply(sleep_then, (1, 5), task_timeout=0.2)
        assert time.monotonic() - t0 < 4  # hang guard: the 5 s task was stopped
        it = p.imap(_sleepy, [0.0, 5.0, 0.01], task_timeout=0.3)
        assert next(it) == 0.0
        with pytest.raises(allcores.TaskTimeout):
            next(it)
        assert next(it) == 0.01
        assert p.map(_sleepy, [0.01] * 4, task_timeout=2) == [0.01] * 4
        with pytest.raises(ValueError):
            p.map(_sleepy, [1], task_timeout=0)


def _sleepy(x):
    import time
    time.sleep(x)
    return x
