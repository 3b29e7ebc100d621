"""Pool's asynchronous calls: apply_async, map_async, starmap_async and their AsyncResult
(get with a timeout, ready, successful, wait) and callbacks.

Each test runs against allcores.Pool and multiprocessing.Pool (fork).
"""
import functools
import multiprocessing
import os
import threading

import pytest

from helpers_tasks import (add, fail_on, gated_square, open_gate, raise_value_error, sleep_then,
                           square, wait_for_file, wait_until)


@pytest.fixture
def pool(impl):
    p = impl.pool(2)
    yield p
    p.terminate()
    p.join()


def test_apply_async_get(pool):
    r = pool.apply_async(add, (2, 3))
    assert r.get(timeout=30) == 5
    assert r.ready() and r.successful()
    assert r.get() == 5  # get() can be called again


def test_get_timeout_raises_multiprocessing_timeout_error(pool, gate):
    r = pool.apply_async(wait_for_file, (gate,))
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(timeout=0.05)
    assert not r.ready()
    open_gate(gate)
    assert r.get(timeout=30) == gate


def test_successful_before_ready_raises_value_error(pool, gate):
    r = pool.apply_async(wait_for_file, (gate,))
    with pytest.raises(ValueError):
        r.successful()
    open_gate(gate)
    r.wait(30)
    assert r.ready() and r.successful()


def test_wait_with_timeout_returns_without_result(pool, gate):
    r = pool.apply_async(wait_for_file, (gate,))
    assert r.wait(0.05) is None
    assert not r.ready()
    open_gate(gate)
    assert r.wait(30) is None
    assert r.ready()


def test_failed_async_result(pool):
    r = pool.apply_async(raise_value_error, (7,))
    r.wait(30)
    assert r.ready()
    assert not r.successful()
    with pytest.raises(ValueError, match="bad value 7"):
        r.get(timeout=30)


def test_map_async_get(pool):
    r = pool.map_async(square, range(10))
    assert r.get(timeout=30) == [x * x for x in range(10)]
    assert r.successful()


def test_starmap_async_get(pool):
    r = pool.starmap_async(add, [(1, 1), (2, 2)], 1)
    assert r.get(timeout=30) == [2, 4]


def test_map_async_get_timeout(pool, gate):
    r = pool.map_async(functools.partial(gated_square, gate=gate), range(4), 1)
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(0.05)
    open_gate(gate)
    assert r.get(30) == [0, 1, 4, 9]


def test_many_async_results_all_complete(pool):
    results = [pool.apply_async(square, (i,)) for i in range(500)]
    assert [r.get(timeout=30) for r in results] == [i * i for i in range(500)]


def test_apply_async_callback_runs_in_the_parent(pool):
    got = []
    done = threading.Event()

    def cb(value):
        got.append((value, os.getpid()))
        done.set()

    r = pool.apply_async(square, (9,), callback=cb)
    assert r.get(timeout=30) == 81
    assert done.wait(30)
    assert got == [(81, os.getpid())]


def test_callback_has_run_when_get_returns(pool):
    """multiprocessing calls the callback before it marks the result ready."""
    got = []
    r = pool.apply_async(square, (4,), callback=got.append)
    r.get(timeout=30)
    assert got == [16]


def test_error_callback_gets_the_exception(pool):
    got = []
    errs = []
    r = pool.apply_async(raise_value_error, (1,), callback=got.append,
                         error_callback=errs.append)
    with pytest.raises(ValueError):
        r.get(timeout=30)
    assert got == []
    assert len(errs) == 1
    assert isinstance(errs[0], ValueError) and "bad value 1" in str(errs[0])


def test_error_callback_not_called_on_success(pool):
    got, errs = [], []
    r = pool.apply_async(square, (3,), callback=got.append, error_callback=errs.append)
    r.get(timeout=30)
    assert got == [9] and errs == []


def test_map_async_callback_gets_the_whole_list(pool):
    got = []
    r = pool.map_async(square, range(6), callback=got.append)
    r.get(timeout=30)
    wait_until(lambda: got, what="the callback")
    assert got == [[0, 1, 4, 9, 16, 25]]


def test_map_async_error_callback(pool):
    got, errs = [], []
    r = pool.map_async(functools.partial(fail_on, bad=3), range(6), 1,
                       callback=got.append, error_callback=errs.append)
    with pytest.raises(ValueError, match="item 3 is bad"):
        r.get(timeout=30)
    wait_until(lambda: errs, what="the error callback")
    assert got == []
    assert isinstance(errs[0], ValueError)


def test_callbacks_for_many_results(pool):
    got = []
    lock = threading.Lock()

    def cb(v):
        with lock:
            got.append(v)

    results = [pool.apply_async(square, (i,), callback=cb) for i in range(100)]
    for r in results:
        r.wait(30)
    wait_until(lambda: len(got) == 100, what="100 callbacks")
    assert sorted(got) == [i * i for i in range(100)]


def test_callback_that_raises_does_not_lose_later_results(impl, pool):
    if impl.name == "stdlib":
        pytest.skip("a raising callback kills multiprocessing's result thread: later results hang")
    def bad_cb(_):
        raise RuntimeError("callback failed")

    pool.apply_async(square, (2,), callback=bad_cb).wait(30)
    assert pool.apply(square, (5,)) == 25


def test_async_results_of_slow_and_fast_tasks(pool):
    slow = pool.apply_async(sleep_then, ("slow", 0.3))
    fast = pool.apply_async(square, (3,))
    assert fast.get(30) == 9
    assert slow.get(30) == "slow"


def test_callback_can_submit_more_work(pool):
    """A callback that queues a follow-up task (without waiting for it) must not deadlock."""
    follow_ups = []
    submitted = threading.Event()

    def chain(value):
        follow_ups.append(pool.apply_async(square, (value,)))
        submitted.set()

    pool.apply_async(square, (3,), callback=chain).wait(30)
    assert submitted.wait(30)
    assert follow_ups[0].get(30) == 81


def test_imap_next_with_timeout(pool, gate):
    it = pool.imap(functools.partial(gated_square, gate=gate), [1, 2], 1)
    assert it.next(timeout=30) == 1
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0.05)
    open_gate(gate)
    assert it.next(timeout=30) == 4
    with pytest.raises(StopIteration):
        it.next(timeout=30)


def test_exception_attributes_survive(pool):
    from helpers_tasks import CustomError, raise_with_attribute
    with pytest.raises(CustomError) as info:
        pool.apply_async(raise_with_attribute, (17,)).get(30)
    assert info.value.code == 17


def test_an_exception_returned_not_raised_is_a_value(pool):
    from helpers_tasks import make_exception
    value = pool.apply_async(make_exception, ("returned",)).get(30)
    assert type(value) is ValueError and str(value) == "returned"
    assert pool.map(make_exception, ["a"])[0].args == ("a",)


def test_get_of_a_failed_result_raises_every_time(pool):
    r = pool.apply_async(raise_value_error, (2,))
    for _ in range(2):
        with pytest.raises(ValueError):
            r.get(30)


def test_callbacks_have_all_run_when_join_returns(impl):
    """The classic pattern: apply_async with callback=results.append, then close() and join(),
    then read results."""
    results, errors = [], []
    pool = impl.pool(2)
    for i in range(50):
        pool.apply_async(sleep_then, (i, 0.002), callback=results.append)
    pool.apply_async(raise_value_error, (0,), error_callback=errors.append)
    pool.map_async(square, range(5), callback=results.append)
    pool.close()
    pool.join()
    assert sorted(r for r in results if not isinstance(r, list)) == list(range(50))
    assert [0, 1, 4, 9, 16] in results
    assert len(errors) == 1
