"""A worker that dies during a task (SIGKILL, segfault, os._exit) fails only that task with
allcores.WorkerLost naming the pid and the exit code or signal; the pool replaces the worker and
keeps serving. (multiprocessing.Pool hangs forever here, gh-66587; ProcessPoolExecutor fails every
pending future and stays broken.)
"""
import concurrent.futures as cf
import functools
import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

import helpers_tasks as T
from helpers_tasks import process_gone, square, wait_until

pytestmark = pytest.mark.timeout(60)

allcores = pytest.importorskip("allcores")

DEATHS = [
    ("kill", T.kill_self, {"signal": "SIGKILL", "exitcode": None}),
    ("segfault", T.segfault, {"signal": "SIGSEGV", "exitcode": None}),
    ("exit", functools.partial(T.exit_now, 3), {"signal": None, "exitcode": 3}),
]


@pytest.fixture
def pool(allcores_impl):
    p = allcores_impl.pool(2)
    yield p
    p.terminate()
    p.join()


def _check_lost(exc, expect, pool_pids=None):
    assert isinstance(exc, allcores.WorkerLost)
    assert isinstance(exc, BrokenProcessPool)
    assert isinstance(exc.pid, int) and exc.pid > 0 and exc.pid != os.getpid()
    assert exc.signal == expect["signal"]
    assert exc.exitcode == expect["exitcode"]
    text = str(exc)
    assert str(exc.pid) in text
    if expect["signal"]:
        assert expect["signal"] in text
    else:
        assert str(expect["exitcode"]) in text
    # its cause names the process and its exit code, as concurrent.futures' does from 3.15
    # (multiprocessing's exit code: minus the signal's number for a signal)
    code = -getattr(signal, expect["signal"]) if expect["signal"] else expect["exitcode"]
    assert f"Process {exc.pid} terminated abruptly with exit code {code}" in exc.__cause__.tb


@pytest.mark.parametrize("name, task, expect", DEATHS, ids=[d[0] for d in DEATHS])
def test_apply_raises_worker_lost(pool, name, task, expect):
    with pytest.raises(allcores.WorkerLost) as info:
        pool.apply(task)
    _check_lost(info.value, expect)
    wait_until(lambda: process_gone(info.value.pid), what="the dead worker's reaping")
    # the pool goes on, at full strength
    assert pool.map(square, range(20), 1) == [x * x for x in range(20)]
    assert len(set(pool.map(T.sleep_pid, [0.2] * 4, 1))) == 2


@pytest.mark.parametrize("name, task, expect", DEATHS, ids=[d[0] for d in DEATHS])
def test_submit_fails_only_the_dead_workers_task(pool, name, task, expect):
    others = [pool.submit(T.sleep_then, i, 0.01) for i in range(10)]
    doomed = pool.submit(task)
    more = [pool.submit(square, i) for i in range(10)]
    with pytest.raises(allcores.WorkerLost) as info:
        doomed.result(30)
    _check_lost(info.value, expect)
    assert [f.result(30) for f in others] == list(range(10))
    assert [f.result(30) for f in more] == [i * i for i in range(10)]


def test_worker_lost_is_catchable_as_broken_process_pool(pool):
    with pytest.raises(BrokenProcessPool):
        pool.apply(T.kill_self)
    assert pool.apply(square, (2,)) == 4


def test_worker_lost_names_the_pid_that_ran_the_task(pool, tmp_path):
    path = str(tmp_path / "pid")
    with pytest.raises(allcores.WorkerLost) as info:
        pool.apply(T.pid_then_die, (path,))
    with open(path) as f:
        assert info.value.pid == int(f.read())


@pytest.mark.parametrize("how", ["kill", "exit", "segv"])
def test_map_raises_worker_lost(pool, how):
    with pytest.raises(allcores.WorkerLost):
        pool.map(functools.partial(T.die_on, bad=5, how=how), range(10), 1)
    assert pool.map(square, range(10)) == [x * x for x in range(10)]


def test_map_with_automatic_chunks_raises_worker_lost(pool):
    with pytest.raises(allcores.WorkerLost):
        pool.map(functools.partial(T.die_on, bad=500), range(1000))
    assert pool.map(square, range(1000)) == [x * x for x in range(1000)]


def test_map_async_error_callback_gets_worker_lost(pool):
    errors = []
    r = pool.map_async(functools.partial(T.die_on, bad=1), range(3), 1,
                       error_callback=errors.append)
    with pytest.raises(allcores.WorkerLost):
        r.get(30)
    wait_until(lambda: errors, what="the error callback")
    assert isinstance(errors[0], allcores.WorkerLost)


def test_imap_raises_at_the_dead_tasks_position(pool):
    it = pool.imap(functools.partial(T.die_on, bad=3), range(8), 1)
    got = []
    for _ in range(8):
        try:
            got.append(next(it))
        except allcores.WorkerLost:
            got.append("lost")
    assert got == [0, 1, 4, "lost", 16, 25, 36, 49]
    with pytest.raises(StopIteration):
        next(it)


def test_imap_unordered_reports_the_death_once(pool):
    it = pool.imap_unordered(functools.partial(T.die_on, bad=2), range(6), 1)
    values, lost = [], 0
    for _ in range(6):
        try:
            values.append(next(it))
        except allcores.WorkerLost:
            lost += 1
    assert lost == 1
    assert sorted(values) == [0, 1, 9, 16, 25]


def test_apply_async_error_callback_gets_worker_lost(pool):
    errors = []
    r = pool.apply_async(T.kill_self, error_callback=errors.append)
    r.wait(30)
    assert r.ready() and not r.successful()
    wait_until(lambda: errors, what="the error callback")
    assert isinstance(errors[0], allcores.WorkerLost)


def test_many_deaths_in_a_row(pool):
    for _ in range(6):
        with pytest.raises(allcores.WorkerLost):
            pool.apply(T.kill_self)
    assert pool.map(square, range(50)) == [x * x for x in range(50)]


def test_executor_future_gets_worker_lost_and_executor_goes_on(allcores_impl):
    with allcores_impl.executor(2) as ex:
        others = [ex.submit(T.sleep_then, i, 0.01) for i in range(8)]
        doomed = ex.submit(T.exit_now, 9)
        with pytest.raises(allcores.WorkerLost) as info:
            doomed.result(30)
        assert info.value.exitcode == 9
        assert [f.result(30) for f in others] == list(range(8))
        assert ex.submit(square, 5).result(30) == 25
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]


def test_executor_map_raises_at_the_dead_tasks_position(allcores_impl):
    with allcores_impl.executor(2) as ex:
        it = ex.map(functools.partial(T.die_on, bad=2), range(5))
        assert next(it) == 0
        assert next(it) == 1
        with pytest.raises(allcores.WorkerLost):
            next(it)


def test_worker_death_with_wait_and_as_completed(allcores_impl):
    with allcores_impl.executor(2) as ex:
        futs = [ex.submit(T.die_on, i, 3) for i in range(6)]
        done, not_done = cf.wait(futs, timeout=30)
        assert not not_done
        outcomes = [f.exception() for f in futs]
        assert [type(e).__name__ for e in outcomes if e is not None] == ["WorkerLost"]
        assert isinstance(outcomes[3], allcores.WorkerLost)


def test_worker_killed_from_outside_while_busy(pool, tmp_path):
    """What the out-of-memory killer does: SIGKILL from outside, in the middle of a task."""
    path = str(tmp_path / "pid")
    doomed = pool.submit(T.pid_then_sleep, path)
    others = [pool.submit(T.sleep_then, i, 0.01) for i in range(10)]
    wait_until(lambda: os.path.exists(path), what="the task's start")
    with open(path) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(allcores.WorkerLost) as info:
        doomed.result(30)
    assert info.value.pid == pid and info.value.signal == "SIGKILL"
    assert [f.result(30) for f in others] == list(range(10))


def test_idle_worker_killed_from_outside_is_replaced(pool, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pids = set(pool.map(functools.partial(T.meet, str(tmp_path / "a")), [2, 2], 1))
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: process_gone(victim), what="the killed worker's reaping")
    assert pool.map(square, range(100), 1) == [x * x for x in range(100)]
    after = set(pool.map(functools.partial(T.meet, str(tmp_path / "b")), [2, 2], 1))
    assert len(after) == 2 and victim not in after


def test_automatic_chunks_blame_the_item_that_killed_its_worker(pool):
    # Tiny tasks run in large chunks that record no item: the parent blamed another item and
    # the guilty one ran again, killing a second worker. Such a chunk now runs again tracked.
    n, bad = 60_000, 50_000
    it = pool.imap(functools.partial(T.die_on, bad=bad, how="exit"), range(n))
    lost = []
    for i in range(n):
        try:
            assert next(it) == i * i
        except allcores.WorkerLost as exc:
            lost.append(i)
            assert "exit code 5" in str(exc) or "5" in str(exc)
    assert lost == [bad]
    assert pool.map(square, range(100)) == [x * x for x in range(100)]


def test_a_result_whose_worker_left_before_it_was_read_fails_as_a_lost_worker():
    # A result sent in a segment of its own (the arena had no room) is opened through its
    # worker; a worker gone by then fails that task with WorkerLost, never a raw OSError.
    import errno
    from allcores import _engine
    from allcores.errors import WorkerLost
    exc = _engine._unreadable_error(errno.ESTALE, "task 3")
    assert isinstance(exc, WorkerLost) and "task 3" in str(exc) and "exited" in str(exc)
    assert isinstance(_engine._unreadable_error(errno.ENOMEM, "task 3"), MemoryError)
    other = _engine._unreadable_error(errno.EACCES, "task 3")
    assert isinstance(other, OSError) and other.errno == errno.EACCES and "task 3" in str(other)
