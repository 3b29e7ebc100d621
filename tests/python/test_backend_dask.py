"""backend="dask": the Pool and Executor API on a real dask.distributed cluster (a scheduler and two
worker processes on 127.0.0.1). What the Pool API tests cannot see: both ways to name the cluster,
tasks really run in the cluster's workers, the initializer runs there, a user's client is left
open, a worker that dies fails its task with WorkerLost, tasks may run pools of their own, and
what the backend refuses."""
import importlib.util
import os

import pytest

import allcores
from backend_impls import dask_cluster
from backend_tasks import get_state, set_state, square, worker_token
from helpers_tasks import nested_pool_sum, pid_of

# distributed is imported by the tests only, not at collection (see backend_impls.dask_cluster).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="dask.distributed is not installed")


@pytest.fixture(scope="module")
def cluster():
    with dask_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    from distributed import Client
    c = Client(cluster, set_as_default=False)
    yield c
    c.close()


def test_the_cluster_by_address(cluster):
    with allcores.Pool(backend="dask", address=cluster.scheduler_address) as pool:
        assert pool.processes == 2  # the cluster's worker threads
        assert pool.map(square, range(100)) == [x * x for x in range(100)]
        assert pool.apply(square, (9,)) == 81


def test_the_cluster_by_client_which_stays_open(client):
    with allcores.ProcessPoolExecutor(2, backend="dask", client=client) as ex:
        assert list(ex.map(square, range(10))) == [x * x for x in range(10)]
        assert ex.submit(square, 5).result(30) == 25
    assert client.status == "running"
    assert client.submit(square, 3, pure=False).result() == 9


def test_tasks_run_in_the_cluster_workers(client):
    cluster_pids = set(client.run(os.getpid).values())
    with allcores.Pool(2, backend="dask", client=client) as pool:
        pids = set(pool.map(pid_of, range(20), 1))
        assert sorted(pool.worker_pids()) == sorted(cluster_pids)
    assert pids <= cluster_pids and os.getpid() not in pids


def test_the_initializer_runs_in_each_worker_once_per_pool(client):
    with allcores.Pool(2, set_state, ("first",), backend="dask", client=client) as pool:
        assert set(pool.map(get_state, range(20), 1)) == {"first"}
    with allcores.Pool(2, set_state, ("second",), backend="dask", client=client) as pool:
        assert set(pool.map(get_state, range(20), 1)) == {"second"}


def test_tasks_spread_over_both_workers(client):
    from backend_tasks import token_after
    with allcores.Pool(2, backend="dask", client=client) as pool:
        assert len(set(pool.map(token_after, [0.3] * 4, 1))) == 2
        assert len(set(pool.map(worker_token, range(100)))) <= 2


def test_a_worker_that_dies_fails_its_task_with_worker_lost(tmp_path):
    """With allowed-failures 0 the scheduler gives up on the task at its first worker death; the
    nanny restarts the worker and the pool goes on. (Its own cluster: the restarted worker is a
    new process, which this test must not leave behind.)"""
    from helpers_tasks import kill_self
    with dask_cluster(**{"distributed.scheduler.allowed-failures": 0}) as cluster:
        with allcores.Pool(backend="dask", address=cluster.scheduler_address) as pool:
            with pytest.raises(allcores.WorkerLost, match="kill_self"):
                pool.apply(kill_self)
            assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]


def test_tasks_can_run_pools_of_their_own(client):
    """The explicit half of test_tasks_can_use_pools_themselves (its default-pool half is skipped
    on dask: the default pool would stay with the cluster's worker after the test): a task on a
    cluster worker opens and closes a process pool there."""
    with allcores.Pool(2, backend="dask", client=client) as pool:
        assert pool.map(nested_pool_sum, [3, 4], 1) == [5, 14]
        assert pool.apply(square, (6,)) == 36


def test_what_the_backend_refuses(cluster):
    address = cluster.scheduler_address
    with pytest.raises(TypeError, match="address="):
        allcores.Pool(2, backend="dask")
    with pytest.raises(ValueError, match="task_timeout"):
        allcores.Pool(2, backend="dask", address=address, task_timeout=1)
    with pytest.raises(ValueError, match="maxtasksperchild"):
        allcores.Pool(2, maxtasksperchild=3, backend="dask", address=address)
    with pytest.raises(TypeError, match="backend='process' takes no option"):
        allcores.Pool(2, address=address)
    with allcores.Pool(backend="dask", address=address) as pool:
        with pytest.raises(ValueError, match="task_timeout"):
            pool.apply(square, (2,), task_timeout=1)


def test_progress_and_asyncio_on_the_cluster(client):
    import asyncio
    import io
    import allcores.aio
    out = io.StringIO()
    with allcores.Pool(2, backend="dask", client=client) as pool:
        assert pool.map(square, range(30), progress={"file": out}) == [x * x for x in range(30)]

        async def main():
            return await pool.map_async(square, range(5)), \
                [x async for x in allcores.aio.imap(pool, square, range(5))]

        assert asyncio.run(main()) == ([0, 1, 4, 9, 16], [0, 1, 4, 9, 16])
    assert "30/30" in out.getvalue()
