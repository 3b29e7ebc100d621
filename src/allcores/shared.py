"""Objects in shared memory for processes: Counter, Value, Array, Lock, RLock, Semaphore,
BoundedSemaphore, Event, Queue, SharedBuffer and shared_array.

    counter = allcores.Counter()
    with allcores.Pool() as pool:
        pool.map(work, [(counter, i) for i in range(100)])   # tasks do counter += 1
    counter.value                                            # exactly 100

Where they live: each object has its own memfd segment (no name in /dev/shm, nothing left behind
after any exit). A fork child (os.fork, multiprocessing.Process with the fork context) uses what
it inherited. Pickling one, to pass it to a pool task, a spawn child or through a Queue, sends a
small reference in constant time, whatever the size; the receiver maps the same memory through
/proc/<pid>/fd/<fd> of the sender or of the creator (the same user's processes; Linux only).
Within one process an object is mapped once: unpickling a reference to an object the process
already has reuses its mapping.

When memory is freed: the kernel keeps a segment while any process maps it, so it is freed when
the last process holding one of these objects drops it or exits, however it exits. The kernel
cannot see references in flight (pickled, not yet unpickled): each pickling counts a "pin" in the
segment, consumed by the unpickling, and a process that drops an object while pins remain keeps
its file descriptor open (the door a receiver needs) until they reach zero, closing it during its
next shared-object operation. A pin whose receiver never unpickles it (the pickle was thrown
away, or its process died first) keeps those doors open until the processes holding them exit.
Fork children hold what they inherited until they drop it or exit.

Locks whose owner died: Lock and RLock are robust process-shared mutexes. When a process (or a
thread) dies holding one, SIGKILL included, the next acquire succeeds, sets `lock.recovered` to
True and warns with OwnerDiedWarning: the lock works again, but what it guarded may be
half-updated. A lock is owned by the thread that acquired it: releasing it from another thread
raises RuntimeError (multiprocessing.Lock allows that; use a Semaphore(1) for hand-offs).
Semaphores, like POSIX ones, have no owner: a unit taken by a process that dies is not given back.

Waits (acquire, wait, put, get) release the GIL, take timeouts and stay responsive to Ctrl-C.
"""
from __future__ import annotations

import math
import pickle
import queue as _queue
import types as _types
import weakref

from . import _core

__all__ = [
    "Counter", "Value", "Array", "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event",
    "Queue", "SharedBuffer", "shared_array", "OwnerDiedWarning",
]

OwnerDiedWarning = _core.OwnerDiedWarning
OwnerDiedWarning.__module__ = "allcores"

# Queue layout: small items are copied into a ring of RING_BYTES; bigger ones (over a quarter of
# it) into an arena of ARENA_BYTES in the same segment. Both are reserved address space: memory is
# only used as items pass through (the ring's pages once it has wrapped, the arena's as blocks are
# first used; freed blocks are reused while the queue lives).
RING_BYTES = 256 * 1024
MAX_ITEM_BYTES = (1 << 30) - 64

# Value and Array put their lock in the first bytes of their segment, then the data.
_LOCK_ROOM = 64
assert _core.MUTEX_BYTES <= _LOCK_ROOM

_PROTOCOL = 5


# --- segments: one mapping per process -------------------------------------------------------

_segments: dict[tuple, weakref.ref] = {}


def _track(segment):
    key = segment.key

    def gone(ref, key=key):
        if _segments.get(key) is ref:
            del _segments[key]

    _segments[key] = weakref.ref(segment, gone)
    return segment


def _new_segment(nbytes, cls=_core.Segment):
    return _track(cls(nbytes))


def _open_segment(ref, cls=_core.Segment):
    """The segment a pickled reference names: this process's mapping if it has one."""
    token, creator_pid = ref[0], ref[1]
    known = _segments.get((creator_pid, token))
    segment = known() if known is not None else None
    if segment is not None:
        segment._unpin()
        return segment
    return _track(cls._open(ref))


# The view classes travel by a short name: pickling a class by reference costs as much as the
# rest of the reference. Subclasses made by users travel as themselves.
_VIEW_CLASSES: dict[str, type] = {}
_VIEW_NAMES: dict[type, str] = {}


def _rebuild_view(cls, ref, offset):
    if cls.__class__ is str:
        cls = _VIEW_CLASSES[cls]
    return cls._attach(_open_segment(ref), offset)


def _rebuild_queue(cls, ref, offset, max_item_bytes):
    if cls.__class__ is str:
        cls = _VIEW_CLASSES[cls]
    return cls._attach(_open_segment(ref), offset, max_item_bytes)


class _View:
    """Pickling for the C views (Counter, Lock...): a reference to the segment and the offset."""
    __slots__ = ()

    @classmethod
    def _attach(cls, segment, offset):
        return cls._c_type.__new__(cls, segment, offset)

    def __reduce__(self):
        cls = type(self)
        return _rebuild_view, (_VIEW_NAMES.get(cls, cls), self._segment._ref(), self._offset)


# --- Counter ---------------------------------------------------------------------------------

class Counter(_View, _core.Counter):
    """Counter(initial=0): a lock-free 64-bit signed integer shared between processes.

    `c += n` and `c -= n` are single atomic adds (the name stays bound to the counter);
    `c.add(n)` returns the new value; `c.value` reads or stores; `c.compare_exchange(expected,
    desired)` returns True when it replaced expected; `c.exchange(v)` returns the old value.
    Wraps around on overflow."""
    __slots__ = ()
    _c_type = _core.Counter

    def __new__(cls, initial=0):
        return _core.Counter.__new__(cls, _new_segment(_core.COUNTER_BYTES), 0, initial)


# --- locks, semaphores, events ---------------------------------------------------------------

class Lock(_View, _core.Mutex):
    """Lock(): a mutex shared between processes (like multiprocessing.Lock), robust: when its
    owner dies, the next acquire gets it, sets `recovered` and warns with OwnerDiedWarning.

    acquire(block=True, timeout=None) -> bool; release(); locked(); a context manager. Only the
    thread that acquired it may release it; acquiring it twice from one thread raises
    RuntimeError (use RLock)."""
    __slots__ = ()
    _c_type = _core.Mutex
    _recursive = False

    def __new__(cls):
        segment = _new_segment(_core.MUTEX_BYTES)
        return _core.Mutex.__new__(cls, segment, 0, cls._recursive, True)

    def __repr__(self):
        state = "locked" if self.locked() else "unlocked"
        return f"<allcores.{type(self).__name__} {state}>"


class RLock(Lock):
    """RLock(): a reentrant Lock: the owning thread may acquire it again, and must release it as
    many times."""
    __slots__ = ()
    _recursive = True


class Semaphore(_View, _core.Semaphore):
    """Semaphore(value=1): a counting semaphore shared between processes.

    acquire(block=True, timeout=None) -> bool; release(n=1); get_value(); a context manager. Like
    a POSIX semaphore it has no owner: a unit taken by a process that dies is not given back."""
    __slots__ = ()
    _c_type = _core.Semaphore

    def __new__(cls, value=1):
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        return _core.Semaphore.__new__(cls, _new_segment(_core.SEMAPHORE_BYTES), 0, value, 0)

    def __repr__(self):
        return f"<allcores.{type(self).__name__} value={self.get_value()}>"


class BoundedSemaphore(Semaphore):
    """BoundedSemaphore(value=1): a Semaphore whose release raises ValueError rather than go
    above its initial value."""
    __slots__ = ()

    def __new__(cls, value=1):
        if value < 1:
            raise ValueError("a bounded semaphore's initial value must be >= 1")
        return _core.Semaphore.__new__(cls, _new_segment(_core.SEMAPHORE_BYTES), 0, value, value)


class Event(_View, _core.Event):
    """Event(): a flag shared between processes: set(), clear(), is_set(), wait(timeout=None)
    -> bool (True when set, or set while waiting)."""
    __slots__ = ()
    _c_type = _core.Event

    def __new__(cls):
        return _core.Event.__new__(cls, _new_segment(_core.EVENT_BYTES), 0)

    def __repr__(self):
        return f"<allcores.Event {'set' if self.is_set() else 'unset'}>"


# --- Queue -----------------------------------------------------------------------------------

class Queue(_View, _core.Queue):
    """Queue(maxsize=0): a FIFO queue of picklable objects shared between processes, like
    multiprocessing.Queue without its feeder thread: put() has copied the item into shared memory
    when it returns, so a producer may exit at once and nothing is lost.

    put(obj, block=True, timeout=None) raises queue.Full; get(block=True, timeout=None) raises
    queue.Empty; put_nowait, get_nowait, qsize, empty, full. maxsize <= 0: no limit on the count
    (items still need room: a put waits while the queue's memory is full). The largest item is
    max_item_bytes pickled (default about 1 GiB); bigger ones raise ValueError."""
    # The limit asked for travels with the queue's pickled reference: the memory layout only
    # bounds items by the next size it can hold.
    __slots__ = ("_max_item_bytes",)
    _c_type = _core.Queue
    __class_getitem__ = classmethod(_types.GenericAlias)  # Queue[int] in annotations

    def __new__(cls, maxsize=0, *, max_item_bytes=MAX_ITEM_BYTES):
        if isinstance(max_item_bytes, bool) or not isinstance(max_item_bytes, int):
            raise TypeError(f"max_item_bytes must be an int, not {max_item_bytes!r}")
        if not 0 < max_item_bytes <= MAX_ITEM_BYTES:
            raise ValueError(f"max_item_bytes must be between 1 and {MAX_ITEM_BYTES}, "
                             f"not {max_item_bytes}")
        arena = 0
        if max_item_bytes > RING_BYTES // 4:
            # Arena blocks are powers of two of 4 KiB pages, each with a 64-byte header.
            arena = max(1 << (int(max_item_bytes) + 63).bit_length(), 4096)
        segment = _new_segment(_core.queue_nbytes(RING_BYTES, arena))
        self = _core.Queue.__new__(cls, segment, 0, RING_BYTES, arena, max(int(maxsize), 0), True)
        self._max_item_bytes = max_item_bytes
        return self

    @classmethod
    def _attach(cls, segment, offset, max_item_bytes=MAX_ITEM_BYTES):
        self = _core.Queue.__new__(cls, segment, offset)
        self._max_item_bytes = max_item_bytes
        return self

    def __reduce__(self):
        cls = type(self)
        return _rebuild_queue, (_VIEW_NAMES.get(cls, cls), self._segment._ref(), self._offset,
                                self._max_item_bytes)

    @property
    def max_item_bytes(self):
        """The largest item put() accepts, in bytes pickled."""
        return self._max_item_bytes

    def put(self, obj, block=True, timeout=None):
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        data = pickle.dumps(obj, _PROTOCOL)
        if len(data) > self._max_item_bytes:
            raise ValueError(f"the item takes {len(data)} bytes pickled, more than this queue's "
                             f"max_item_bytes={self._max_item_bytes}")
        if not self._put(data, 0, block, timeout):
            raise _queue.Full

    def get(self, block=True, timeout=None):
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        item = self._get(block, timeout)
        if item is None:
            raise _queue.Empty
        return pickle.loads(item[1])

    def put_nowait(self, obj):
        self.put(obj, False)

    def get_nowait(self):
        return self.get(False)

    # multiprocessing.Queue's feeder-thread controls: nothing to flush or join here.
    def close(self):
        pass

    def join_thread(self):
        pass

    def cancel_join_thread(self):
        pass

    def __repr__(self):
        return f"<allcores.Queue qsize={self.qsize()} maxsize={self.maxsize}>"


for _cls in (Counter, Lock, RLock, Semaphore, BoundedSemaphore, Event, Queue):
    _VIEW_CLASSES[_cls.__name__] = _cls
    _VIEW_NAMES[_cls] = _cls.__name__
del _cls


# --- SharedBuffer and shared_array -----------------------------------------------------------

class SharedBuffer(_core.Segment):
    """SharedBuffer(nbytes): nbytes of zeroed shared memory, a writable buffer for any consumer
    (memoryview(buf), numpy.frombuffer(buf, dtype), bytes(buf), buf[...] via memoryview).
    Passed to tasks by reference in constant time; writes are seen by every process."""
    __slots__ = ()

    def __new__(cls, nbytes):
        return _track(_core.Segment.__new__(cls, nbytes))

    def __reduce__(self):
        return _open_segment, (self._ref(), type(self))

    def __repr__(self):
        return f"<allcores.SharedBuffer nbytes={self.nbytes}>"


_array_type = None


def _shared_array_type():
    """numpy is optional: the ndarray subclass is made on first use."""
    global _array_type
    if _array_type is not None:
        return _array_type
    import numpy as np

    def segment_of(arr):
        base = arr
        while base is not None:
            if isinstance(base, _core.Segment):
                return base
            base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
        return None

    class SharedArray(np.ndarray):
        """A numpy array in shared memory (from allcores.shared_array): pickled by reference
        (views and slices too), so a task receives it in constant time and writes in place."""

        def __reduce_ex__(self, protocol):
            segment = segment_of(self)
            if segment is not None:
                start = self.__array_interface__["data"][0] - segment._address
                lo = hi = start
                for n, s in zip(self.shape, self.strides):
                    if n == 0:
                        lo = hi = start
                        break
                    lo += min(0, (n - 1) * s)
                    hi += max(0, (n - 1) * s)
                if 0 <= lo and hi + self.itemsize <= segment.nbytes:
                    dt = self.dtype
                    # A plain dtype travels as its short string ("<f8"), a third of the pickle.
                    dt = dt.str if dt.fields is None and dt.subdtype is None else dt
                    return _rebuild_array, (segment._ref(), start, self.shape, self.strides, dt,
                                            bool(self.flags.writeable))
            # Not in shared memory (a copy, a ufunc's output): an ordinary array, by value.
            return self.view(np.ndarray).__reduce_ex__(protocol)

        def __array_wrap__(self, arr, context=None, return_scalar=False):
            # Results in fresh memory are plain arrays; only views of a segment stay shared.
            arr = arr.view(type(self) if segment_of(arr) is not None else np.ndarray)
            if return_scalar and arr.ndim == 0:
                return arr[()]
            return arr

    SharedArray.__module__ = __name__
    SharedArray.__qualname__ = "SharedArray"
    _array_type = SharedArray
    return SharedArray


def _rebuild_array(ref, offset, shape, strides, dtype, writeable):
    import numpy as np
    segment = _open_segment(ref, SharedBuffer)
    arr = np.ndarray.__new__(_shared_array_type(), shape, dtype, buffer=segment, offset=offset,
                             strides=strides)
    if not writeable:
        arr.flags.writeable = False
    return arr


def __getattr__(name):
    if name == "SharedArray":  # the ndarray subclass, made when numpy is first needed
        return _shared_array_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def shared_array(shape, dtype=float, order="C"):
    """A numpy array of zeros living in shared memory (needs numpy).

    It is passed to pool tasks and processes by reference in constant time whatever its size
    (slices and views too); writes made by any process are seen by all. Freed when no process
    references it any more."""
    cls = _shared_array_type()
    import numpy as np
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise TypeError("shared arrays cannot hold Python objects (their pointers mean nothing "
                        "in another process)")
    shape = tuple(int(n) for n in shape) if hasattr(shape, "__iter__") else (int(shape),)
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    buf = SharedBuffer(math.prod(shape) * dt.itemsize)
    return np.ndarray.__new__(cls, shape, dt, buffer=buf, order=order)


# --- Value and Array -------------------------------------------------------------------------

def _ctype_of(typecode_or_type):
    # ctypes is imported where used: it cannot load in a subinterpreter before Python 3.13, where
    # `import allcores` must work (the interpreter backend's workers import it)
    from multiprocessing.sharedctypes import typecode_to_type
    t = typecode_to_type.get(typecode_or_type, typecode_or_type)
    if not (isinstance(t, type) and hasattr(t, "from_buffer")):
        raise TypeError(f"expected a typecode or a ctypes type, not {typecode_or_type!r}")
    return t


def _make_lock(lock, segment, init):
    """The lock of a Value/Array: True -> an RLock in the segment's first bytes."""
    if lock is True or lock == "inline":
        if init:
            return _core.Mutex.__new__(RLock, segment, 0, True, True)
        return RLock._attach(segment, 0)
    if lock is False or lock is None:
        return None
    if not (hasattr(lock, "acquire") and hasattr(lock, "release")):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return lock


class _Synchronized:
    __slots__ = ("_segment", "_offset", "_obj", "_lock", "_inline", "__weakref__")

    def _setup(self, segment, offset, obj, lock, inline):
        self._segment = segment
        self._offset = offset
        self._obj = obj
        self._lock = lock
        self._inline = inline

    def get_obj(self):
        """The ctypes object in shared memory."""
        return self._obj

    def get_lock(self):
        if self._lock is None:
            raise AttributeError(f"this {type(self).__name__} was made with lock=False")
        return self._lock

    def acquire(self, *args, **kwargs):
        return self.get_lock().acquire(*args, **kwargs)

    def release(self):
        return self.get_lock().release()

    def __enter__(self):
        return self.get_lock().__enter__()

    def __exit__(self, *exc):
        return self.get_lock().__exit__(*exc)

    def _lock_spec(self):
        return "inline" if self._inline else self._lock


class Value(_Synchronized):
    """Value(typecode_or_type, *args, lock=True): a ctypes value in shared memory, like
    multiprocessing.Value.

    `v.value` reads or writes it under its lock; `with v.get_lock(): v.value += 1` makes an
    update atomic. lock=True gives it its own RLock (robust, see Lock), lock=False none, or pass
    an allcores Lock/RLock to share one between several values."""
    __slots__ = ()

    def __init__(self, typecode_or_type, *args, lock=True):
        ctype = _ctype_of(typecode_or_type)
        inline = lock is True
        offset = _LOCK_ROOM if inline else 0
        import ctypes
        segment = _new_segment(offset + ctypes.sizeof(ctype))
        obj = ctype.from_buffer(segment, offset)
        if args:
            obj.__init__(*args)
        self._setup(segment, offset, obj, _make_lock(lock, segment, True), inline)

    # acquire/try/finally rather than `with`: this is the hot path of `v.value += 1`, and the
    # plain calls cost less (multiprocessing's Synchronized does the same).
    @property
    def value(self):
        lock = self._lock
        if lock is None:
            return self._obj.value
        lock.acquire()
        try:
            return self._obj.value
        finally:
            lock.release()

    @value.setter
    def value(self, v):
        lock = self._lock
        if lock is None:
            self._obj.value = v
            return
        lock.acquire()
        try:
            self._obj.value = v
        finally:
            lock.release()

    def __reduce__(self):
        return _rebuild_value, (type(self._obj), self._segment._ref(), self._offset, None,
                                self._lock_spec())

    def __repr__(self):
        return f"<allcores.Value {self._obj}>"


class Array(_Synchronized):
    """Array(typecode_or_type, size_or_initializer, lock=True): a ctypes array in shared memory,
    like multiprocessing.Array: len(a), a[i], a[i:j] (read and written under its lock),
    get_obj(), get_lock(); for typecode 'c', a.value and a.raw."""
    __slots__ = ()

    def __init__(self, typecode_or_type, size_or_initializer, *, lock=True):
        ctype = _ctype_of(typecode_or_type)
        if isinstance(size_or_initializer, int):
            length, init = size_or_initializer, None
        else:
            init = size_or_initializer
            length = len(init)
        if length < 0:
            raise ValueError("array size must be >= 0")
        atype = ctype * length
        inline = lock is True
        offset = _LOCK_ROOM if inline else 0
        import ctypes
        segment = _new_segment(offset + ctypes.sizeof(atype))
        obj = atype.from_buffer(segment, offset)
        if init is not None:
            obj.__init__(*init)
        self._setup(segment, offset, obj, _make_lock(lock, segment, True), inline)

    def __len__(self):
        return len(self._obj)

    def __getitem__(self, i):
        lock = self._lock
        if lock is None:
            return self._obj[i]
        lock.acquire()
        try:
            return self._obj[i]
        finally:
            lock.release()

    def __setitem__(self, i, v):
        lock = self._lock
        if lock is None:
            self._obj[i] = v
            return
        lock.acquire()
        try:
            self._obj[i] = v
        finally:
            lock.release()

    @property
    def value(self):
        with self.get_lock() if self._lock is not None else _NO_LOCK:
            return self._obj.value

    @value.setter
    def value(self, v):
        with self.get_lock() if self._lock is not None else _NO_LOCK:
            self._obj.value = v

    @property
    def raw(self):
        with self.get_lock() if self._lock is not None else _NO_LOCK:
            return self._obj.raw

    @raw.setter
    def raw(self, v):
        with self.get_lock() if self._lock is not None else _NO_LOCK:
            self._obj.raw = v

    def __reduce__(self):
        return _rebuild_value, (self._obj._type_, self._segment._ref(), self._offset,
                                len(self._obj), self._lock_spec())

    def __repr__(self):
        return f"<allcores.Array {self._obj._type_.__name__}[{len(self._obj)}]>"


class _NoLock:
    def __enter__(self):
        return True

    def __exit__(self, *exc):
        return None


_NO_LOCK = _NoLock()


def _rebuild_value(ctype, ref, offset, length, lock):
    segment = _open_segment(ref)
    cls = Value if length is None else Array
    obj = (ctype if length is None else ctype * length).from_buffer(segment, offset)
    self = cls.__new__(cls)
    self._setup(segment, offset, obj, _make_lock(lock, segment, False), lock == "inline")
    return self
