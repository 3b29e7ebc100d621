"""As multiprocessing.Pool, a result is ready only once its callback has run: get(), wait() and
ready() see the callback's effects even when the callback is slow and the caller's thread runs
in parallel with the one delivering results (a free-threaded build, or a callback that sleeps).
A task that is done before its callback is registered has it run at once, in the caller's
thread: the tests whose callback blocks give their task time (SLOW) to be still running then."""
import multiprocessing
import threading
import time

import pytest

import allcores

SLOW = 0.5


@pytest.fixture(scope="module", params=["process", "thread"])
def pool(request):
    with allcores.Pool(2, backend=request.param) as p:
        yield p


def _slow(got, started=None):
    def callback(value):
        if started is not None:
            started.set()
        threading.Event().wait(0.3)  # the caller's get() would win here
        got.append(value)
    return callback


def test_get_returns_after_a_slow_callback(pool):
    got = []
    r = pool.apply_async(abs, (-3,), callback=_slow(got))
    assert r.get(timeout=60) == 3
    assert got == [3]


def test_a_task_error_is_raised_after_a_slow_error_callback(pool):
    got = []
    r = pool.apply_async(int, ("x",), error_callback=_slow(got))
    with pytest.raises(ValueError):
        r.get(timeout=60)
    assert len(got) == 1 and isinstance(got[0], ValueError)


def test_wait_and_ready_wait_for_the_callback(pool):
    got, started = [], threading.Event()
    r = pool.map_async(time.sleep, [SLOW, SLOW], callback=_slow(got, started))
    assert started.wait(60)
    assert not r.ready()  # the callback is still running
    r.wait(60)
    assert r.ready() and got == [[None, None]]


def test_get_times_out_while_the_callback_runs(pool):
    started, release = threading.Event(), threading.Event()

    def callback(value):
        started.set()
        release.wait(60)
    r = pool.apply_async(time.sleep, (SLOW,), callback=callback)
    assert started.wait(60)
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(timeout=0.05)
    release.set()
    assert r.get(timeout=60) is None


def test_a_callback_may_get_its_own_result(pool):
    seen = []
    box = {}
    made = threading.Event()

    def callback(value):
        made.wait(60)
        seen.append(box["r"].get(timeout=5))
    box["r"] = r = pool.apply_async(time.sleep, (SLOW,), callback=callback)
    made.set()
    assert r.get(timeout=60) is None
    assert seen == [None]
