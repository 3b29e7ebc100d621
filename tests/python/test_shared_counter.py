"""Counter, Value and Array: the seeds' counter race, atomicity across processes, the API, and
passing them to pool tasks and spawn children by reference."""
import ctypes
import multiprocessing as mp
import os
import pickle

import pytest

import allcores

pytestmark = [
    pytest.mark.timeout(120),
    # These tests fork on purpose; another test's pool may have left threads running, about
    # which Python 3.12+ warns at every fork.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

FORK = mp.get_context("fork")
N = 1_000_000


def _add_counter(counter, n):
    for _ in range(n):
        counter += 1


def _add_value_locked(value, n):
    for _ in range(n):
        with value.get_lock():
            value.value += 1


def _add_value_unlocked(value, n):
    for _ in range(n):
        value.value += 1


def _run_two(target, obj, n):
    procs = [FORK.Process(target=target, args=(obj, n)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0]


def test_seeds_counter_two_processes_million_each():
    """The seeds' scenario: 2 processes x 1,000,000 increments give exactly 2,000,000."""
    counter = allcores.Counter()
    _run_two(_add_counter, counter, N)
    assert counter.value == 2 * N


def test_seeds_value_under_its_lock_two_processes_million_each():
    value = allcores.Value("q", 0)
    _run_two(_add_value_locked, value, N)
    assert value.value == 2 * N


def test_seeds_multiprocessing_value_without_lock_loses_updates(capsys):
    """Shown, not asserted: how many updates an unlocked multiprocessing.Value loses depends on
    scheduling (on one core it may lose none)."""
    value = mp.Value("q", 0, lock=False)
    _run_two(_add_value_unlocked, value, 200_000)
    with capsys.disabled():
        print(f"\n  multiprocessing.Value without a lock: {value.value} of 400000 "
              f"({400000 - value.value} updates lost)")
    assert 0 < value.value <= 400_000


def test_counter_api():
    c = allcores.Counter(10)
    c += 5
    c -= 2
    assert c.value == 13 and int(c) == 13 and repr(c) == "Counter(13)"
    assert c.add() == 14 and c.add(-4) == 10
    assert c.compare_exchange(10, 100) is True
    assert c.compare_exchange(10, 200) is False and c.value == 100
    assert c.exchange(7) == 100 and c.value == 7
    c.value = -3
    assert c.value == -3
    assert [0, 1, 2, 3][c.add(6)] == 3  # usable as an index
    with pytest.raises(OverflowError):
        c.add(2**64)
    with pytest.raises(TypeError):
        c += 1.5


def test_counter_wraps_around_at_64_bits():
    c = allcores.Counter(2**63 - 1)
    assert c.add(1) == -(2**63)


def test_counter_keeps_its_name_bound_in_a_container():
    box = {"c": allcores.Counter()}
    before = box["c"]
    box["c"] += 1
    assert box["c"] is before and before.value == 1


def test_compare_exchange_is_atomic_across_processes():
    """A CAS loop from two processes loses no update."""
    c = allcores.Counter()

    def cas_add(counter, n):
        for _ in range(n):
            while True:
                v = counter.value
                if counter.compare_exchange(v, v + 1):
                    break

    _run_two(cas_add, c, 100_000)
    assert c.value == 200_000


def test_value_api_and_typecodes():
    v = allcores.Value("d", 1.5)
    assert v.value == 1.5
    v.value = 2.25
    assert v.get_obj().value == 2.25
    assert isinstance(v.get_lock(), allcores.RLock)
    with v:
        v.value *= 2  # the lock is reentrant: .value takes it again inside
    assert v.value == 4.5
    assert allcores.Value(ctypes.c_uint8, 255).value == 255
    assert allcores.Value("c", b"x").value == b"x"
    raw = allcores.Value("i", 3, lock=False)
    raw.value += 1
    assert raw.value == 4
    with pytest.raises(AttributeError):
        raw.get_lock()
    with pytest.raises(TypeError):
        allcores.Value(object, 1)


def test_values_can_share_one_lock():
    lock = allcores.Lock()
    a, b = allcores.Value("i", 1, lock=lock), allcores.Value("i", 2, lock=lock)
    assert a.get_lock() is lock and b.get_lock() is lock
    a2 = pickle.loads(pickle.dumps(a))
    with a2.get_lock():
        assert lock.locked()


def test_array_api():
    arr = allcores.Array("i", [1, 2, 3, 4])
    assert len(arr) == 4 and arr[:] == [1, 2, 3, 4] and list(arr) == [1, 2, 3, 4]
    arr[1:3] = [20, 30]
    arr[-1] = 40
    assert arr[:] == [1, 20, 30, 40]
    zeros = allcores.Array("d", 3)
    assert zeros[:] == [0.0, 0.0, 0.0]
    s = allcores.Array("c", b"hello")
    assert s.value == b"hello" and s.raw == b"hello"
    s.value = b"hi"
    assert s.value == b"hi"
    with arr.get_lock():
        arr[0] += 1
    assert arr[0] == 2
    assert allcores.Array("i", 2, lock=False)[:] == [0, 0]


def test_value_and_array_seen_by_fork_child():
    v, arr = allcores.Value("i", 0), allcores.Array("d", 4)
    pid = os.fork()
    if pid == 0:
        v.value = 42
        arr[:] = [1.0, 2.0, 3.0, 4.0]
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert v.value == 42 and arr[:] == [1.0, 2.0, 3.0, 4.0]


# --- by reference: pickling, pool tasks, spawn children ---------------------------------------

def _task_add(counter, value, arr, i):
    counter += 1
    with value.get_lock():
        value.value += i
    arr[i] = i * i
    return os.getpid()


def test_pool_tasks_share_counter_value_and_array():
    counter, value, arr = allcores.Counter(), allcores.Value("q", 0), allcores.Array("q", 50)
    with allcores.Pool(2) as pool:
        pids = pool.starmap(_task_add, [(counter, value, arr, i) for i in range(50)])
    assert os.getpid() not in pids
    assert counter.value == 50
    assert value.value == sum(range(50))
    assert arr[:] == [i * i for i in range(50)]


def test_objects_created_after_the_pool_started_reach_its_workers():
    """The workers are forked before these objects exist: they map them by reference."""
    with allcores.Pool(2) as pool:
        pool.map(abs, range(4))  # workers exist
        counter = allcores.Counter()
        pool.starmap(_task_add, [(counter, allcores.Value("q", 0), allcores.Array("q", 8), i)
                                 for i in range(8)])
    assert counter.value == 8


def test_stdlib_pool_tasks_get_them_too():
    counter = allcores.Counter()
    with FORK.Pool(2) as pool:
        pool.starmap(_add_counter, [(counter, 1000)] * 4)
    assert counter.value == 4000


def test_pickle_is_a_small_reference():
    for obj in (allcores.Counter(), allcores.Value("i", 1), allcores.Array("d", 100_000),
                allcores.Lock(), allcores.Queue()):
        blob = pickle.dumps(obj)
        assert len(blob) < 400
        pickle.loads(blob)  # a pickle never loaded would keep its pin (see test_shared_lifetime)


def test_unpickled_in_the_same_process_shares_the_mapping():
    c = allcores.Counter()
    c2 = pickle.loads(pickle.dumps(c))
    c2 += 5
    assert c.value == 5 and c2._segment is c._segment
    assert c._segment._pins == 0


def _spawn_child(counter, value):
    counter += 7
    value.value = 99


def test_spawn_child_opens_them_by_reference():
    counter, value = allcores.Counter(), allcores.Value("i", 0)
    p = mp.get_context("spawn").Process(target=_spawn_child, args=(counter, value))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert counter.value == 7 and value.value == 99


def _submit_add(counter, n):
    for _ in range(n):
        counter += 1
    return counter.value


def test_executor_tasks_and_the_thread_backend_share_a_counter():
    counter = allcores.Counter()
    with allcores.ProcessPoolExecutor(2) as ex:
        futures = [ex.submit(_submit_add, counter, 1000) for _ in range(4)]
        assert all(f.result() >= 1000 for f in futures)
    with allcores.Pool(2, backend="thread") as pool:
        pool.starmap(_add_counter, [(counter, 1000)] * 4)
    assert counter.value == 8000
