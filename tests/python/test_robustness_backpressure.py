"""Back-pressure: submitting far more tasks than the workers can take never piles them all up in
the caller: submit() blocks while the pool's queue is full, and everything completes once the
workers move again. (multiprocessing and concurrent.futures queue without bound.)
"""
import itertools
import threading

import pytest

from helpers_tasks import open_gate, square, wait_for_file, wait_until

pytestmark = pytest.mark.timeout(60)

N = 20_000


def test_submit_blocks_while_the_workers_are_stuck(allcores_impl, gate):
    with allcores_impl.pool(1) as pool:
        blocker = pool.submit(wait_for_file, gate)
        futures = []
        finished = threading.Event()

        def feed():
            for i in range(N):
                futures.append(pool.submit(square, i))
            finished.set()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: len(futures) > 100, what="the first submissions")
        finished.wait(1.0)  # time enough to queue everything if nothing pushes back
        assert not finished.is_set(), "all tasks were queued while no worker could take one"
        queued = len(futures)
        assert queued < N
        open_gate(gate)
        assert finished.wait(50)
        feeder.join(10)
        assert blocker.result(30) == gate
        assert [f.result(30) for f in futures[::997]] == [i * i for i in range(0, N, 997)]


def test_executor_submit_blocks_while_the_workers_are_stuck(allcores_impl, gate):
    with allcores_impl.executor(1) as ex:
        blocker = ex.submit(wait_for_file, gate)
        futures = []
        finished = threading.Event()

        def feed():
            for i in range(N):
                futures.append(ex.submit(square, i))
            finished.set()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: len(futures) > 100, what="the first submissions")
        finished.wait(1.0)
        assert not finished.is_set(), "all tasks were queued while no worker could take one"
        open_gate(gate)
        assert finished.wait(50)
        feeder.join(10)
        assert blocker.result(30) == gate
        assert sum(f.result(30) for f in futures) == sum(i * i for i in range(N))


@pytest.mark.parametrize("kind", ["numpy", "bytes"])
def test_arguments_far_larger_than_the_region_stream_through_it(allcores_impl, monkeypatch,
                                                                 kind):
    """Queued arguments ten times the size of the pool's shared arena, each task answering with
    a result as big: submit() waits for room, and the workers can always send their results (the
    arena keeps a part for them), so everything completes instead of deadlocking."""
    import allcores._engine as engine
    monkeypatch.setattr(engine, "ARENA_BYTES", 64 << 20)
    n, size = 80, 6 << 20  # 480 MiB through a 64 MiB arena
    if kind == "numpy":
        np = pytest.importorskip("numpy")
        from helpers_tasks import doubled as task
        args = [np.full(size // 8, float(i)) for i in range(4)]
    else:
        from helpers_tasks import ident as task
        args = [bytes([i]) * size for i in range(4)]
    with allcores_impl.pool(2) as pool:
        futures = [pool.apply_async(task, (args[i % 4],)) for i in range(n)]
        for i, f in enumerate(futures):
            out = f.get(50)
            if kind == "numpy":
                assert out.shape == args[0].shape and out[0] == out[-1] == 2.0 * (i % 4)
                assert out.flags.writeable  # as multiprocessing gives it, copied or not
            else:
                assert out == args[i % 4]



@pytest.mark.parametrize("kind", ["numpy", "bytes"])
def test_payloads_of_mixed_sizes_never_leave_a_result_waiting(allcores_impl, monkeypatch, kind):
    """Payloads of mixed sizes split the arena's blocks, which merge again only once it empties,
    so queued arguments can hold every block a big result would need while the bytes free are
    enough: such a result travels in a segment of its own instead of waiting for room that only
    results could free, and everything completes in order."""
    import random
    import allcores._engine as engine
    monkeypatch.setattr(engine, "ARENA_BYTES", 64 << 20)
    rng = random.Random(1)
    sizes = [rng.choice([100, 70_000, 1 << 20, 3 << 20, 6 << 20, 12 << 20]) for _ in range(100)]
    if kind == "numpy":
        np = pytest.importorskip("numpy")
        from helpers_tasks import doubled as task
        args = [np.full(max(1, size // 8), float(i)) for i, size in enumerate(sizes)]
    else:
        from helpers_tasks import ident as task
        args = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    with allcores_impl.pool(2) as pool:
        results = pool.imap(task, args)
        for i, arg in enumerate(args):
            out = results.next(timeout=50)
            if kind == "numpy":
                assert out.shape == arg.shape and out[0] == out[-1] == 2.0 * i
                assert out.flags.writeable
            else:
                assert out == arg


def test_a_task_goes_while_the_caller_holds_the_arena_in_results(allcores_impl, monkeypatch):
    """Results kept as zero-copy views hold their arena blocks as long as the caller keeps them;
    a task that then finds no room, with nothing in flight that could free some, goes anyway
    (in a segment of its own) instead of waiting forever."""
    np = pytest.importorskip("numpy")
    import allcores._engine as engine
    from helpers_tasks import doubled, zeros
    monkeypatch.setattr(engine, "ARENA_BYTES", 64 << 20)
    with allcores_impl.pool(2) as pool:
        held = [pool.apply(zeros, (6 << 17,)) for _ in range(6)]   # 6 MiB each
        big = np.ones(3 << 20)   # 24 MiB: more than the room tasks may take now
        out = pool.apply_async(doubled, (big,)).get(50)
        assert out.shape == big.shape and out[0] == out[-1] == 2.0
        assert all(h.shape == (6 << 17,) and not h.any() for h in held)

class _Counted:
    """An endless input that counts the items read from it."""

    def __init__(self):
        self.read = 0

    def __iter__(self):
        while True:
            self.read += 1
            yield self.read


def test_close_keeps_back_pressure_on_a_live_imap(allcores_impl):
    # close() used to queue the whole rest of the input (an endless one: for ever, gigabytes).
    src = _Counted()
    pool = allcores_impl.pool(2)
    try:
        it = pool.imap(square, src)
        assert [next(it) for _ in range(10)] == [x * x for x in range(1, 11)]
        pool.close()  # returns at once
        assert [next(it) for _ in range(1000)] == [x * x for x in range(11, 1011)]
        assert src.read < 2_000_000  # read as consumed (at most a window ahead)
    finally:
        pool.terminate()


def test_join_after_close_cancels_a_dropped_endless_imap(allcores_impl):
    src = _Counted()
    pool = allcores_impl.pool(2)
    it = pool.imap(square, src)
    assert next(it) == 1
    del it  # dropped, as a `break` out of its loop does
    pool.close()
    pool.join()  # returns: nobody can consume the rest
    read = src.read
    assert read < 1_000_000


def test_close_then_join_then_iterate(allcores_impl):
    # multiprocessing's order of calls still works: join() feeds the rest without the consumer.
    pool = allcores_impl.pool(2)
    it = pool.imap(square, iter(range(5000)))
    pool.close()
    pool.join()
    assert list(it) == [x * x for x in range(5000)]


def test_close_while_iterating_lazily(allcores_impl):
    pool = allcores_impl.pool(2)
    src = _Counted()
    it = pool.imap_unordered(square, itertools.takewhile(lambda x: x <= 50_000, src))
    pool.close()
    assert sorted(it) == [x * x for x in range(1, 50_001)]
    pool.join()
