"""Pool's life: workers, initializer, maxtasksperchild, close/join/terminate and their errors,
the context manager.

Each test runs against allcores.Pool and multiprocessing.Pool (fork).
"""
import functools
import os
import pickle

import pytest

from helpers_tasks import (environment, gated_square, init_state, meet, open_gate, pid_of,
                           process_name, read_state, say, sleep_long, sleep_then, square,
                           wait_for_file, wait_until)


def _not_running(call):
    with pytest.raises(ValueError, match="Pool not running"):
        call()


def test_processes_run_at_the_same_time(impl, tmp_path):
    with impl.pool(3) as pool:
        pids = pool.map(functools.partial(meet, str(tmp_path)), [3, 3, 3], 1)
    assert len(set(pids)) == 3
    assert os.getpid() not in pids


def test_processes_must_be_positive(impl):
    with pytest.raises(ValueError):
        impl.pool(0)


def test_close_then_join_finishes_queued_work(impl):
    pool = impl.pool(2)
    results = [pool.apply_async(sleep_then, (i, 0.05)) for i in range(8)]
    mapped = pool.map_async(square, range(20))
    pool.close()
    pool.join()
    assert [r.get(0) for r in results] == list(range(8))
    assert mapped.get(0) == [x * x for x in range(20)]


def test_closed_pool_refuses_new_work(impl, tmp_path):
    pool = impl.pool(2)
    pool.close()
    _not_running(lambda: pool.apply(square, (1,)))
    _not_running(lambda: pool.apply_async(square, (1,)))
    _not_running(lambda: pool.map(square, [1]))
    _not_running(lambda: pool.map_async(square, [1]))
    _not_running(lambda: pool.starmap(pow, [(2, 3)]))
    _not_running(lambda: pool.imap(square, [1]))
    _not_running(lambda: pool.imap_unordered(square, [1]))
    pool.join()


def test_terminated_pool_refuses_new_work(impl):
    pool = impl.pool(2)
    pool.terminate()
    _not_running(lambda: pool.apply(square, (1,)))
    _not_running(lambda: pool.map(square, [1]))
    pool.join()


def test_join_while_running_raises_value_error(impl):
    pool = impl.pool(2)
    try:
        with pytest.raises(ValueError):
            pool.join()
        assert pool.apply(square, (3,)) == 9  # still usable
    finally:
        pool.terminate()
        pool.join()


def test_close_and_terminate_twice_are_harmless(impl):
    pool = impl.pool(2)
    pool.close()
    pool.close()
    pool.terminate()
    pool.terminate()
    pool.join()
    pool.join()


@pytest.mark.timeout(30)
def test_terminate_stops_running_tasks(impl):
    """terminate() does not wait for tasks: a task sleeping a minute does not hold it up (the
    hang guard of this test is far shorter than the sleep)."""
    pool = impl.pool(2)
    running = [pool.apply_async(sleep_long) for _ in range(2)]
    queued = pool.apply_async(sleep_long)
    pool.terminate()
    pool.join()
    assert not queued.ready() or not queued.successful()
    assert all(not r.ready() or not r.successful() for r in running)


@pytest.mark.timeout(30)
def test_context_manager_exit_terminates(impl):
    with impl.pool(2) as pool:
        assert pool.map(square, [1, 2]) == [1, 4]
        pool.apply_async(sleep_long)  # would keep a waiting __exit__ for a minute
    _not_running(lambda: pool.apply(square, (1,)))
    pool.join()


def test_context_manager_returns_the_pool(impl):
    pool = impl.pool(2)
    with pool as entered:
        assert entered is pool
    pool.join()


def test_context_manager_on_a_closed_pool_raises(impl):
    pool = impl.pool(2)
    pool.close()
    with pytest.raises(ValueError):
        with pool:
            pass
    pool.join()


def test_context_manager_exit_after_an_exception_in_the_block(impl):
    with pytest.raises(KeyError):
        with impl.pool(2) as pool:
            pool.apply(square, (1,))
            raise KeyError("in the block")
    _not_running(lambda: pool.apply(square, (1,)))
    pool.join()


def test_pool_cannot_be_pickled(impl):
    with impl.pool(1) as pool:
        with pytest.raises(NotImplementedError):
            pickle.dumps(pool)


def test_initializer_and_initargs_are_seen_by_tasks(impl):
    with impl.pool(2, init_state, ("configured", [1, 2])) as pool:
        states = pool.map(read_state, range(10), 1)
    assert states == [("configured", [1, 2], True)] * 10


def test_initializer_by_keyword(impl):
    with impl.pool(processes=1, initializer=init_state, initargs=(42,)) as pool:
        assert pool.apply(read_state) == (42, None, True)


def test_maxtasksperchild_replaces_workers(impl):
    with impl.pool(1, maxtasksperchild=2) as pool:
        pids = [pool.apply(pid_of) for _ in range(6)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
    assert len(set(pids)) == 3


def test_maxtasksperchild_with_initializer(impl):
    """Each replacement worker runs the initializer again."""
    with impl.pool(1, init_state, ("again",), 1) as pool:
        got = [pool.apply(read_state) for _ in range(3)]
    assert got == [("again", None, True)] * 3


def test_maxtasksperchild_map_completes(impl):
    with impl.pool(2, maxtasksperchild=3) as pool:
        assert pool.map(square, range(100), 1) == [x * x for x in range(100)]
        assert sorted(pool.imap_unordered(square, range(30))) == [x * x for x in range(30)]


def test_pool_is_usable_from_a_thread(impl):
    import threading
    out = {}
    with impl.pool(2) as pool:
        def run():
            out["v"] = pool.map(square, range(5))
        t = threading.Thread(target=run)
        t.start()
        t.join(30)
    assert out["v"] == [0, 1, 4, 9, 16]


def test_two_pools_at_once(impl, gate):
    with impl.pool(1) as a, impl.pool(1) as b:
        blocked = a.apply_async(wait_for_file, (gate,))
        assert b.apply(square, (4,)) == 16
        with open(gate, "w"):
            pass
        assert blocked.get(30) == gate
        assert a.apply(pid_of) != b.apply(pid_of)


def test_workers_see_the_callers_state_at_pool_creation(impl, tmp_path, monkeypatch):
    """What fork gives multiprocessing users: module globals, environment and working directory
    as they were when the pool was created."""
    import helpers_tasks
    monkeypatch.setitem(helpers_tasks._state, "value", "set before the pool")
    monkeypatch.setenv("ALLCORES_TEST_VAR", "from the parent")
    monkeypatch.chdir(tmp_path)
    with impl.pool(2) as pool:
        got = pool.map(environment, ["ALLCORES_TEST_VAR"] * 4, 1)
    assert got == [("from the parent", str(tmp_path), "set before the pool")] * 4


def test_output_of_tasks_reaches_the_callers_stdout(impl, capfd):
    pool = impl.pool(2)
    assert pool.map(say, ["hello from a worker", "and another"], 1) == \
        ["hello from a worker", "and another"]
    pool.close()
    pool.join()
    out = capfd.readouterr().out
    assert "hello from a worker" in out and "and another" in out


def test_workers_have_their_own_process_names(impl, tmp_path):
    import multiprocessing
    with impl.pool(2) as pool:
        meet_names = pool.map(functools.partial(_meet_name, str(tmp_path)), [2, 2], 1)
    assert len(set(meet_names)) == 2
    assert multiprocessing.current_process().name not in meet_names


def _meet_name(directory, n):
    meet(directory, n)
    return process_name()


_ONE_LINER = """
import sys
from {module} import Pool
from helpers_tasks import square

if __name__ == "__main__":
    print(Pool(2).map(square, range(5)))   # never closed: the pool goes at exit
"""


def test_pool_never_closed_in_a_script(impl, tmp_path):
    import subprocess
    import sys
    module = "allcores" if impl.name == "allcores" else "multiprocessing"
    script = tmp_path / "prog.py"
    script.write_text(_ONE_LINER.format(module=module))
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (here, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=30, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 1, 4, 9, 16]"
    assert proc.stderr == ""


def test_each_worker_draws_its_own_random_numbers(impl, tmp_path):
    """fork reseeds the random module in each child: Monte Carlo tasks in different workers
    must not draw the same numbers."""
    from helpers_tasks import meet_then_random, random_bits
    with impl.pool(2) as pool:
        draws = pool.map(functools.partial(meet_then_random, str(tmp_path)), [2, 2], 1)
    assert draws[0] != draws[1]
    with impl.pool(1, maxtasksperchild=1) as pool:  # every task in a fresh worker
        draws = [pool.apply(random_bits) for _ in range(3)]
    assert len(set(draws)) == 3


def test_more_processes_than_cores(impl, tmp_path):
    n = (os.cpu_count() or 1) + 2
    with impl.pool(n) as pool:
        pids = pool.map(functools.partial(meet, str(tmp_path)), [n] * n, 1)
    assert len(set(pids)) == n


def test_close_lets_a_running_imap_finish(impl, gate):
    pool = impl.pool(2)
    it = pool.imap(functools.partial(gated_square, gate=gate), range(10), 1)
    assert next(it) == 0
    pool.close()
    open_gate(gate)
    assert list(it) == [x * x for x in range(1, 10)]
    pool.join()


@pytest.mark.timeout(30)
def test_terminate_wakes_callers_waiting_in_other_threads(allcores_impl, tmp_path):
    """No call waits forever: a thread blocked in map() or get() when another thread terminates
    the pool gets an exception (multiprocessing leaves it hanging)."""
    import threading
    import time
    from helpers_tasks import started_then_sleep
    running = str(tmp_path)
    pool = allcores_impl.pool(2)
    outcomes = []

    def wait_map():
        try:
            outcomes.append(("map", pool.map(functools.partial(started_then_sleep, running),
                                             range(4), 1)))
        except BaseException as exc:  # what it raised is the outcome
            outcomes.append(("map", exc))

    def wait_get():
        # It registers its start too: whichever tasks the two workers take first, both are busy
        # once two workers' files exist (the map's other items wait behind them).
        try:
            outcomes.append(("get", pool.apply_async(started_then_sleep, (running, "get")).get()))
        except BaseException as exc:
            outcomes.append(("get", exc))

    threads = [threading.Thread(target=wait_map), threading.Thread(target=wait_get)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(os.listdir(running)) == 2, what="the tasks' start")
        time.sleep(0.1)  # lets both threads reach their wait
    finally:
        pool.terminate()
    pool.join()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), "a caller still waits after terminate()"
    assert sorted(name for name, _ in outcomes) == ["get", "map"]
    assert all(isinstance(value, BaseException) for _, value in outcomes)
