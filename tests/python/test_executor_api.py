"""ProcessPoolExecutor: submit, map (timeout, chunksize, several iterables), shutdown (wait,
cancel_futures), the context manager, initializer, max_tasks_per_child, and its futures with
concurrent.futures.wait / as_completed and asyncio.wrap_future.

Each test runs against allcores.ProcessPoolExecutor and concurrent.futures.ProcessPoolExecutor.
"""
import asyncio
import concurrent.futures as cf
import functools
import os
import threading
from concurrent.futures.process import BrokenProcessPool

import pytest

from helpers_tasks import (add, add3, fail_on, gated_square, init_fail, init_state, kwargs_echo,
                           make_bytes, open_gate, pid_of, raise_value_error, read_state,
                           signal_then_wait, sleep_then, square, wait_for_file,
                           wait_until)


@pytest.fixture
def ex(impl):
    e = impl.executor(2)
    yield e
    e.shutdown(wait=True, cancel_futures=True)


def test_is_a_concurrent_futures_executor(impl, ex):
    assert isinstance(ex, cf.Executor)


def test_submit_returns_a_future(ex):
    fut = ex.submit(add, 2, 3)
    assert isinstance(fut, cf.Future)
    assert fut.result(timeout=30) == 5
    assert fut.done() and not fut.cancelled() and fut.exception() is None


def test_submit_with_kwargs(ex):
    assert ex.submit(add3, 1, 2, c=3).result(30) == 6
    assert ex.submit(kwargs_echo, 1, key="v").result(30) == ((1,), {"key": "v"})


def test_submit_runs_in_another_process(ex):
    assert ex.submit(pid_of).result(30) != os.getpid()


def test_future_exception_and_result(ex):
    fut = ex.submit(raise_value_error, 3)
    exc = fut.exception(timeout=30)
    assert isinstance(exc, ValueError) and str(exc) == "bad value 3"
    with pytest.raises(ValueError, match="bad value 3"):
        fut.result()


def test_result_timeout_raises_timeout_error(ex, gate):
    fut = ex.submit(wait_for_file, gate)
    with pytest.raises(cf.TimeoutError):
        fut.result(timeout=0.05)
    with pytest.raises(TimeoutError):  # the builtin: the same class since Python 3.11
        fut.exception(timeout=0.05)
    open_gate(gate)
    assert fut.result(timeout=30) == gate


def test_add_done_callback_runs_in_the_parent(ex):
    got = []
    fut = ex.submit(square, 6)
    fut.add_done_callback(lambda f: got.append((f.result(), os.getpid())))
    fut.result(30)
    cf.wait([fut])
    wait_until(lambda: got, what="the done callback")
    assert got == [(36, os.getpid())]


def test_many_submits(ex):
    futs = [ex.submit(square, i) for i in range(2000)]
    assert [f.result(30) for f in futs] == [i * i for i in range(2000)]


def test_results_of_many_sizes(ex):
    sizes = [0, 10, 2**16, 3 * 2**20 + 5]
    futs = [ex.submit(make_bytes, n) for n in sizes]
    assert [f.result(30) for f in futs] == [b"\xab" * n for n in sizes]


def test_map_in_order(ex):
    assert list(ex.map(square, range(30))) == [x * x for x in range(30)]


@pytest.mark.parametrize("chunksize", [1, 4, 100])
def test_map_chunksize(ex, chunksize):
    assert list(ex.map(square, range(50), chunksize=chunksize)) == [x * x for x in range(50)]


def test_map_chunksize_must_be_positive(ex):
    with pytest.raises(ValueError):
        ex.map(square, range(3), chunksize=0)


def test_map_zips_several_iterables(ex):
    assert list(ex.map(add, [1, 2, 3], [10, 20, 30, 40])) == [11, 22, 33]
    assert list(ex.map(pow, range(4), [2] * 4)) == [0, 1, 4, 9]


def test_map_raises_at_the_failing_position(ex):
    it = ex.map(functools.partial(fail_on, bad=2), range(5))
    assert next(it) == 0
    assert next(it) == 1
    with pytest.raises(ValueError, match="item 2 is bad"):
        next(it)


def test_map_timeout(ex, gate):
    it = ex.map(functools.partial(gated_square, gate=gate), range(4), timeout=0.2)
    with pytest.raises(cf.TimeoutError):
        list(it)
    open_gate(gate)


def test_map_ten_thousand_tiny_tasks(ex):
    n = 10_000
    assert sum(ex.map(square, range(n), chunksize=100)) == sum(x * x for x in range(n))


def test_map_of_empty_input(ex):
    assert list(ex.map(square, [])) == []


def test_wait_all_completed(ex):
    futs = [ex.submit(sleep_then, i, 0.01 * i) for i in range(6)]
    done, not_done = cf.wait(futs, timeout=30)
    assert done == set(futs) and not not_done
    assert sorted(f.result() for f in done) == list(range(6))


def test_wait_first_completed_and_first_exception(ex, gate):
    blocked = ex.submit(wait_for_file, gate)
    quick = ex.submit(square, 3)
    done, not_done = cf.wait([blocked, quick], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert quick in done and blocked in not_done
    bad = ex.submit(raise_value_error)
    done, not_done = cf.wait([blocked, bad], timeout=30, return_when=cf.FIRST_EXCEPTION)
    assert bad in done and blocked in not_done
    open_gate(gate)
    assert blocked.result(30) == gate


def test_as_completed_yields_every_future(ex, gate):
    blocked = ex.submit(wait_for_file, gate)
    others = [ex.submit(square, i) for i in range(5)]
    order = []
    for fut in cf.as_completed(others + [blocked], timeout=30):
        order.append(fut)
        if len(order) == 5:
            open_gate(gate)
    assert set(order) == set(others) | {blocked}
    assert order[-1] is blocked


def test_asyncio_wrap_future(ex):
    async def main():
        loop = asyncio.get_running_loop()
        a = asyncio.wrap_future(ex.submit(square, 7))
        b = loop.run_in_executor(ex, add, 1, 2)
        c = asyncio.wrap_future(ex.submit(raise_value_error, 0))
        results = await asyncio.gather(a, b, c, return_exceptions=True)
        return results

    r = asyncio.run(main())
    assert r[:2] == [49, 3]
    assert isinstance(r[2], ValueError)


def test_shutdown_wait_completes_pending_work(impl):
    ex = impl.executor(1)
    futs = [ex.submit(sleep_then, i, 0.02) for i in range(5)]
    ex.shutdown(wait=True)
    assert all(f.done() for f in futs)
    assert [f.result() for f in futs] == list(range(5))


def test_shutdown_without_wait_still_runs_pending_work(impl):
    ex = impl.executor(1)
    futs = [ex.submit(sleep_then, i, 0.02) for i in range(3)]
    ex.shutdown(wait=False)
    assert [f.result(30) for f in futs] == [0, 1, 2]
    ex.shutdown(wait=True)  # reaps the workers; a second shutdown is harmless


def test_shutdown_cancel_futures(impl, gate, tmp_path):
    started = str(tmp_path / "started")
    ex = impl.executor(1)
    running = ex.submit(signal_then_wait, started, gate)
    wait_until(lambda: os.path.exists(started), what="the first task's start")
    pending = [ex.submit(square, i) for i in range(20)]

    def open_once_cancelled():  # the running task ends only after shutdown cancelled the rest
        try:
            wait_until(pending[-1].cancelled, what="the cancellation of the pending futures")
        finally:  # if it never comes, the asserts below say so
            open_gate(gate)

    opener = threading.Thread(target=open_once_cancelled)
    opener.start()
    ex.shutdown(wait=True, cancel_futures=True)
    opener.join(30)
    assert running.result(0) == gate
    assert pending[-1].cancelled()
    cancelled = [f for f in pending if f.cancelled()]
    assert len(cancelled) >= 15  # the stdlib may have moved a couple into its call queue already
    for i, f in enumerate(pending):
        assert f.done()
        if not f.cancelled():
            assert f.result() == i * i


def test_submit_after_shutdown_raises_runtime_error(impl):
    ex = impl.executor(1)
    ex.shutdown()
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)
    with pytest.raises(RuntimeError):
        ex.map(square, [1])


def test_context_manager_waits_for_pending_work(impl):
    with impl.executor(2) as ex:
        futs = [ex.submit(sleep_then, i, 0.2) for i in range(4)]
    assert all(f.done() for f in futs)
    assert [f.result() for f in futs] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def test_future_cancel_of_a_queued_task(impl, gate):
    with impl.executor(1) as ex:
        blocker = ex.submit(wait_for_file, gate)
        queued = [ex.submit(square, i) for i in range(10)]
        assert queued[-1].cancel()
        assert queued[-1].cancelled()
        with pytest.raises(cf.CancelledError):
            queued[-1].result()
        open_gate(gate)
        assert blocker.result(30) == gate
        assert [f.result(30) for f in queued[:-1]] == [i * i for i in range(9)]


def test_initializer_and_initargs(impl):
    with impl.executor(2, initializer=init_state, initargs=("ex", 1)) as ex:
        results = list(ex.map(read_state, range(6)))
    assert results == [("ex", 1, True)] * 6


def test_failing_initializer_breaks_the_executor(impl):
    ex = impl.executor(1, initializer=init_fail, initargs=("cannot init",))
    try:
        # submit() itself raises once the executor knows it is broken; the future fails before
        with pytest.raises(BrokenProcessPool):
            ex.submit(square, 2).result(timeout=30)
        with pytest.raises(BrokenProcessPool):
            ex.submit(square, 3).result(timeout=30)
    finally:
        ex.shutdown(wait=True)


def test_max_tasks_per_child(impl):
    with impl.executor(1, max_tasks_per_child=2) as ex:
        pids = [ex.submit(pid_of).result(30) for _ in range(6)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
    assert len(set(pids)) == 3


def test_max_tasks_per_child_must_be_a_positive_int(impl):
    with pytest.raises(ValueError):
        impl.executor(1, max_tasks_per_child=0)
    with pytest.raises(TypeError):
        impl.executor(1, max_tasks_per_child=1.5)


def test_max_workers_must_be_positive(impl):
    with pytest.raises(ValueError):
        impl.executor(0)


def test_done_callback_can_submit_more_work(ex):
    follow_ups = []
    submitted = threading.Event()

    def chain(fut):
        follow_ups.append(ex.submit(square, fut.result()))
        submitted.set()

    ex.submit(square, 2).add_done_callback(chain)
    assert submitted.wait(30)
    assert follow_ups[0].result(30) == 16


def test_running_future_cannot_be_cancelled(ex, gate, tmp_path):
    started = str(tmp_path / "started")
    fut = ex.submit(signal_then_wait, started, gate)
    wait_until(lambda: os.path.exists(started), what="the task's start")
    assert fut.running()
    assert not fut.cancel()
    assert not fut.cancelled()
    open_gate(gate)
    assert fut.result(30) == gate
    assert not fut.running()


@pytest.mark.parametrize("n", [10, 2**20])
def test_numpy_arrays_are_writable_on_both_sides(ex, n):
    np = pytest.importorskip("numpy")
    from helpers_tasks import add_one_in_place, zeros
    assert ex.submit(add_one_in_place, np.zeros(n)).result(30) == float(n)
    result = ex.submit(zeros, n).result(30)
    result += 1
    assert float(result.sum()) == float(n)


def test_submits_from_several_threads_at_once(ex):
    def work(k):
        futs = [ex.submit(add, k, i) for i in range(200)]
        return [f.result(30) for f in futs]

    with cf.ThreadPoolExecutor(4) as threads:
        results = list(threads.map(work, range(4), timeout=50))
    assert results == [[k + i for i in range(200)] for k in range(4)]
