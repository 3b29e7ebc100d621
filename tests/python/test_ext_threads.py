"""The C extension under threads that change what it reads: the payload scan (wants_oob) walks
lists and dicts that other threads grow, shrink and replace items of, and buffer views of one
received block are taken and released from many threads. On a free-threaded build without the
GIL this is where borrowed references would crash; elsewhere it is the GIL's switching that
interleaves them. Each test ends with the pool still usable."""
import threading

import allcores
from allcores import _core

BIG = 1 << 17  # above OOB_MIN_BYTES
ROUNDS = 3000


def _hammer(mutate, scan, seconds_cap=60):
    """Runs mutate() and scan() in two threads each until the scanners are done."""
    stop = threading.Event()
    errors = []

    def mutator():
        try:
            while not stop.is_set():
                mutate()
        except BaseException as exc:  # noqa: B902
            errors.append(exc)

    def scanner():
        try:
            for _ in range(ROUNDS):
                scan()
        except BaseException as exc:  # noqa: B902
            errors.append(exc)
    mutators = [threading.Thread(target=mutator) for _ in range(2)]
    scanners = [threading.Thread(target=scanner) for _ in range(2)]
    for t in mutators + scanners:
        t.start()
    for t in scanners:
        t.join(seconds_cap)
    stop.set()
    for t in mutators:
        t.join(seconds_cap)
    assert not any(t.is_alive() for t in mutators + scanners), "a thread hung"
    assert errors == []


def test_scanning_a_list_that_other_threads_change():
    shared = [b"x"] * 8

    def mutate():
        shared.append(bytes(BIG))
        shared[0] = bytearray(BIG)
        del shared[1:]
        shared.extend([b"y"] * 8)
        shared[-1] = b"z"

    def scan():
        assert _core.wants_oob(shared) in (True, False)
    _hammer(mutate, scan)


def test_scanning_a_dict_that_other_threads_change():
    shared = {i: b"x" for i in range(8)}

    def mutate():
        shared["big"] = bytes(BIG)
        shared[3] = bytearray(8)
        shared.pop("big", None)
        for i in range(8, 16):
            shared[i] = b"y"
        for i in range(8, 16):
            shared.pop(i, None)

    def scan():
        assert _core.wants_oob(shared, ()) in (True, False)
    _hammer(mutate, scan)


def test_views_of_one_received_block_from_many_threads():
    with allcores.Pool(1) as pool:
        block = pool.apply(bytearray, (BIG,))  # a big result arrives as a view of its block
        assert len(block) == BIG

        def take_views():
            for _ in range(200):
                with memoryview(block) as m:
                    assert m.nbytes == BIG
        threads = [threading.Thread(target=take_views) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        del block
        assert pool.apply(abs, (-1,)) == 1
