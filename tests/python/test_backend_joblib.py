"""joblib.parallel_config(backend="allcores") runs existing joblib and scikit-learn code on allcores
pools: results, errors, auto-batching of tiny calls, and a real scikit-learn cross_val_score."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

joblib = pytest.importorskip("joblib")

import allcores.joblib_backend  # noqa: E402,F401 - registers "allcores"
from backend_tasks import fail_on, square, worker_token  # noqa: E402
from budget import long_suite  # noqa: E402

pytestmark = long_suite  # joblib's and loky's behaviour, the same on every Python


@pytest.fixture(autouse=True)
def close_pools():
    """The backend keeps its pools between Parallel calls: not between tests."""
    yield
    allcores.joblib_backend.close_pools()


def test_the_backend_is_registered():
    with joblib.parallel_config(backend="allcores", n_jobs=2):
        backend, n_jobs = joblib.parallel.get_active_backend()
    assert type(backend).__name__ == "AllcoresBackend" and n_jobs == 2


def test_parallel_runs_in_allcores_workers():
    with joblib.parallel_config(backend="allcores"):
        got = joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(20))
        tokens = joblib.Parallel(n_jobs=2)(joblib.delayed(worker_token)(i) for i in range(8))
    assert got == [i * i for i in range(20)]
    assert worker_token() not in tokens


def test_many_tiny_calls_are_batched():
    with joblib.parallel_config(backend="allcores"):
        got = joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(20_000))
    assert got == [i * i for i in range(20_000)]


def test_lambdas_and_generators():
    with joblib.parallel_config(backend="allcores", n_jobs=2):
        assert joblib.Parallel()(joblib.delayed(lambda x: x + 1)(i) for i in range(5)) == \
            [1, 2, 3, 4, 5]
        lazy = joblib.Parallel(return_as="generator")(joblib.delayed(square)(i) for i in range(5))
        assert list(lazy) == [0, 1, 4, 9, 16]


def test_a_failing_call_raises_its_exception_and_the_backend_goes_on():
    with joblib.parallel_config(backend="allcores", n_jobs=2):
        with pytest.raises(ValueError, match="item 7 is bad"):
            joblib.Parallel()(joblib.delayed(fail_on)(i, 7) for i in range(20))
        assert joblib.Parallel()(joblib.delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]


def test_n_jobs_1_runs_in_the_caller():
    with joblib.parallel_config(backend="allcores", n_jobs=1):
        assert joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(2)) == \
            [os.getpid()] * 2


def test_other_pool_backends():
    with joblib.parallel_config(backend="allcores", n_jobs=2, pool_backend="thread"):
        assert joblib.Parallel()(joblib.delayed(square)(i) for i in range(6)) == \
            [i * i for i in range(6)]
    assert (2, "thread", ()) in allcores.joblib_backend._pools


def test_scikit_learn_cross_val_score():
    sklearn = pytest.importorskip("sklearn")  # noqa: F841
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500)
    expected = cross_val_score(model, X, y, cv=4, n_jobs=1)
    with joblib.parallel_config(backend="allcores"):
        scores = cross_val_score(model, X, y, cv=4, n_jobs=2)
    assert list(allcores.joblib_backend._pools) == [(2, "process", ())]  # it ran on allcores
    assert list(scores) == pytest.approx(list(expected))
    assert scores.mean() > 0.9


# -- arrays: memmaps written by workers, auto-memmapping (max_nbytes, mmap_mode, temp_folder) ----

def fill(out, i):
    out[i] = i + 1


def test_workers_write_into_a_memmap_the_caller_opened(tmp_path):
    np = pytest.importorskip("numpy")
    filename = str(tmp_path / "out.mmap")
    out = np.memmap(filename, dtype=np.float64, shape=(50,), mode="w+")
    joblib.Parallel(n_jobs=2, backend="allcores")(joblib.delayed(fill)(out, i) for i in range(50))
    with open(filename, "rb") as f:
        assert f.read() == np.arange(1, 51, dtype=np.float64).tobytes()


_MEMMAPPING = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import joblib, allcores.joblib_backend
    from joblib import Parallel, delayed

    def array_kind(a):
        return (type(a).__name__, getattr(a, "mode", None), bool(a.flags.writeable),
                getattr(a, "filename", None), float(a.sum()))

    if __name__ == "__main__":
        folder = sys.argv[1]
        big = np.ones(300_000)  # 2.4 MB: over joblib's default max_nbytes (1 MB)
        small = np.ones(1000)
        kinds = Parallel(n_jobs=2, backend="allcores")(delayed(array_kind)(a) for a in (big, big, small))
        print([k[:3] + (k[4],) for k in kinds])
        kinds = Parallel(n_jobs=2, backend="allcores", max_nbytes="100K", mmap_mode="r+",
                         temp_folder=folder)(delayed(array_kind)(a) for a in (big, small))
        print([k[:3] for k in kinds], kinds[0][3].startswith(folder))
        deadline = time.monotonic() + 30  # the call's dumps are removed once it ends
        while any(files for _, _, files in os.walk(folder)) and time.monotonic() < deadline:
            time.sleep(0.05)
        print(any(files for _, _, files in os.walk(folder)))
        kinds = Parallel(n_jobs=2, backend="allcores", max_nbytes=None)(
            delayed(array_kind)(big) for _ in range(2))
        print([k[:3] for k in kinds])
""")


@pytest.mark.timeout(180)
def test_big_inputs_are_memory_mapped_as_with_loky(tmp_path):
    """In a program of its own: joblib's dumps start its resource tracker, a child process that
    lives as long as the program."""
    pytest.importorskip("numpy")
    run = subprocess.run([sys.executable, "-c", _MEMMAPPING, str(tmp_path / "dumps")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == [
        str([("memmap", "r", False, 300000.0)] * 2 + [("ndarray", None, True, 1000.0)]),
        str([("memmap", "r+", True), ("ndarray", None, True)]) + " True",  # 8 KB: copied
        "False",
        str([("ndarray", None, True)] * 2),
    ]


# -- initializer ------------------------------------------------------------------------------

_initialized = None


def initialize(directory, value):
    global _initialized
    _initialized = value
    with open(os.path.join(directory, str(os.getpid())), "w"):
        pass


def initialized(_):
    return _initialized


def _pool_pids():
    (pool, _, _), = allcores.joblib_backend._pools.values()
    return {str(p) for p in pool.worker_pids()}


def _wait_for_files(directory, names):
    deadline = time.monotonic() + 30
    while set(os.listdir(directory)) != names and time.monotonic() < deadline:
        time.sleep(0.02)
    return set(os.listdir(directory))


def test_parallel_initializer_runs_in_every_worker(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    got = joblib.Parallel(n_jobs=2, backend="allcores", initializer=initialize,
                          initargs=(str(first), "a"))(joblib.delayed(initialized)(i) for i in range(20))
    assert got == ["a"] * 20
    assert _wait_for_files(first, _pool_pids()) == _pool_pids()
    # parallel_config's initializer (joblib >= 1.5); other arguments start another pool.
    with joblib.parallel_config(backend="allcores", n_jobs=2, initializer=initialize,
                                initargs=(str(second), "b")):
        got = joblib.Parallel()(joblib.delayed(initialized)(i) for i in range(20))
    assert got == ["b"] * 20
    assert _wait_for_files(second, _pool_pids()) == _pool_pids()


# -- nesting and forks (each in a program of its own: a hang there cannot stop this run) ---------

_NESTING = textwrap.dedent("""
    import os, sys, warnings
    import joblib, allcores, allcores.joblib_backend
    from joblib import Parallel, delayed

    def square(x):
        return x * x

    def inner(backend):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            total = sum(Parallel(n_jobs=2, backend=backend)(delayed(square)(i) for i in range(10)))
        return total, sorted({str(w.message) for w in caught})

    def inner_then_shut_down(backend):
        # A worker ends without running atexit hooks: loky's would shut its executor down.
        from joblib.externals.loky import reusable_executor
        try:
            return inner(backend)
        finally:
            if reusable_executor._executor is not None:
                reusable_executor._executor.shutdown(wait=True)

    if __name__ == "__main__":
        case = sys.argv[1]
        if case != "allcores":  # the parent has a live loky executor when its workers fork
            print(Parallel(n_jobs=2, backend="loky")(delayed(square)(i) for i in range(3)))
        if case == "pool":
            with allcores.Pool(2) as pool:
                print(pool.map(inner_then_shut_down, ["loky"] * 3))
        elif case == "fork":
            print(Parallel(n_jobs=2, backend="allcores")(delayed(square)(i) for i in range(3)))
            pid = os.fork()
            if pid == 0:
                got = Parallel(n_jobs=2, backend="allcores")(delayed(square)(i) for i in range(4))
                sys.stdout.write(f"child {got}\\n")
                sys.stdout.flush()
                os._exit(0)
            os.waitpid(pid, 0)
            print(Parallel(n_jobs=2, backend="allcores")(delayed(square)(i) for i in range(5)))
        else:
            print(Parallel(n_jobs=2, backend="allcores")(delayed(inner)(case) for _ in range(3)))
""")


def _nesting(case):
    run = subprocess.run([sys.executable, "-c", _NESTING, case], capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.splitlines()


@pytest.mark.timeout(180)
def test_allcores_inside_allcores_runs_each_inner_call_on_a_pool_of_its_worker():
    assert _nesting("allcores") == [str([(285, [])] * 3)]


@pytest.mark.timeout(180)
def test_loky_inside_allcores_falls_back_to_n_jobs_1_as_under_multiprocessing():
    """The parent has a live loky executor: joblib's loky backend inside a task sees a daemonic
    worker and runs the inner loop in it (with joblib's warning), as in a multiprocessing pool."""
    lines = _nesting("loky")
    warning = "Loky-backed parallel loops cannot be called in a multiprocessing, setting n_jobs=1"
    assert lines == ["[0, 1, 4]", str([(285, [warning])] * 3)]


@pytest.mark.timeout(180)
def test_loky_inside_a_plain_pool_task_starts_its_own_executor():
    """A Pool task is free to use joblib's loky backend, even when the parent had a live loky
    executor when the pool started (its workers forget the parent's)."""
    assert _nesting("pool") == ["[0, 1, 4]", str([(285, [])] * 3)]


@pytest.mark.timeout(180)
def test_a_forked_child_gets_pools_of_its_own():
    assert _nesting("fork") == ["[0, 1, 4]", "[0, 1, 4]", "child [0, 1, 4, 9]",
                                "[0, 1, 4, 9, 16]"]
