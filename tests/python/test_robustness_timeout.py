"""task_timeout: a task over its limit fails with allcores.TaskTimeout (a TimeoutError), its
worker is killed and replaced, and the pool goes on.
"""
import functools
import os
import multiprocessing

import pytest

import helpers_tasks as T
from helpers_tasks import process_gone, square, wait_until

pytestmark = pytest.mark.timeout(60)

allcores = pytest.importorskip("allcores")


def _read_pid(path):
    wait_until(lambda: os.path.exists(path), what="the task's start")
    with open(path) as f:
        return int(f.read())


def test_pool_task_timeout(allcores_impl, tmp_path):
    path = str(tmp_path / "pid")
    with allcores_impl.pool(2, task_timeout=0.5) as pool:
        with pytest.raises(allcores.TaskTimeout) as info:
            pool.apply(T.pid_then_sleep, (path,))
        assert isinstance(info.value, TimeoutError)
        assert not isinstance(info.value, multiprocessing.TimeoutError)
        pid = _read_pid(path)
        wait_until(lambda: process_gone(pid), what="the timed-out worker's end")
        assert pid not in pool.map(T.pid_of, range(10), 1)
        # back at full strength: two tasks meet in two workers
        (tmp_path / "m").mkdir()
        assert len(set(pool.map(functools.partial(T.meet, str(tmp_path / "m")), [2, 2], 1))) == 2


def test_tasks_within_the_limit_succeed(allcores_impl):
    with allcores_impl.pool(2, task_timeout=30) as pool:
        assert pool.map(T.sleep_pid, [0.05] * 4, 1)
        assert pool.apply(square, (3,)) == 9


def test_map_with_one_slow_item(allcores_impl):
    with allcores_impl.pool(2, task_timeout=0.5) as pool:
        with pytest.raises(allcores.TaskTimeout):
            pool.map(functools.partial(T.sleep_on, slow=4), range(10), 1)
        assert pool.map(square, range(10)) == [x * x for x in range(10)]


def test_imap_raises_at_the_slow_items_position(allcores_impl):
    with allcores_impl.pool(2, task_timeout=0.5) as pool:
        it = pool.imap(functools.partial(T.sleep_on, slow=2), range(5), 1)
        got = []
        for _ in range(5):
            try:
                got.append(next(it))
            except allcores.TaskTimeout:
                got.append("timeout")
        assert got == [0, 1, "timeout", 9, 16]


def test_per_call_task_timeout(allcores_impl):
    with allcores_impl.pool(2) as pool:
        with pytest.raises(allcores.TaskTimeout):
            pool.apply(T.sleep_long, task_timeout=0.3)
        with pytest.raises(allcores.TaskTimeout):
            pool.map(functools.partial(T.sleep_on, slow=1), range(3), 1, task_timeout=0.3)
        r = pool.apply_async(T.sleep_long, task_timeout=0.3)
        with pytest.raises(allcores.TaskTimeout):
            r.get(30)  # the task's limit, not get()'s own timeout
        assert pool.apply(square, (4,)) == 16  # no limit on this call


def test_timeout_does_not_touch_other_tasks(allcores_impl):
    with allcores_impl.pool(2, task_timeout=0.5) as pool:
        slow = pool.submit(T.sleep_long)
        quick = [pool.submit(T.sleep_then, i, 0.01) for i in range(20)]
        with pytest.raises(allcores.TaskTimeout):
            slow.result(30)
        assert [f.result(30) for f in quick] == list(range(20))


def test_executor_task_timeout(allcores_impl):
    with allcores_impl.executor(2, task_timeout=0.5) as ex:
        fut = ex.submit(T.sleep_long)
        with pytest.raises(allcores.TaskTimeout):
            fut.result(30)
        assert ex.submit(square, 6).result(30) == 36
        assert list(ex.map(square, range(4))) == [0, 1, 4, 9]


def test_executor_map_task_timeout(allcores_impl):
    with allcores_impl.executor(2) as ex:
        it = ex.map(functools.partial(T.sleep_on, slow=2), range(5), task_timeout=0.3)
        assert [next(it), next(it)] == [0, 1]
        with pytest.raises(allcores.TaskTimeout):
            next(it)
        assert list(ex.map(square, range(4))) == [0, 1, 4, 9]
        with pytest.raises(ValueError):
            ex.map(square, range(4), task_timeout=0)


@pytest.mark.parametrize("bad", [0, -1])
def test_task_timeout_must_be_positive(allcores_impl, bad):
    with allcores_impl.pool(1) as pool:
        with pytest.raises(ValueError):
            pool.apply(square, (1,), task_timeout=bad)
