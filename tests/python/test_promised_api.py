"""What the reference promises beside the standard library's API: Queue's max_item_bytes,
progress bars on the executor's and asyncio's maps, worker_pids() as soon as a pool exists, and
allcores.imap_unordered on the default pool."""
import asyncio
import io
import pickle
import re

import pytest

import allcores
import allcores.aio
from backend_tasks import add, square

BAR_DONE = re.compile(r"(\d+)/(\d+) \[")


def _final_count(text):
    bars = BAR_DONE.findall(text.replace("\r", "\n"))
    assert bars, f"no tqdm bar in {text!r}"
    return tuple(map(int, bars[-1]))


def test_queue_refuses_an_item_over_max_item_bytes():
    q = allcores.Queue(max_item_bytes=10)
    with pytest.raises(ValueError, match="max_item_bytes=10"):
        q.put("x" * 100)
    assert q.empty()
    q.put(1)  # a small one still fits, and the queue works on
    assert q.get(timeout=10) == 1 and q.max_item_bytes == 10


def test_queue_limit_travels_with_the_queue():
    q = allcores.Queue(max_item_bytes=64)
    copy = pickle.loads(pickle.dumps(q))
    assert copy.max_item_bytes == 64
    with pytest.raises(ValueError, match="max_item_bytes"):
        copy.put(b"y" * 100)
    copy.put("ok")
    assert q.get(timeout=10) == "ok"


def test_queue_limit_holds_in_a_pool_worker():
    q = allcores.Queue(max_item_bytes=50)
    with allcores.Pool(1) as pool:
        assert pool.apply(_put_big, (q,)) == "ValueError"


def _put_big(q):
    try:
        q.put("z" * 200)
    except ValueError:
        return "ValueError"
    return "accepted"


@pytest.mark.parametrize("bad", [0, -1, 1 << 31, 2.5, "10"])
def test_queue_bad_max_item_bytes(bad):
    with pytest.raises((ValueError, TypeError), match="max_item_bytes"):
        allcores.Queue(max_item_bytes=bad)


def test_executor_map_progress():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    with allcores.ProcessPoolExecutor(2) as ex:
        got = list(ex.map(add, range(20), range(20), progress={"file": out, "mininterval": 0}))
    assert got == [2 * i for i in range(20)]
    assert _final_count(out.getvalue()) == (20, 20)


def test_executor_map_progress_true_writes_to_stderr(capsys):
    pytest.importorskip("tqdm")
    with allcores.ProcessPoolExecutor(2) as ex:
        assert list(ex.map(square, range(7), progress=True)) == [i * i for i in range(7)]
    assert _final_count(capsys.readouterr().err) == (7, 7)


def test_aio_maps_progress():
    pytest.importorskip("tqdm")
    outs = [io.StringIO() for _ in range(3)]

    async def main(pool):
        a = await allcores.aio.map(pool, square, range(15),
                                   progress={"file": outs[0], "mininterval": 0})
        b = await allcores.aio.starmap(pool, add, [(i, 1) for i in range(6)],
                                       progress={"file": outs[1], "mininterval": 0})
        c = [v async for v in allcores.aio.imap(pool, square, list(range(9)),
                                                 progress={"file": outs[2], "mininterval": 0})]
        return a, b, c

    with allcores.Pool(2) as pool:
        a, b, c = asyncio.run(asyncio.wait_for(main(pool), 120))
    assert a == [i * i for i in range(15)] and b == [i + 1 for i in range(6)]
    assert c == [i * i for i in range(9)]
    assert [_final_count(o.getvalue()) for o in outs] == [(15, 15), (6, 6), (9, 9)]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_worker_pids_right_after_the_pool_starts(n):
    with allcores.Pool(n) as pool:
        pids = pool.worker_pids()
        assert len(pids) == n and len(set(pids)) == n
    with allcores.ProcessPoolExecutor(n) as ex:
        assert len(ex._engine.worker_pids()) == n


def _own_pid(_=None):
    import os
    return os.getpid()


def test_worker_pids_are_the_workers():
    with allcores.Pool(2) as pool:
        pids = set(pool.worker_pids())
        seen = set(pool.map(_own_pid, range(50), chunksize=1))
        assert seen <= pids


def test_worker_pids_of_a_terminated_pool_does_not_wait():
    pool = allcores.Pool(2)
    pool.terminate()
    pool.join()
    assert isinstance(pool.worker_pids(), list)


def test_default_imap_unordered():
    got = allcores.imap_unordered(square, range(30))
    assert sorted(got) == [i * i for i in range(30)]
    assert "imap_unordered" in allcores.__all__
    assert sorted(allcores.imap_unordered(square, iter(range(5)), chunksize=2)) == \
        [0, 1, 4, 9, 16]
