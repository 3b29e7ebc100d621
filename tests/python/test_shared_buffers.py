"""SharedBuffer and shared_array: written by children and pool tasks, seen by the parent; passed by
reference (views and slices too) whatever their size."""
import multiprocessing as mp
import os
import pickle

import pytest

import allcores

np = pytest.importorskip("numpy")

pytestmark = [
    pytest.mark.timeout(120),
    # These tests fork on purpose; another test's pool may have left threads running, about
    # which Python 3.12+ warns at every fork.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

FORK = mp.get_context("fork")


def test_shared_buffer_is_a_writable_buffer_for_any_consumer():
    buf = allcores.SharedBuffer(64)
    assert len(buf) == buf.nbytes == 64 and bytes(buf) == bytes(64)
    view = memoryview(buf)
    assert not view.readonly and view.nbytes == 64
    view[:5] = b"hello"
    assert bytes(buf)[:5] == b"hello"
    arr = np.frombuffer(buf, dtype=np.uint8)
    arr[5] = 33
    assert bytes(buf)[:6] == b"hello!"
    assert allcores.SharedBuffer(0).nbytes == 0
    with pytest.raises(ValueError):
        allcores.SharedBuffer(-1)


def test_shared_buffer_written_by_a_fork_child_is_seen_by_the_parent():
    buf = allcores.SharedBuffer(1 << 20)
    pid = os.fork()
    if pid == 0:
        memoryview(buf)[-3:] = b"end"
        np.frombuffer(buf, dtype=np.uint32)[0] = 0xDEADBEEF
        os._exit(0)
    os.waitpid(pid, 0)
    assert bytes(buf)[-3:] == b"end"
    assert np.frombuffer(buf, dtype=np.uint32)[0] == 0xDEADBEEF


def _fill_buffer(buf, value):
    memoryview(buf)[:] = bytes([value]) * len(buf)


def test_shared_buffer_written_by_a_spawn_child_is_seen_by_the_parent():
    buf = allcores.SharedBuffer(4096)
    p = mp.get_context("spawn").Process(target=_fill_buffer, args=(buf, 7))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and bytes(buf) == bytes([7]) * 4096


def test_shared_array_basics():
    a = allcores.shared_array((3, 4), dtype="int32")
    assert a.shape == (3, 4) and a.dtype == np.int32 and (a == 0).all()
    assert isinstance(a, np.ndarray) and isinstance(a, allcores.shared.SharedArray)
    assert a.flags.c_contiguous and a.flags.writeable
    f = allcores.shared_array((2, 3), order="F")
    assert f.flags.f_contiguous and f.dtype == np.float64
    assert allcores.shared_array(5).shape == (5,)
    assert allcores.shared_array(0).size == 0
    with pytest.raises(TypeError):
        allcores.shared_array(3, dtype=object)
    rec = allcores.shared_array(2, dtype=[("x", "i4"), ("y", "f8")])
    rec["y"] = 1.5
    got = pickle.loads(pickle.dumps(rec))  # a structured dtype travels as itself
    assert got.dtype == rec.dtype and (got["y"] == 1.5).all()
    # results in fresh memory are plain arrays; views stay shared
    assert type(a + 1) is np.ndarray and type(a[1:]) is type(a)


def test_shared_array_written_by_a_fork_child_is_seen_by_the_parent():
    a = allcores.shared_array(1000)
    p = FORK.Process(target=np.copyto, args=(a, np.arange(1000.0)))
    p.start()
    p.join()
    assert p.exitcode == 0 and (a == np.arange(1000.0)).all()


def _task_fill_row(arr, i):
    arr[i] = i
    return float(arr[i].sum())


def _task_sum(arr):
    return float(arr.sum())


def test_pool_tasks_write_a_shared_array_in_place():
    a = allcores.shared_array((8, 1000))
    with allcores.Pool(2) as pool:
        sums = pool.starmap(_task_fill_row, [(a, i) for i in range(8)])
    assert sums == [1000.0 * i for i in range(8)]
    assert (a == np.arange(8.0)[:, None]).all()


def test_views_and_slices_cross_by_reference():
    a = allcores.shared_array((10, 10))
    a[:] = np.arange(100.0).reshape(10, 10)
    for view in (a[2:5], a[:, 3], a[::-1, ::2], a.T, a[7, 7:8], a.reshape(100)[::7]):
        got = pickle.loads(pickle.dumps(view))
        assert got.shape == view.shape and (got == view).all()
        assert np.shares_memory(got, a)  # same process: the same mapping
    with allcores.Pool(1) as pool:
        assert pool.apply(_task_sum, (a[::-1, ::2],)) == float(a[::-1, ::2].sum())
        pool.apply(_task_fill_row, (a[2:4], 1))  # a view, written through
    assert (a[3] == 1).all()


def test_read_only_views_stay_read_only():
    a = allcores.shared_array(4)
    ro = a[:2]
    ro.flags.writeable = False
    got = pickle.loads(pickle.dumps(ro))
    assert not got.flags.writeable


def test_arrays_not_in_shared_memory_pickle_by_value():
    a = allcores.shared_array(4)
    b = a[[0, 2]]  # fancy indexing copies
    b[:] = 5
    got = pickle.loads(pickle.dumps(b))
    assert (got == 5).all() and (a == 0).all()


def test_handing_over_is_a_reference_of_the_same_size_for_1_mib_and_1_gib():
    """Constant-time hand-over: the pickle does not grow with the array (1 GiB is reserved,
    never touched here)."""
    small = allcores.shared_array(1 << 17)            # 1 MiB of float64
    big = allcores.shared_array((1 << 27,), "f8")     # 1 GiB
    s, b = pickle.dumps(small), pickle.dumps(big)
    assert len(s) < 400 and len(b) < 400 and abs(len(s) - len(b)) <= 8
    pickle.loads(s), pickle.loads(b)  # consume the pins
    with allcores.Pool(1) as pool:
        assert pool.apply(_task_fill_row, (big, 1 << 26)) == float(1 << 26)
    assert big[1 << 26] == float(1 << 26)
    raw = allcores.SharedBuffer(1 << 30)
    blob = pickle.dumps(raw)
    assert len(blob) < 300 and pickle.loads(blob) is raw
