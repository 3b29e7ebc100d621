"""Big arguments and results cross through the shared arena: numpy arrays and memoryviews arrive
as zero-copy views of the receiver's own copy, bytes and bytearrays as themselves; memory stays flat."""
import gc
import pickle
import time

import psutil
import pytest

import allcores
from engine_tasks import ident

np = pytest.importorskip("numpy")
pytestmark = pytest.mark.timeout(120)

MB = 1 << 20


def describe(x):
    return type(x).__name__, (x.nbytes if hasattr(x, "nbytes") else len(x))


def array_info(a):
    return a.dtype.str, a.shape, float(a.sum()), a.flags.writeable, a.flags.owndata


@pytest.fixture(scope="module")
def pool():
    with allcores.Pool(2) as p:
        yield p


def test_big_bytes_arrive_as_bytes_without_a_copy(pool):
    """No copy on receipt: a big bytes object arrives as a bytes (a subclass, SharedBytes) mapped
    from the block it came in; it behaves as bytes and pickles as plain bytes."""
    obj = bytes(range(256)) * (32 * 1024)
    assert pool.apply(describe, (obj,)) == ("SharedBytes", len(obj))
    back = pool.apply(ident, (obj,))
    assert isinstance(back, bytes) and type(back) is allcores._core.SharedBytes
    assert back == obj and hash(back) == hash(obj) and back[-3:] == obj[-3:]
    assert back.decode("latin-1") == obj.decode("latin-1") and bytes(back) == obj
    assert type(bytes(back)) is bytes and type(back + b"x") is bytes
    again = pickle.loads(pickle.dumps(back))
    assert type(again) is bytes and again == obj
    assert pool.apply(ident, (back,)) == obj  # and it travels on as bytes
    with pytest.raises(TypeError):
        allcores._core.SharedBytes(b"x")


def test_big_bytes_outlive_the_pool_and_free_their_block():
    obj = b"z" * (4 * MB)
    with allcores.Pool(1) as p:
        region = p._engine.region
        backs = [p.apply(ident, (obj,)) for _ in range(3)]
        in_use = region.stats()["arena_allocs"] - region.stats()["arena_frees"]
    gc.collect()
    assert all(b == obj for b in backs)  # the mapping lives as long as they do
    del backs
    gc.collect()
    st = region.stats()
    assert st["arena_allocs"] - st["arena_frees"] <= in_use - 3


def test_big_bytearray_arrives_as_its_own_bytearray(pool):
    obj = bytearray(b"a" * (8 * MB))
    assert pool.apply(describe, (obj,)) == ("bytearray", len(obj))
    back = pool.apply(ident, (obj,))
    assert type(back) is bytearray and back == obj
    back.extend(b"more")  # it owns its memory: it can grow
    assert len(back) == len(obj) + 4


def test_shared_bytes_of_anything_but_an_arena_view_is_a_copy():
    from allcores import _oob
    data = memoryview(b"q" * (1 << 17))
    got = _oob._rebuild_bytes(data)  # not a view of an arena block: a plain copy
    assert type(got) is bytes and got == data


def _in_fork_child(action):
    """Runs action() in a fork child, which then leaves at once (no pytest cleanup there)."""
    import os
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            action()
        except BaseException:  # noqa: B902
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_fork_child_never_touches_the_parents_received_bytes():
    """The object lives in private memory: a fork child's reference counting (taking references
    it never gives back, dropping the ones it inherited) changes nothing in the parent."""
    import sys
    obj = bytes(range(256)) * 4096
    with allcores.Pool(1) as p:
        held = [p.apply(ident, (obj,))]
        count = sys.getrefcount(held[0])
        keep = []

        def take_and_drop():
            keep.extend([held[0]] * 5)  # references never given back (the child leaves)
            held.clear()
            gc.collect()
        _in_fork_child(take_and_drop)
        after = sys.getrefcount(held[0])  # outside the assert: pytest's rewriting holds a ref
        assert after == count
        for _ in range(10):
            p.apply(ident, (obj[::-1],))
        assert held[0] == obj


def test_numpy_argument_is_a_view_not_a_copy(pool):
    a = np.arange(2 * MB, dtype=np.float64).reshape(1024, -1)
    dtype, shape, total, writeable, owndata = pool.apply(array_info, (a,))
    assert (dtype, shape, total) == (a.dtype.str, a.shape, float(a.sum()))
    assert writeable is True and owndata is False  # a view of the arena block, not a copy


def test_numpy_result_is_a_view_that_outlives_the_pool():
    a = np.random.default_rng(1).random(3 * MB)
    with allcores.Pool(1) as p:
        back = p.apply(ident, (a,))
        many = p.map(ident, [a[:1000], a], chunksize=1)
    gc.collect()
    back[0] = -1.0  # the receiver's own copy: writable, the sender's array is untouched
    assert a[0] != -1.0
    back[0] = a[0]
    np.testing.assert_array_equal(back, a)  # the mapping lives as long as the view
    np.testing.assert_array_equal(many[1], a)


def test_a_fork_child_dropping_a_received_view_leaves_the_parents_block_alone():
    """A fork child inherits the parent's zero-copy results but not their blocks: when it drops
    them (or ends with sys.exit(), which deallocates everything) the parent's data must not be
    freed and handed to the next payload."""
    a = np.arange(MB // 8, dtype=np.float64)
    with allcores.Pool(1) as p:
        region = p._engine.region
        back = p.apply(ident, (a,))

        def in_use():
            st = region.stats()
            return st["arena_allocs"] - st["arena_frees"]
        deadline = time.monotonic() + 10
        while in_use() != 1:  # the worker lets its argument go just after it sends the result
            assert time.monotonic() < deadline, region.stats()
            time.sleep(0.01)
        held = [back]
        del back

        def drop():
            held.clear()  # the child's only reference: the view is deallocated there
            gc.collect()
        _in_fork_child(drop)
        assert in_use() == 1  # the block under `back` is still the parent's
        for _ in range(20):  # payloads that would land in the block had the child freed it
            p.apply(ident, (np.zeros(MB // 8),))
        np.testing.assert_array_equal(held[0], a)


def test_memoryview_argument_arrives_as_memoryview(pool):
    mv = memoryview(bytearray(b"m" * MB))
    assert pool.apply(describe, (mv,)) == ("memoryview", MB)


def test_nested_and_kwargs(pool):
    a = np.ones(MB // 8)
    out = pool.submit(_kw, [a, a], scale=a).result(30)
    assert out == 2 * a.size + a.size


def _kw(arrs, scale):
    return int(sum(x.size for x in arrs) + scale.size)


def _mappings():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def _ours_in_dev_shm():
    """/dev/shm entries this test process could have made (other jobs on the machine, joblib's
    or loky's, come and go)."""
    import os
    pids = {str(os.getpid())} | {str(c.pid) for c in psutil.Process().children(recursive=True)}
    return {n for n in os.listdir("/dev/shm") if "allcores" in n or any(p in n for p in pids)}


def test_memory_flat_over_many_large_transfers(pool):
    """10,000 large transfers (1 MiB numpy arrays and bytes, each way) leave the
    parent's and the workers' memory flat, touch no new arena memory beyond a few blocks, free
    every block, and leave nothing in /dev/shm."""
    import os
    a = np.ones(MB // 8)
    b = b"t" * MB
    me = psutil.Process()
    workers = [psutil.Process(pid) for pid in pool._engine.worker_pids()]
    for _ in range(50):
        pool.apply(ident, (a,))
        pool.apply(ident, (b,))
    gc.collect()
    rss0 = me.memory_info().rss
    workers_rss0 = [w.memory_info().rss for w in workers]
    shm0 = _ours_in_dev_shm()
    maps0 = _mappings()
    region = pool._engine.region
    touched0 = region.stats()["arena_pages_touched"]
    for i in range(5000):
        assert pool.apply(ident, (a,)).shape == a.shape
        assert len(pool.apply(ident, (b,))) == MB
    gc.collect()
    st = region.stats()
    # Which blocks are free when the next one is taken depends on when the worker drops its
    # argument, so the high-water mark may still rise by a block or two: never per transfer.
    grown_mib = (st["arena_pages_touched"] - touched0) * 4096 / MB
    assert grown_mib <= 16, f"{grown_mib:.0f} MiB of new arena memory touched"
    # Every block is freed, even the last argument of a worker now idle (the worker lets it go
    # just after it sends its result: give it a moment).
    deadline = time.monotonic() + 10
    while region.stats()["arena_allocs"] != region.stats()["arena_frees"]:
        assert time.monotonic() < deadline, f"blocks never freed: {region.stats()}"
        time.sleep(0.01)
    assert me.memory_info().rss - rss0 < 32 * MB
    for w, rss in zip(workers, workers_rss0):
        assert w.memory_info().rss - rss < 32 * MB
    assert _ours_in_dev_shm() == shm0
    assert _mappings() <= maps0 + 10  # received bytes unmap their view when they go


def test_big_bytes_travel_out_of_band():
    """The pickler never asks reducer_override() about exact bytes: big ones are marked first,
    so their memory is handed over as a part of the payload (one copy into shared memory), not
    copied into the pickle stream."""
    from allcores import _oob
    big = bytes(range(256)) * 1024
    parts = _oob.dumps((b"fn", (big, [big]), {"k": big}))
    assert sum(1 for p in parts if memoryview(p).nbytes == len(big)) == 3
    assert sum(memoryview(p).nbytes for p in parts) < 4 * len(big)
    fn, args, kwargs = _oob.loads(b"".join(bytes(p) for p in parts))
    assert type(args[0]) is bytes and args == (big, [big]) and kwargs == {"k": big}
