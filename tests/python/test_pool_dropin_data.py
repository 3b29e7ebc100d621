"""What a program gets back is what the standard library would give: no result computed from an
older state of a callable, no result kept alive by the pool once handed over, no future lost to
a callback that raises, every item taken from a map's input returned, and task exceptions that
arrive as themselves. Tests taking `impl` run against the standard library too.
"""
import concurrent.futures as cf
import functools
import gc
import logging
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
import weakref

import pytest

import allcores
from allcores import _serialize as ser
from helpers_tasks import square, wait_until

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


class Scale:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return self.k * x


class Box:
    """A result that can be watched with a weak reference."""

    def __init__(self, x):
        self.x = x


def boxed(x):
    return Box(x)


def total_plus(values, x):
    return sum(values) + x


def blob_len(obj, _=None):
    return len(obj.data)


class Holder:
    """A callable object with a big state."""

    def __init__(self, n):
        self.data = bytearray(n)

    def __call__(self, x):
        return len(self.data) + x


class SayWhen(Exception):
    pass


def failing_input(n, bad, taken=None):
    """Yields 0..n-1, raising SayWhen instead of item `bad`."""
    for i in range(n):
        if i == bad:
            raise SayWhen(f"input failed at {i}")
        if taken is not None:
            taken.append(i)
        yield i


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


class DeepError(Exception):
    pass


def raise_deep(_=None):
    exc = DeepError("too deep to pickle")
    exc.payload = nested(200_000)
    raise exc


class TwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(a, b)


def raise_deep_two_args(_=None):
    exc = TwoArgs("a", "b")
    exc.payload = nested(200_000)
    raise exc


def recurse(n):
    return recurse(n + 1)


@pytest.fixture
def executor(impl):
    ex = impl.executor(2)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def pool(impl):
    p = impl.pool(2)
    yield p
    p.terminate()
    p.join()


# -- a callable changed between two calls runs as it is now -------------------------------------

def _run_on(kind, ex, pool, fn, arg):
    if kind == "submit":
        return ex.submit(fn, arg).result(60)
    if kind == "executor.map":
        return list(ex.map(fn, [arg], timeout=60))[0]
    if kind == "apply_async":
        return pool.apply_async(fn, (arg,)).get(60)
    return pool.map(fn, [arg])[0]


CALLS = ["submit", "executor.map", "apply_async", "pool.map"]


@pytest.mark.parametrize("kind", CALLS)
def test_a_callable_object_changed_between_calls(impl, kind):
    with impl.executor(2) as ex, impl.pool(2) as pool:
        s = Scale(2)
        assert _run_on(kind, ex, pool, s, 10) == 20
        s.k = 3
        assert _run_on(kind, ex, pool, s, 10) == 30


@pytest.mark.parametrize("kind", CALLS)
def test_a_partial_over_a_list_changed_between_calls(impl, kind):
    with impl.executor(2) as ex, impl.pool(2) as pool:
        values = [1, 2]
        fn = functools.partial(total_plus, values)
        assert _run_on(kind, ex, pool, fn, 0) == 3
        values.append(10)
        assert _run_on(kind, ex, pool, fn, 0) == 13


@pytest.mark.parametrize("kind", CALLS)
def test_a_closure_whose_cell_changes(allcores_impl, kind):
    with allcores_impl.executor(2) as ex, allcores_impl.pool(2) as pool:
        k = 2

        def times_k(x):
            return k * x

        assert _run_on(kind, ex, pool, times_k, 10) == 20
        k = 5
        assert _run_on(kind, ex, pool, times_k, 10) == 50


@pytest.mark.parametrize("kind", CALLS)
def test_a_function_whose_defaults_change(allcores_impl, kind):
    with allcores_impl.executor(2) as ex, allcores_impl.pool(2) as pool:
        def times(x, k=2):
            return k * x

        assert _run_on(kind, ex, pool, times, 10) == 20
        times.__defaults__ = (7,)
        assert _run_on(kind, ex, pool, times, 10) == 70
        fn = lambda x, k=2: k * x  # noqa: E731
        assert _run_on(kind, ex, pool, fn, 1) == 2
        fn.__defaults__ = (4,)
        assert _run_on(kind, ex, pool, fn, 1) == 4


def test_a_callable_object_a_task_changes_starts_afresh_at_each_call(impl):
    # The worker unpickles a callable sent by value for every task: state a task left in its
    # copy is not seen by the next task, as with the standard library.
    with impl.executor(1) as ex:
        counter = Counting()
        assert [ex.submit(counter).result(60) for _ in range(3)] == [1, 1, 1]


class Counting:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return self.n


def test_functions_of_main_are_sent_as_they_are_now(tmp_path):
    script = tmp_path / "main_functions.py"
    script.write_text(textwrap.dedent("""
        import functools
        import allcores

        def early(x, k=2):
            return k * x

        class Early:
            def __init__(self, k):
                self.k = k

            def __call__(self, x):
                return self.k * x

        if __name__ == "__main__":
            with allcores.ProcessPoolExecutor(2) as ex:
                # Bound in __main__ when the workers' template was forked: sent by name, as the
                # standard library sends it, and the worker runs its own copy.
                print(ex.submit(early, 10).result(60), ex.submit(early, 1).result(60))

                def late(x, k=2):
                    return k * x
                print(ex.submit(late, 10).result(60))
                late.__defaults__ = (3,)
                print(ex.submit(late, 10).result(60))

                def early(x):  # redefined after the fork: the new one runs
                    return -x
                print(ex.submit(early, 10).result(60))

                # Objects naming what the workers' __main__ lacks go by value.
                class Late:
                    def __init__(self, k):
                        self.k = k

                    def __call__(self, x):
                        return self.k * x
                late_obj = Late(4)
                print(ex.submit(late_obj, 10).result(60))
                late_obj.k = 5
                print(ex.submit(late_obj, 10).result(60))
                print(ex.submit(functools.partial(late, k=6), 10).result(60))
                early_obj = Early(7)  # its class is in the workers' __main__: plain pickle
                print(ex.submit(early_obj, 10).result(60))
                early_obj.k = 8
                print(ex.submit(early_obj, 10).result(60))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["20", "2", "20", "30", "-10", "40", "50", "60", "70", "80"]


def test_module_functions_still_travel_by_reference_from_the_cache():
    first = ser.dumps_callable(square)
    assert type(first) is bytes and b"square" in first and len(first) < 100
    assert ser.dumps_callable(square) is first
    assert type(ser.dumps_callable(len)) is bytes
    assert type(ser.dumps_callable(Scale(2))) is tuple  # by value: pickled at every call
    assert type(ser.dumps_callable(functools.partial(square))) is tuple


def test_a_big_callable_object_is_freed_once_the_program_drops_it(allcores_impl):
    with allcores_impl.executor(2) as ex, allcores_impl.pool(2) as pool:
        holder = Holder(4 << 20)
        ref = weakref.ref(holder)
        assert ex.submit(holder, 1).result(60) == (4 << 20) + 1
        assert pool.apply_async(holder, (2,)).get(60) == (4 << 20) + 2
        assert pool.map(holder, [3]) == [(4 << 20) + 3]
        del holder
        gc.collect()
        assert ref() is None
        assert all(type(fn) is not Holder for fn, _ in ser._FN_CACHE.values())


def test_joblib_batches_are_not_kept_alive():
    joblib = pytest.importorskip("joblib")
    import allcores.joblib_backend  # noqa: F401 - registers "allcores"

    data = Holder(2 << 20)
    ref = weakref.ref(data)
    try:
        with joblib.parallel_config(backend="allcores", n_jobs=2):
            out = joblib.Parallel()(joblib.delayed(blob_len)(data) for _ in range(4))
    finally:
        allcores.joblib_backend.close_pools()
    assert out == [2 << 20] * 4
    del data
    gc.collect()
    assert ref() is None


# -- results handed over are not kept alive ------------------------------------------------------

def _alive(refs):
    return [i for i, r in enumerate(refs) if r() is not None]


def _check_released(results, n):
    refs = []
    for value in results:
        refs.append(weakref.ref(value))
        del value
        alive = _alive(refs)
        if alive and FREE_THREADED:
            # A free-threaded build frees an object made by another thread (here the collector
            # that unpickled it) once that thread merges its reference count, at its next
            # check: soon, not at once. Kept alive by the pool, it would stay alive.
            deadline = time.monotonic() + 5
            while alive and time.monotonic() < deadline:
                time.sleep(0.001)
                gc.collect()
                alive = _alive(refs)
        assert alive == [], f"results {alive} still alive after {len(refs)} were taken"
    assert len(refs) == n


@pytest.mark.parametrize("chunksize", [None, 1, 4])
def test_imap_keeps_no_result_it_handed_over(allcores_impl, chunksize):
    with allcores_impl.pool(2) as pool:
        _check_released(pool.imap(boxed, range(40), chunksize), 40)
        _check_released(pool.imap_unordered(boxed, range(40), chunksize), 40)


@pytest.mark.parametrize("chunksize", [None, 1, 4])
def test_executor_map_keeps_no_result_it_handed_over(allcores_impl, chunksize):
    with allcores_impl.executor(2) as ex:
        _check_released(ex.map(boxed, range(40), chunksize=chunksize), 40)
        _check_released(ex.map(boxed, range(40), chunksize=chunksize, buffersize=4), 40)


# -- a done-callback that raises costs no other future -------------------------------------------

def _exit_callback(fut):
    raise SystemExit(3)


def _raising_callback(fut):
    raise ValueError("callback failed")


@pytest.mark.parametrize("collect", ["result", "as_completed"])
def test_callbacks_raising_system_exit_lose_no_future(allcores_impl, collect, caplog):
    with allcores_impl.executor(2) as ex:
        for _round in range(3):
            futures = [ex.submit(square, i) for i in range(200)]
            for f in futures:
                f.add_done_callback(_exit_callback)
            if collect == "result":  # the caller's thread completes futures (and runs callbacks)
                values = [f.result(60) for f in futures]
            else:  # the collector thread does
                done, not_done = cf.wait(futures, timeout=60)
                assert not not_done
                values = [f.result() for f in futures]
            assert values == [i * i for i in range(200)]
        assert ex.submit(square, 7).result(60) == 49
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]


def test_a_raising_callback_is_logged_as_concurrent_futures_logs_it(impl, caplog):
    with impl.executor(2) as ex:
        with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
            futures = [ex.submit(square, i) for i in range(20)]
            for f in futures:
                f.add_done_callback(_raising_callback)
            assert [f.result(60) for f in futures] == [i * i for i in range(20)]
            wait_until(lambda: sum("exception calling callback for" in r.getMessage()
                                   for r in caplog.records) >= 20,
                       what="a log record for each callback")
        assert ex.submit(square, 3).result(60) == 9


def _exit_on_odd(value):
    if value % 2:
        raise SystemExit(1)


def _error_callback_exit(exc):
    raise SystemExit(2)


def test_apply_async_callbacks_that_raise_lose_no_result(allcores_impl, capfd):
    with allcores_impl.pool(2) as pool:
        results = [pool.apply_async(square, (i,), callback=_exit_on_odd) for i in range(100)]
        assert [r.get(60) for r in results] == [i * i for i in range(100)]
        failing = [pool.apply_async(recurse, (0,), error_callback=_error_callback_exit)
                   for _ in range(5)]
        for r in failing:
            with pytest.raises(RecursionError):
                r.get(60)
        mapped = pool.map_async(square, range(10), callback=_exit_on_odd_list)
        assert mapped.get(60) == [i * i for i in range(10)]
        assert pool.apply(square, (4,)) == 16
    # Reported as multiprocessing's result-handler thread would report them (its traceback).
    err = capfd.readouterr().err
    assert "SystemExit: 1" in err and "SystemExit: 2" in err


def _exit_on_odd_list(values):
    raise SystemExit(values[1])


# -- an error raised by a map's input ------------------------------------------------------------

def test_pool_map_raises_the_inputs_error(pool):
    with pytest.raises(SayWhen):
        pool.map(square, failing_input(10, 3))
    with pytest.raises(SayWhen):
        pool.map_async(square, failing_input(10, 3))
    assert pool.map(square, range(3)) == [0, 1, 4]


def test_executor_map_raises_the_inputs_error_from_map(executor):
    with pytest.raises(SayWhen):
        executor.map(square, failing_input(10, 3))
    assert list(executor.map(square, range(3))) == [0, 1, 4]


def test_imap_returns_every_item_before_the_inputs_error(pool):
    # chunksize=1: what multiprocessing does too.
    it = pool.imap(square, failing_input(10, 3), 1)
    assert [next(it) for _ in range(3)] == [0, 1, 4]
    with pytest.raises(SayWhen):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    it = pool.imap(square, failing_input(10, 0), 1)
    with pytest.raises(SayWhen):
        next(it)
    assert pool.map(square, range(3)) == [0, 1, 4]


def _drain(it):
    got = []
    with pytest.raises(SayWhen):
        for value in it:
            got.append(value)
    return got


@pytest.mark.parametrize("chunksize", [None, 1, 3, 8])
@pytest.mark.parametrize("bad", [1, 7, 150])
def test_every_item_taken_from_a_failing_input_comes_back(allcores_impl, chunksize, bad):
    with allcores_impl.pool(2) as pool, allcores_impl.executor(2) as ex:
        taken = []
        got = _drain(pool.imap(square, failing_input(1000, bad, taken), chunksize))
        assert got == [i * i for i in taken] == [i * i for i in range(bad)]
        taken = []
        got = _drain(pool.imap_unordered(square, failing_input(1000, bad, taken), chunksize))
        assert sorted(got) == [i * i for i in taken] == [i * i for i in range(bad)]
        taken = []
        got = _drain(ex.map(square, failing_input(1000, bad, taken), chunksize=chunksize,
                            buffersize=4))
        assert got == [i * i for i in taken] == [i * i for i in range(bad)]
        assert pool.apply(square, (3,)) == 9
        assert ex.submit(square, 3).result(60) == 9


def test_imap_unordered_ends_with_the_inputs_error(pool):
    it = pool.imap_unordered(square, failing_input(10, 3), 1)
    expected = [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
    with pytest.raises(SayWhen):
        for _ in range(10):
            value = next(it)
            expected.remove(value)


# -- task exceptions arrive as themselves --------------------------------------------------------

def test_a_recursion_error_arrives_as_itself(executor):
    with pytest.raises(RecursionError):
        executor.submit(recurse, 0).result(60)
    assert executor.submit(square, 2).result(60) == 4


def test_an_exception_too_deep_to_pickle_arrives_as_its_type_and_message(allcores_impl):
    with allcores_impl.executor(2) as ex, allcores_impl.pool(2) as pool:
        with pytest.raises(DeepError, match="too deep to pickle") as info:
            ex.submit(raise_deep).result(60)
        assert not hasattr(info.value, "payload")
        assert any("type and message only" in note for note in info.value.__notes__)
        assert "raise_deep" in str(info.value.__cause__)  # the worker's traceback
        with pytest.raises(DeepError, match="too deep to pickle"):
            pool.map(raise_deep, [1, 2])
        it = pool.imap(raise_deep, [1], 1)
        with pytest.raises(DeepError):
            next(it)


def test_an_exception_that_cannot_be_rebuilt_says_so(allcores_impl):
    with allcores_impl.executor(2) as ex:
        with pytest.raises(allcores.UnpicklableTaskError,
                           match="TwoArgs.*RecursionError.*cannot be rebuilt from its message"):
            ex.submit(raise_deep_two_args).result(60)
        assert ex.submit(square, 5).result(60) == 25


def test_waiting_threads_keep_working_after_a_callback_raised(allcores_impl):
    # A callback run by a thread other than the caller's: results still flow to the caller.
    with allcores_impl.executor(2) as ex:
        futures = [ex.submit(square, i) for i in range(50)]
        for f in futures:
            f.add_done_callback(_exit_callback)
        box = []
        t = threading.Thread(target=lambda: box.append([f.result(60) for f in futures]))
        t.start()
        t.join(60)
        assert not t.is_alive()
        assert box == [[i * i for i in range(50)]]


def version():
    return 1


def test_thread_workers_see_a_function_the_program_rebinds(allcores_impl, monkeypatch):
    # Thread workers share the program's modules: a name rebound there (importlib.reload,
    # monkeypatching) names the new function, which they must run, not one looked up before.
    def version_2():
        return 2

    version_2.__qualname__ = version_2.__name__ = "version"
    with allcores_impl.pool(2, backend="thread") as pool:
        assert [pool.apply(version) for _ in range(4)] == [1] * 4
        monkeypatch.setattr(sys.modules[__name__], "version", version_2)
        assert [pool.apply(version_2) for _ in range(4)] == [2] * 4
