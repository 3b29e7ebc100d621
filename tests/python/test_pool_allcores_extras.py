"""What allcores.Pool and ProcessPoolExecutor offer beyond the standard library: lambdas, closures
and functions of __main__ travel (cloudpickle); Pool.submit() returns a concurrent.futures.Future;
imap and Executor.map(buffersize=) consume their input lazily; chunk sizes are chosen automatically;
progress bars.
"""
import asyncio
import concurrent.futures as cf
import functools
import itertools
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from helpers_tasks import (add, add3, gated_square, open_gate, pid_of,
                           raise_value_error, square, wait_for_file, wait_until)


@pytest.fixture
def pool(allcores_impl):
    p = allcores_impl.pool(2)
    yield p
    p.terminate()
    p.join()


# -- functions that pickle cannot send by reference -----------------------------------------------

def test_lambdas(pool):
    assert pool.map(lambda x: x + 1, range(5)) == [1, 2, 3, 4, 5]
    assert pool.apply(lambda: "no args") == "no args"
    assert list(pool.imap(lambda x: -x, range(3))) == [0, -1, -2]
    assert pool.starmap(lambda a, b: a * b, [(2, 3), (4, 5)]) == [6, 20]
    assert pool.submit(lambda *a, **k: (a, k), 1, z=2).result(30) == ((1,), {"z": 2})


def test_closures_capture_their_values(pool):
    offset = 100
    table = {"a": 1, "b": 2}

    def shift(x):
        return x + offset + table[x % 2 and "a" or "b"]

    assert pool.map(shift, [1, 2]) == [102, 104]
    make = lambda k: (lambda x: x * k)  # noqa: E731
    assert pool.map(make(3), [1, 2]) == [3, 6]
    assert pool.apply(functools.partial(lambda a, b: a - b, 10), (4,)) == 6


def test_local_classes_and_instances(pool):
    class Multiplier:
        def __init__(self, k):
            self.k = k

        def __call__(self, x):
            return x * self.k

        def twice(self, x):
            return 2 * self(x)

    m = Multiplier(5)
    assert pool.map(m, [1, 2]) == [5, 10]
    assert pool.apply(m.twice, (3,)) == 30
    result = pool.apply(lambda: Multiplier(7))
    assert type(result).__name__ == "Multiplier" and result.k == 7


def test_lambdas_in_the_executor(allcores_impl):
    k = 4
    with allcores_impl.executor(2) as ex:
        assert ex.submit(lambda x: x * k, 2).result(30) == 8
        assert list(ex.map(lambda a, b: a + b + k, [1, 2], [3, 4])) == [8, 10]


def test_lambda_that_raises(pool):
    def boom(x):
        raise LookupError(f"no {x}")

    with pytest.raises(LookupError, match="no 3") as info:
        pool.apply(boom, (3,))
    assert "boom" in str(info.value.__cause__)


_MAIN_SCRIPT = textwrap.dedent('''
    import os
    import allcores

    def triple(x):
        return 3 * x

    class Adder:
        def __init__(self, k):
            self.k = k

        def __call__(self, x):
            return x + self.k

    if __name__ == "__main__":
        with allcores.Pool(2) as pool:
            assert pool.map(triple, range(5)) == [0, 3, 6, 9, 12]
            assert pool.apply(Adder(10), (1,)) == 11
            assert pool.map(lambda x: x - 1, [1, 2]) == [0, 1]

            def defined_after_the_pool_started(x):
                return x * 7

            assert pool.map(defined_after_the_pool_started, [1, 2]) == [7, 14]
            assert pool.submit(triple, 2).result(30) == 6
        with allcores.ProcessPoolExecutor(2) as ex:
            assert list(ex.map(triple, [1, 2])) == [3, 6]
            assert ex.submit(Adder(1), 1).result(30) == 2
        print("main ok")
''')


def test_functions_of_main(allcores_impl, tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(_MAIN_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "main ok"
    assert proc.stderr == ""


def test_functions_of_main_with_python_c(allcores_impl, tmp_path):
    code = ("import allcores\n"
            "def f(x): return x + 1\n"
            "with allcores.Pool(2) as p: print(p.map(f, [1, 2, 3]))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[2, 3, 4]"


# -- Pool.submit ----------------------------------------------------------------------------------

def test_submit_returns_a_concurrent_future(pool):
    fut = pool.submit(add, 1, 2)
    assert isinstance(fut, cf.Future)
    assert fut.result(timeout=30) == 3
    assert pool.submit(add3, 1, 2, c=4).result(30) == 7


def test_submit_exception(pool):
    fut = pool.submit(raise_value_error, "z")
    assert isinstance(fut.exception(30), ValueError)
    with pytest.raises(ValueError, match="bad value 'z'"):
        fut.result()


def test_submit_result_timeout(pool, gate):
    fut = pool.submit(wait_for_file, gate)
    with pytest.raises(cf.TimeoutError):
        fut.result(0.05)
    assert not fut.done()
    open_gate(gate)
    assert fut.result(30) == gate


def test_submit_futures_with_wait_and_as_completed(pool, gate):
    blocked = pool.submit(wait_for_file, gate)
    quick = [pool.submit(square, i) for i in range(5)]
    done, not_done = cf.wait(quick + [blocked], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert done and blocked in not_done
    seen = []
    for f in cf.as_completed(quick + [blocked], timeout=30):
        seen.append(f)
        if len(seen) == 5:
            open_gate(gate)
    assert seen[-1] is blocked and set(seen[:5]) == set(quick)


def test_submit_futures_with_asyncio(pool):
    async def main():
        a = asyncio.wrap_future(pool.submit(square, 5))
        b = asyncio.wrap_future(pool.submit(raise_value_error, 1))
        return await asyncio.gather(a, b, return_exceptions=True)

    value, error = asyncio.run(main())
    assert value == 25 and isinstance(error, ValueError)


def test_submit_done_callback(pool):
    got = []
    fut = pool.submit(square, 3)
    fut.add_done_callback(lambda f: got.append((f.result(), threading.get_ident() != 0)))
    fut.result(30)
    wait_until(lambda: got, what="the done callback")
    assert got == [(9, True)]


def test_submit_cancel_of_a_queued_task(allcores_impl, gate):
    with allcores_impl.pool(1) as pool:
        blocker = pool.submit(wait_for_file, gate)
        queued = pool.submit(square, 3)
        assert queued.cancel()
        assert queued.cancelled()
        open_gate(gate)
        assert blocker.result(30) == gate
        assert pool.submit(square, 4).result(30) == 16


def test_submit_on_a_closed_pool(allcores_impl):
    pool = allcores_impl.pool(1)
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.submit(square, 1)
    pool.join()


# -- lazy input -----------------------------------------------------------------------------------

class CountingInput:
    """An iterator that counts how many items were taken from it."""

    def __init__(self, n=None):
        self.taken = 0
        self.n = n

    def __iter__(self):
        return self

    def __next__(self):
        if self.n is not None and self.taken >= self.n:
            raise StopIteration
        self.taken += 1
        return self.taken - 1


def test_imap_consumes_its_input_lazily(pool, gate):
    """multiprocessing.Pool.imap reads the whole input at once (gh-74028); allcores reads it as
    workers free up, so a huge or endless input does not fill memory."""
    source = CountingInput(30_000)
    it = pool.imap(functools.partial(gated_square, gate=gate), source, 1)
    assert next(it) == 0 and next(it) == 1
    # items 2 and up block on the gate: nothing consumes results, so input reading must stall
    wait_until(lambda: source.taken >= 4, what="the workers taking the first items")
    threading.Event().wait(0.3)
    assert source.taken < 10_000
    open_gate(gate)
    total = sum(it)
    assert source.taken == 30_000
    assert total == sum(x * x for x in range(2, 30_000))


def test_executor_map_consumes_its_input_lazily(allcores_impl, gate):
    source = CountingInput(30_000)
    with allcores_impl.executor(2) as ex:
        it = ex.map(functools.partial(gated_square, gate=gate), source, buffersize=8)
        assert next(it) == 0
        wait_until(lambda: source.taken >= 3, what="the workers taking the first items")
        threading.Event().wait(0.3)
        assert source.taken < 10_000
        open_gate(gate)
        assert sum(it) == sum(x * x for x in range(1, 30_000))


def test_executor_map_of_an_endless_input_can_be_abandoned(allcores_impl):
    with allcores_impl.executor(2) as ex:
        for value in ex.map(square, itertools.count(), buffersize=8):
            if value > 10_000:
                break
        assert ex.submit(square, 3).result(30) == 9


def test_imap_of_an_endless_input_can_be_abandoned(pool):
    it = pool.imap(square, itertools.count())
    assert [next(it) for _ in range(5)] == [0, 1, 4, 9, 16]
    del it
    assert pool.map(square, [2]) == [4]


def test_imap_unordered_of_an_endless_input(pool):
    seen = set()
    for v in pool.imap_unordered(square, itertools.count()):
        seen.add(v)
        if len(seen) >= 100:
            break
    assert len(seen) == 100
    assert pool.apply(square, (5,)) == 25


def test_imap_with_a_generator_that_raises(pool):
    def gen():
        yield 1
        yield 2
        raise RuntimeError("input broke")

    with pytest.raises(RuntimeError, match="input broke"):
        list(pool.imap(square, gen()))
    assert pool.map(square, [3]) == [9]


# -- automatic chunk sizes ------------------------------------------------------------------------

def test_imap_batches_tiny_tasks_automatically(allcores_impl):
    """imap with chunksize=None batches tiny tasks too (multiprocessing's default is 1)."""
    with allcores_impl.pool(2, maxtasksperchild=1) as pool:
        pids = list(pool.imap(pid_of, range(2000)))
    assert len(pids) == 2000
    assert len(set(pids)) < 200


def test_automatic_chunks_keep_long_tasks_apart(pool, tmp_path):
    """Two slow tasks run at the same time in two workers even with chunksize=None."""
    from helpers_tasks import meet
    pids = pool.map(functools.partial(meet, str(tmp_path)), [2, 2])
    assert len(set(pids)) == 2


def test_map_progress_bar(pool, capfd):
    assert pool.map(square, range(10), progress=True) == [x * x for x in range(10)]
    assert list(pool.imap(square, range(5), progress=True)) == [0, 1, 4, 9, 16]
    err = capfd.readouterr().err
    assert "10/10" in err and "5/5" in err


def test_worker_pids_are_not_the_caller(pool):
    assert os.getpid() not in pool.map(pid_of, range(4), 1)


def test_context_and_mp_context_are_accepted(allcores_impl):
    """Code written for the stdlib passes a context; allcores accepts it and works the same.
    Asking for spawn or forkserver workers, which allcores does not make, warns and says what
    differs (the process backend only: other backends have no start method); fork, what
    allcores does, is silent."""
    import multiprocessing
    import warnings
    for method in ("fork", "spawn", "forkserver"):
        ctx = multiprocessing.get_context(method)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with allcores_impl.pool(2, context=ctx) as pool:
                assert pool.map(square, range(4)) == [0, 1, 4, 9]
            with allcores_impl.executor(2, mp_context=ctx) as ex:
                assert ex.submit(square, 3).result(30) == 9
        ours = [w for w in seen if issubclass(w.category, RuntimeWarning)]
        if method == "fork" or allcores_impl.name != "allcores":
            assert ours == []
        else:
            assert len(ours) == 2
            for w in ours:
                assert f"{method!r} start method is not used" in str(w.message)
                assert "do not re-import __main__" in str(w.message)
                assert w.filename == __file__ or w.filename.endswith("conftest.py")


def test_tasks_can_use_pools_themselves(pool):
    """multiprocessing refuses (daemonic workers cannot have children); allcores workers may run
    pools of their own, and nothing is left behind once the outer pool is gone (checked by the
    fixture that looks for leftover processes)."""
    from helpers_tasks import nested_default_sum, nested_pool_sum
    assert pool.map(nested_pool_sum, [3, 4], 1) == [5, 14]
    assert pool.map(nested_default_sum, [3, 4], 1) == [5, 14]
    assert pool.apply(square, (6,)) == 36
