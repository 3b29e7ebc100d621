"""numpy.memmap arguments and results travel as a reference to their file region, not a copy.

A memmap a task receives is a new mapping of the same region of the same file, in the sender's
mode: zero-copy, and with mode "r+" or "w+" what the task writes is in the file (and in the
sender's mapping: both share the page cache), as with joblib's loky backend. "w+" is reopened as
"r+", so the file is not truncated again. A slice, a transposed or a strided memmap arrives as
the same view of the region. The stdlib copies the values instead (numpy pickles a memmap as a
plain array); these travel as values too: a copy-on-write mapping (mode "c", whose changes are
not in the file), a memmap with no file name or whose file was removed, one of zero size, and
files registered with by_value() (the temporary files of joblib's auto-memmapping: a result
must not outlive them).

The hook is _oob's pickler (reducer_override); the argument scan (allcores._core.is_big) counts
every numpy.memmap as "big", so the payload takes that pickler whatever the memmap's size.
"""
from __future__ import annotations

import mmap
import os
import sys

_MAPPABLE_MODES = ("r", "r+", "w+")
_by_value_sets: list = []
_Cloud = None


def by_value(filenames) -> None:
    """Memmaps of the files in the set `filenames` (a live set, read at each send) travel as
    values."""
    _by_value_sets.append(filenames)


def memmap_type():
    """numpy.memmap, or None while numpy is not imported (then no memmap exists)."""
    np = sys.modules.get("numpy")
    return getattr(np, "memmap", None)


def _backing(a):
    """The array in a's base chain whose base is the mmap itself (its data starts at its
    .offset in the file), or None."""
    b = a.base
    while b is not None:
        if isinstance(b, mmap.mmap):
            return a
        a, b = b, getattr(b, "base", None)
    return None


def _extent(a):
    """(first byte, one past the last byte, data pointer) of array a, as addresses."""
    data = a.__array_interface__["data"][0]
    lo = hi = data
    for n, s in zip(a.shape, a.strides):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return lo, hi + a.itemsize, data


def reduce(a):
    """The reduce tuple of numpy.memmap `a` for a pickler, or None (pickle it as usual)."""
    import numpy as np
    m = _backing(a)
    if m is None or not isinstance(m, np.memmap) or m.filename is None or a.size == 0 or \
            m.mode not in _MAPPABLE_MODES or any(m.filename in s for s in _by_value_sets) or \
            not os.path.exists(m.filename):  # unlinked while mapped: only this process has it
        return _values, (np.asarray(a),)  # a plain array (out of band)
    lo, hi, data = _extent(a)
    offset = m.offset + (lo - _extent(m)[0])
    if a.flags.c_contiguous or a.flags.f_contiguous:
        order = "C" if a.flags.c_contiguous else "F"
        return _rebuild, (m.filename, a.dtype, m.mode, offset, a.shape, order, None, 0, 0)
    return _rebuild, (m.filename, a.dtype, m.mode, offset, a.shape, "C", a.strides,
                      data - lo, hi - lo)


def _values(array):
    """The receiver's own writable array, as a pickled array arrives from the stdlib."""
    return array if array.flags.writeable else array.copy()


def _rebuild(filename, dtype, mode, offset, shape, order, strides, data_offset, span):
    import numpy as np
    if mode == "w+":
        mode = "r+"  # the sender created the file; mapping it again must not truncate it
    if strides is None:
        return np.memmap(filename, dtype=dtype, mode=mode, offset=offset, shape=shape, order=order)
    region = np.memmap(filename, dtype=np.uint8, mode=mode, offset=offset, shape=(span,))
    view = np.ndarray(shape, dtype, buffer=region, offset=data_offset, strides=strides)
    view = view.view(np.memmap)
    view.__array_finalize__(region)  # its file, mode and mapping, as numpy's own views carry
    return view


def cloud_pickler():
    """cloudpickle's Pickler, sending memmaps as above."""
    global _Cloud
    if _Cloud is None:
        import cloudpickle

        class _Cloud(cloudpickle.Pickler):
            def reducer_override(self, obj):
                if type(obj) is memmap_type():
                    return reduce(obj)
                return super().reducer_override(obj)
    return _Cloud
