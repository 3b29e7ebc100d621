"""The hand-written peer of the transfer cases: blocks of multiprocessing.shared_memory, made
once and reused, with a multiprocessing.Pool (fork) carrying only their names. This is the best
a user writes by hand: one copy into the block, a view on the other side, every mapping cached."""
from __future__ import annotations

import multiprocessing
from multiprocessing import shared_memory

from .workloads import make_payload, size_of

_ATTACHED = {}  # name -> SharedMemory: a worker maps a block once, as a careful user's code does


def _attach(name):
    shm = _ATTACHED.get(name)
    if shm is None:
        try:  # 3.13: a block another process owns is not the resource tracker's business
            shm = shared_memory.SharedMemory(name, track=False)
        except TypeError:
            shm = shared_memory.SharedMemory(name)
        _ATTACHED[name] = shm
    return shm


def view(shm, kind, n):
    """What the receiver gets, as from allcores: a numpy view of the block, or bytes (a bytes
    object owns its memory, so it is one copy, as allcores' bytes are)."""
    if kind == "numpy":
        import numpy as np
        return np.ndarray((n,), np.uint8, buffer=shm.buf)
    return bytes(shm.buf[:n])


def read_block(name, kind, n):
    return size_of(view(_attach(name), kind, n))


def fill_block(name, kind, n):
    _attach(name).buf[:n] = memoryview(make_payload(kind, n))
    return n


def array_ends(name, n):
    import numpy as np
    a = np.ndarray((n,), np.uint8, buffer=_attach(name).buf)
    return int(a[0]) + int(a[-1])


class ShmPool:
    label = "multiprocessing.shared_memory + Pool (hand-written)"

    def __init__(self, workers):
        self.p = multiprocessing.get_context("fork").Pool(workers)
        self.blocks = {}

    def block(self, n):
        if n not in self.blocks:
            self.blocks[n] = shared_memory.SharedMemory(create=True, size=n)
        return self.blocks[n]

    def to(self, x):
        n = size_of(x)
        blk = self.block(n)
        blk.buf[:n] = memoryview(x)
        return self.p.apply(read_block, (blk.name, "numpy" if hasattr(x, "nbytes") else "bytes",
                                         n))

    def back(self, kind, n):
        blk = self.block(n)
        self.p.apply(fill_block, (blk.name, kind, n))
        return view(blk, kind, n)

    def hand_off(self, n):
        return self.p.apply(array_ends, (self.block(n).name, n))

    def close(self):
        self.p.terminate()
        self.p.join()
        for blk in self.blocks.values():
            blk.close()
            try:
                blk.unlink()
            except FileNotFoundError:  # 3.11-3.12: the resource tracker, told of the block by
                pass                   # every worker that mapped it, may have unlinked it
