"""Queue across processes: order, many producers and consumers, big items, bounds, timeouts,
producers that exit at once, pool tasks."""
import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import time

import pytest

import allcores

pytestmark = [
    pytest.mark.timeout(120),
    # These tests fork on purpose; another test's pool may have left threads running, about
    # which Python 3.12+ warns at every fork.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

FORK = mp.get_context("fork")


def test_fifo_and_nonblocking_api():
    q = allcores.Queue()
    assert q.empty() and q.qsize() == 0 and not q.full() and q.maxsize == 0
    items = [1, "two", (3.0, None), {"four": [4]}, b"\x00" * 10, 2**100]
    for item in items:
        q.put(item)
    assert q.qsize() == len(items)
    assert [q.get() for _ in items] == items
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(ValueError):
        q.get(timeout=-1)  # as queue.Queue


def test_maxsize_bounds_the_count():
    q = allcores.Queue(2)
    q.put_nowait(1)
    q.put(2)
    assert q.full() and q.maxsize == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    assert q.get() == 1
    q.put(3)
    assert [q.get(), q.get()] == [2, 3]


def test_items_of_every_size_keep_order_through_ring_wraps():
    q = allcores.Queue()
    sizes = [0, 1, 7, 8, 9, 1000, 65_536, 65_537, 300_000, 3, 5_000_000, 100] * 3
    for round_ in range(2):
        for n in sizes:
            q.put(os.urandom(n) if n < 1000 else bytes([n % 251]) * n)
        for n in sizes:
            item = q.get()
            assert len(item) == n
            if n >= 1000:
                assert item == bytes([n % 251]) * n


def test_an_item_too_big_for_the_queue_raises():
    q = allcores.Queue(max_item_bytes=100_000)
    q.put(b"x" * 90_000)
    with pytest.raises(ValueError, match="max_item_bytes=100000"):
        q.put(b"x" * 200_000)
    assert len(q.get()) == 90_000
    small = allcores.Queue(max_item_bytes=1000)  # ring only
    with pytest.raises(ValueError, match="max_item_bytes=1000"):
        small.put(b"x" * 100_000)


def test_a_full_queue_memory_blocks_the_producer_until_a_get():
    n = (1 << 20) - 64  # pickled, just under max_item_bytes
    q = allcores.Queue(max_item_bytes=1 << 20)
    q.put(b"a" * n)   # the arena holds one such item
    with pytest.raises(queue.Full):
        q.put(b"b" * n, timeout=0.1)
    t = threading.Timer(0.2, q.get)
    t.start()
    q.put(b"c" * n, timeout=30)
    t.join()
    assert q.get() == b"c" * n


def _produce(q, start, n):
    for i in range(start, start + n):
        q.put(i)


def _consume(q, out, n):
    total = 0
    for _ in range(n):
        total += q.get(timeout=60)
    out.add(total)


def test_many_producers_and_consumers_across_processes():
    q, total = allcores.Queue(maxsize=64), allcores.Counter()
    n = 5000
    producers = [FORK.Process(target=_produce, args=(q, k * n, n)) for k in range(3)]
    consumers = [FORK.Process(target=_consume, args=(q, total, n * 3 // 2)) for _ in range(2)]
    for p in producers + consumers:
        p.start()
    for p in producers + consumers:
        p.join(60)
    assert [p.exitcode for p in producers + consumers] == [0] * 5
    assert total.value == sum(range(3 * n)) and q.empty()


def _put_and_exit(q, payload):
    q.put(payload)
    os._exit(0)  # no flush, no feeder thread to wait for


def test_items_survive_a_producer_that_exits_at_once():
    q = allcores.Queue()
    big = os.urandom(3_000_000)
    procs = [FORK.Process(target=_put_and_exit, args=(q, x)) for x in (b"small", big)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    got = {q.get(timeout=30), q.get(timeout=30)}
    assert got == {b"small", big}


def test_a_killed_process_does_not_wedge_the_queue():
    q = allcores.Queue()
    ready = allcores.Event()

    def spin():
        ready.set()
        while True:  # killed at an arbitrary point, possibly inside put or get
            q.put(b"z" * 1000)
            q.get()

    p = FORK.Process(target=spin)
    p.start()
    assert ready.wait(30)
    time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    q.put("after")
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            break
    assert items[-1] == "after" and all(i == b"z" * 1000 for i in items[:-1])


def test_get_waits_for_a_child_put():
    q = allcores.Queue()
    pid = os.fork()
    if pid == 0:
        time.sleep(0.1)
        q.put({"from": "child"})
        os._exit(0)
    assert q.get(timeout=30) == {"from": "child"}
    os.waitpid(pid, 0)


def test_ctrl_c_interrupts_a_blocked_get():
    q = allcores.Queue()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        q.get()
    timer.join()


def test_unpicklable_item_raises_in_put():
    q = allcores.Queue()
    with pytest.raises(Exception):
        q.put(lambda: 1)
    assert q.empty()


def test_shared_objects_travel_through_a_queue_by_reference():
    q, counter = allcores.Queue(), allcores.Counter()
    q.put(counter)
    pid = os.fork()
    if pid == 0:
        c = q.get(timeout=30)
        c += 5
        os._exit(0)
    os.waitpid(pid, 0)
    assert counter.value == 5


def _task_echo(q_in, q_out):
    item = q_in.get(timeout=30)
    q_out.put(item * 2)
    return True


def test_pool_tasks_use_queues():
    q_in, q_out = allcores.Queue(), allcores.Queue()
    for i in range(10):
        q_in.put(i)
    with allcores.Pool(2) as pool:
        assert all(pool.starmap(_task_echo, [(q_in, q_out)] * 10))
    assert sorted(q_out.get() for _ in range(10)) == [2 * i for i in range(10)]


def test_queue_pickles_by_reference():
    q = allcores.Queue()
    q2 = pickle.loads(pickle.dumps(q))
    q2.put("x")
    assert q2._segment is q._segment
    blob = pickle.dumps(q2)
    assert q.get_nowait() == "x" and len(blob) < 300
    pickle.loads(blob)
    q.close()
    q.join_thread()


def test_a_big_item_fits_again_once_smaller_ones_are_gone():
    """The queue's memory holds one largest item; after smaller items came and went (splitting
    it), a largest item must fit again on the empty queue, not wait forever."""
    q = allcores.Queue(max_item_bytes=8 << 20)
    for size in (100_000, 3 << 20, 1000):
        q.put(b"s" * size)
        assert len(q.get(timeout=10)) == size
    q.put(b"b" * ((8 << 20) - 4096), timeout=10)
    assert len(q.get(timeout=10)) == (8 << 20) - 4096
