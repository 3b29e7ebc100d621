"""joblib.parallel_config(backend="allcores") runs existing joblib and scikit-learn code on allcores
pools: results, errors, auto-batching of tiny calls, and a real scikit-learn cross_val_score."""
import os

import pytest

joblib = pytest.importorskip("joblib")

import allcores.joblib_backend  # noqa: E402,F401 - registers "allcores"
from backend_tasks import fail_on, square, worker_token  # noqa: E402


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
