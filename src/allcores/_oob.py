"""Big buffers cross the shared region out of band: copied once into it, never copied out.

A payload with large bytes, bytearrays, memoryviews or numpy arrays is framed as

    [u32 n][u64 len(stream)][u64 len(buf1)] ... [stream] [pad][buf1] [pad][buf2] ...

with every buffer 64-byte aligned, in a message whose kind word has the out-of-band bit
(_protocol.OOB). The sender hands the parts to the region, which copies them
straight into an arena block (no intermediate pickle of the data); the receiver unpickles the
stream with the buffers as zero-copy views of that block, which stays alive while any view does.
numpy arrays and memoryviews arrive as views of the receiver's own copy in the block (writable,
as from multiprocessing, with no second copy). bytes arrive as _core.SharedBytes, a bytes
subclass living in a private copy-on-write mapping of the block's pages (no copy: see
src/ext/received_bytes.c); a bytearray can grow, so it must own its memory: it is copied.
"""
from __future__ import annotations

import io
import pickle
import struct

from . import _core
from . import _memmap
from ._protocol import PICKLE_PROTOCOL

OOB_MIN_BYTES = _core.OOB_MIN_BYTES  # 64 KiB
ALIGN = _core.OOB_ALIGN  # 64: see include/allcores/oob_frame.h
_ZEROS = bytes(ALIGN)
_BYTES_TYPES = (bytes, _core.SharedBytes)
_BUFFER_TYPES = _BYTES_TYPES + (bytearray, memoryview)


# Is obj a big bytes, bytearray, memoryview or numpy array? Does one of objs, or an element one
# level inside a tuple, list or dict of them, hold one? (C: every payload asks, src/ext/oob_scan.c)
is_big = _core.is_big
wants_oob = _core.wants_oob


def _rebuild_bytes(buf):
    return _core.shared_bytes(buf)


def _rebuild_bytearray(buf):
    return _core.bytearray_copy(buf)


def _rebuild_memoryview(buf):
    return memoryview(buf)


class _Pickler(pickle.Pickler):
    """Sends big bytes, bytearrays and memoryviews out of band (numpy does so by itself)."""

    memmap = None  # numpy.memmap while numpy is imported: sent by reference (see _memmap)

    def reducer_override(self, obj):
        t = type(obj)
        if t is self.memmap:
            return _memmap.reduce(obj)
        if t in _BUFFER_TYPES and is_big(obj):
            if t is memoryview and not obj.contiguous:
                return NotImplemented
            rebuild = (_rebuild_bytes if t in _BYTES_TYPES else
                       _rebuild_bytearray if t is bytearray else _rebuild_memoryview)
            return rebuild, (pickle.PickleBuffer(obj),)
        return NotImplemented


class _BigBuffer:
    """Stands for a big bytes or bytearray object while pickling: the C pickler never asks
    reducer_override() about them (bytes: a documented shortcut; bytearray: pickled in band as
    BYTEARRAY8 first), so they would be copied into the stream."""
    __slots__ = ("data", "rebuild")

    def __init__(self, data, rebuild):
        self.data = data
        self.rebuild = rebuild

    def __reduce_ex__(self, protocol):
        return self.rebuild, (pickle.PickleBuffer(self.data),)


def _mark_big_bytes(obj, depth=3):
    """obj with its big bytes and bytearrays (inside tuples, lists and dicts, `depth` levels
    down: a call's (fn, args, kwargs), a chunk's items and their tuples) replaced by _BigBuffer."""
    t = type(obj)
    if t in _BYTES_TYPES:
        return _BigBuffer(obj, _rebuild_bytes) if len(obj) >= OOB_MIN_BYTES else obj
    if t is bytearray:
        return _BigBuffer(obj, _rebuild_bytearray) if len(obj) >= OOB_MIN_BYTES else obj
    if depth == 0:
        return obj
    if t is tuple:
        return tuple(_mark_big_bytes(x, depth - 1) for x in obj)
    if t is list:
        return [_mark_big_bytes(x, depth - 1) for x in obj]
    if t is dict:
        return {k: _mark_big_bytes(v, depth - 1) for k, v in obj.items()}
    return obj


def dumps(obj) -> list:
    """Pickles obj with its big buffers out of band; returns the payload as a list of parts."""
    obj = _mark_big_bytes(obj)
    buffers = []
    f = io.BytesIO()
    p = _Pickler(f, PICKLE_PROTOCOL, buffer_callback=buffers.append)
    p.memmap = _memmap.memmap_type()
    try:
        p.dump(obj)
    except Exception:
        buffers = []
        f = io.BytesIO()
        p = _memmap.cloud_pickler()(f, PICKLE_PROTOCOL, buffer_callback=buffers.append)
        p.dump(obj)
    if len(buffers) > _core.OOB_MAX_BUFFERS:  # more than a frame may hold: send them in band
        buffers = []
        f = io.BytesIO()
        _memmap.cloud_pickler()(f, PICKLE_PROTOCOL).dump(obj)
    stream = f.getbuffer()
    views = [b.raw() for b in buffers]
    n = len(views)
    header = struct.pack(f"<I{n + 1}Q", n, stream.nbytes, *(v.nbytes for v in views))
    parts = [header, stream]
    at = len(header) + stream.nbytes
    for v in views:
        pad = -at % ALIGN
        if pad:
            parts.append(_ZEROS[:pad])
        parts.append(v)
        at += pad + v.nbytes
    return parts


def loads(payload):
    """Unpickles a framed payload (a BlockBuffer, or any bytes-like) without copying its buffers.
    The frame is read by the C core, which checks every length against the payload's own
    (CorruptError when it does not hold together)."""
    stream, bufs = _core.oob_split(payload)
    return pickle.loads(stream, buffers=bufs)


def total(parts) -> int:
    return sum(memoryview(p).nbytes for p in parts)
