"""A numpy.memmap argument arrives in the worker as a mapping of the same file region in the same
mode: what workers write into a "w+" or "r+" memmap is in the file; "r" arrives read-only;
slices and strided views arrive as the same view; a copy-on-write ("c") memmap travels as its
values, as the stdlib sends every memmap. Results that are memmaps come back the same way."""
import os

import pytest

np = pytest.importorskip("numpy")

import allcores  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def fill(out, i):
    out[i] = i + 1
    return type(out).__name__, out.mode


def describe(a):
    return (type(a).__name__, getattr(a, "mode", None), bool(a.flags.writeable),
            float(np.asarray(a).sum()), getattr(a, "filename", None))


def write_row(table, row, value):
    table[row] = value


def read_bytes(filename):
    with open(filename, "rb") as f:
        return f.read()


def open_region(filename):
    return np.memmap(filename, dtype=np.float64, mode="r+", offset=8, shape=(3,))


@pytest.fixture
def pool():
    with allcores.Pool(2) as p:
        yield p
        p.close()
        p.join()


def test_workers_write_into_a_memmap_the_caller_opened(pool, tmp_path):
    filename = str(tmp_path / "out.mmap")
    out = np.memmap(filename, dtype=np.float64, shape=(40,), mode="w+")
    kinds = pool.starmap(fill, [(out, i) for i in range(40)], chunksize=3)
    assert set(kinds) == {("memmap", "r+")}  # "w+" is mapped again as "r+": never truncated
    expected = np.arange(1, 41, dtype=np.float64)
    assert read_bytes(filename) == expected.tobytes()  # the bytes workers wrote
    assert (out == expected).all()  # and the caller's own mapping sees them


def test_memmaps_arrive_as_the_same_region_in_the_same_mode(pool, tmp_path):
    filename = str(tmp_path / "in.mmap")
    values = np.arange(20, dtype=np.float64).reshape(5, 4)
    values.tofile(filename)
    for mode in ("r", "r+"):
        m = np.memmap(filename, dtype=np.float64, mode=mode, shape=(5, 4))
        writable = mode == "r+"
        for view in (m, m[1:3], m[:, ::2], m.T[::-1], m[2]):
            kind, got_mode, got_writable, total, got_name = pool.apply(describe, (view,))
            assert (kind, got_mode, got_writable, got_name) == \
                ("memmap", mode, writable, os.path.abspath(filename))
            assert total == float(np.asarray(view).sum())


def test_a_view_written_by_a_worker_lands_in_its_place(pool, tmp_path):
    filename = str(tmp_path / "table.mmap")
    table = np.memmap(filename, dtype=np.int32, mode="w+", shape=(6, 5))
    pool.starmap(write_row, [(table[:, 1:4], r, r + 10) for r in range(6)])  # strided views
    expected = np.zeros((6, 5), dtype=np.int32)
    expected[:, 1:4] = np.arange(10, 16)[:, None]
    assert (np.fromfile(filename, dtype=np.int32).reshape(6, 5) == expected).all()


def test_small_memmaps_as_keywords_and_through_the_executor(tmp_path):
    filename = str(tmp_path / "small.mmap")
    small = np.memmap(filename, dtype=np.uint8, mode="w+", shape=(3,))
    with allcores.ProcessPoolExecutor(2) as ex:
        ex.submit(write_row, small, 1, 7).result(60)
        assert ex.submit(describe, small).result(60)[:3] == ("memmap", "r+", True)
        ex.submit(lambda table, row: write_row(table, row, 9), table=small, row=2).result(60)
    assert read_bytes(filename) == bytes([0, 7, 9])


def test_a_copy_on_write_memmap_travels_as_its_values(pool, tmp_path):
    filename = str(tmp_path / "cow.mmap")
    np.zeros(4).tofile(filename)
    cow = np.memmap(filename, dtype=np.float64, mode="c")
    cow[0] = 5.0  # only in this process's private pages, not in the file
    kind, mode, _, total, _ = pool.apply(describe, (cow,))
    assert (kind, mode, total) == ("ndarray", None, 5.0)


def test_a_memmap_whose_file_was_removed_travels_as_its_values(pool, tmp_path):
    filename = str(tmp_path / "gone.mmap")
    np.full(4, 2.0).tofile(filename)
    orphan = np.memmap(filename, dtype=np.float64, mode="r+")
    os.unlink(filename)  # the mapping lives on in this process only
    assert pool.apply(describe, (orphan,))[:4] == ("ndarray", None, True, 8.0)


def test_a_memmap_result_comes_back_as_a_mapping(pool, tmp_path):
    filename = str(tmp_path / "result.mmap")
    np.arange(5, dtype=np.float64).tofile(filename)
    got = pool.apply(open_region, (filename,))
    assert type(got) is np.memmap and got.mode == "r+" and list(got) == [1.0, 2.0, 3.0]
    got[0] = 42.0
    got.flush()
    assert np.fromfile(filename)[1] == 42.0
