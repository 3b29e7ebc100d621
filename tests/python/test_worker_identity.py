"""Pool workers tell themselves apart as multiprocessing's do: current_process().name and
current_process()._identity, which programs use as a worker's number (a tqdm bar's position,
the GPU a worker takes)."""
import multiprocessing
import time

import pytest

import allcores


def _who(_):
    time.sleep(0.05)
    me = multiprocessing.current_process()
    return me.name, me._identity


@pytest.mark.parametrize("make", [lambda: allcores.Pool(2), lambda: allcores.ProcessPoolExecutor(2)],
                         ids=["Pool", "ProcessPoolExecutor"])
def test_each_worker_has_its_number(make):
    with make() as pool:
        got = set(pool.map(_who, range(8), chunksize=1))
    assert got == {("AllcoresPoolWorker-1", (1,)), ("AllcoresPoolWorker-2", (2,))}


def test_a_replacement_worker_takes_its_predecessors_number():
    with allcores.Pool(2, maxtasksperchild=1) as pool:
        got = set(pool.map(_who, range(6), chunksize=1))
    assert {ident for _, ident in got} == {(1,), (2,)}
