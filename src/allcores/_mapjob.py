"""Maps over many items: cut the input into chunks, feed them as workers free up, gather results.

Chunk size, when the caller gives none, comes from measured task times: the first chunks hold one
item; workers report how long each chunk ran, and later chunks grow (at most 8x at a time) until
one holds about TARGET_CHUNK_NS of work. Tiny tasks end up batched by thousands, long ones stay
alone. The input is consumed lazily: at most `window` chunks are in flight and, for iterators
(imap), at most `max_ahead` results wait unconsumed, so an endless generator never fills memory.
"""
from __future__ import annotations

import itertools
import math
import threading
import time

from . import _oob
from . import _serialize as ser
from . import _worker as W

# Work per chunk the chunker aims for: large against the ~20-50 µs a chunk costs to send and
# collect, small enough that the last chunks still spread over every worker.
TARGET_CHUNK_NS = 5_000_000
# Items slower than this are tracked one by one in the worker (crash and timeout attribution
# per item); faster ones run through map() at full speed.
TRACK_ITEMS_ABOVE_NS = 20_000


def item_error(errors, i):
    """The exception of item i of a chunk (decoding the worker's pickled form on first use)."""
    exc = errors[i]
    if isinstance(exc, bytes):
        exc = errors[i] = ser.loads_exception(exc)
    return exc


class AutoChunker:
    def __init__(self, nworkers, total=None):
        self.nworkers = nworkers
        self.total = total
        self.size = 1
        self.per_item_ns = None

    @property
    def measured(self):
        return self.per_item_ns is not None

    def next_size(self, submitted):
        if self.per_item_ns is None:
            return 1
        want = max(1, int(TARGET_CHUNK_NS / max(self.per_item_ns, 1.0)))
        want = min(want, self.size * 8)
        if self.total is not None:
            left = self.total - submitted
            want = min(want, max(1, math.ceil(left / (2 * self.nworkers))))
        self.size = max(1, want)
        return self.size

    def observe(self, n_items, elapsed_ns):
        if n_items <= 0:
            return
        per = elapsed_ns / n_items
        self.per_item_ns = per if self.per_item_ns is None else 0.5 * (self.per_item_ns + per)

    @property
    def track(self):
        return self.per_item_ns is None or self.per_item_ns >= TRACK_ITEMS_ABOVE_NS


class FixedChunker:
    def __init__(self, size):
        self.size = size
        self.measured = True
        self.per_item_ns = None

    def next_size(self, submitted):
        return self.size

    def observe(self, n_items, elapsed_ns):
        per = elapsed_ns / max(n_items, 1)
        self.per_item_ns = per if self.per_item_ns is None else 0.5 * (self.per_item_ns + per)

    @property
    def track(self):
        return self.per_item_ns is None or self.per_item_ns >= TRACK_ITEMS_ABOVE_NS


class _ChunkEntry:
    """A pending chunk in the engine: items[start:start+len] of a job."""
    __slots__ = ("job", "start", "items", "what", "t0", "timeout")

    def __init__(self, job, start, items):
        self.t0 = time.perf_counter_ns()
        self.timeout = job.timeout
        self.job = job
        self.start = start
        self.items = items
        self.what = job.fn

    def deliver(self, engine, kind, payload, to_feed=None):
        if kind & 0xFF == W.R_CHUNK:
            values, errors, elapsed = (_oob.loads(payload) if kind & _oob.KIND_OOB
                                       else ser._loads(payload))
            self.job.chunk_done(self, values, errors, elapsed, to_feed)
        else:  # the whole chunk failed before running (e.g. its payload could not be unpickled)
            exc = ser.loads_exception(payload)
            self.job.chunk_failed(self, 0, exc, resubmit=False)

    def fail(self, engine, exc, item=None):
        # Only the item that was running fails; the others run again.
        self.job.chunk_failed(self, item or 0, exc, resubmit=True)


class MapJob:
    """Feeds one map's chunks to the engine; hands each item's outcome to a sink.

    The sink has: chunk(start, values, errors) for a chunk's outcomes (errors maps an index in
    the chunk to an exception or its pickled form: see item_error), item(index, ok, value) for
    one item, done() once all items are delivered,
    and fail(exc) when the input itself failed (the iterable raised, or a chunk cannot be
    pickled). For an ordered map the sink decides what an item's error means.
    """

    def __init__(self, engine, fn, iterable, chunksize, star, sink, *, lazy, window=None,
                 timeout=None):
        self.engine = engine
        self.fn = fn
        self.star = star
        self.sink = sink
        self.fn_blob = ser.dumps_callable(fn)
        if timeout is not None and timeout <= 0:
            raise ValueError("task_timeout must be positive")
        self.timeout = timeout  # per item; items are then tracked one by one in the worker
        self.lock = threading.RLock()
        total = None
        if not lazy:
            if not hasattr(iterable, "__len__"):
                iterable = list(iterable)
            total = len(iterable)
        self.total = total
        self.it = iter(iterable)
        self.exhausted = False
        self.aborted = False
        self.submitted = 0       # items sent
        self.delivered = 0       # items whose outcome reached the sink
        self.consumed = 0        # items the consumer took (lazy sinks report it)
        self.inflight = 0        # chunks in flight
        n = engine.nworkers
        if chunksize is None:
            self.chunker = AutoChunker(n, total)
            self.window = window or max(4 * n, 8)
        else:
            if chunksize < 1:
                raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
            self.chunker = FixedChunker(chunksize)
            self.window = window or max(8 * n, 64 if chunksize <= 4 else 16)
        self.lazy = lazy
        self.max_ahead = None
        self._done_reported = False
        self.unbounded = False
        self.starved = False
        engine._jobs.add(self)
        if timeout is not None:
            engine._timed_entries += 1

    def start(self):
        self.feed()
        return self

    def feed(self):
        finished = False
        failure = None
        with self.lock:
            if self.aborted:
                return
            self.starved = False
            engine = self.engine
            chunker = self.chunker
            bounded = not self.unbounded
            limit = self.window if chunker.measured else engine.nworkers
            cap = None
            if self.lazy and bounded:
                cap = max(self.window * max(chunker.size, 1), 2 * self.window)
            track = 1 if chunker.track or self.timeout is not None else 0
            pending = engine._pending
            # A shared-region engine's submit_chunk() inlined: this loop runs once per chunk, i.e.
            # per item with chunksize=1, where every call counts.
            kind = W.K_CHUNK | (track << 8)
            region = getattr(engine, "_region", None)
            push = region.push_task if region is not None else None
            overflow = getattr(engine, "_overflow", None)
            while not self.exhausted:
                if bounded and self.inflight >= limit:
                    break
                if cap is not None and self.submitted - self.consumed >= cap:
                    self.starved = True  # the consumer lags: note_consumed() resumes feeding
                    break
                size = chunker.next_size(self.submitted)
                try:
                    items = list(itertools.islice(self.it, size))
                except BaseException as exc:  # noqa: B902 - the input iterable failed
                    self.exhausted = self.aborted = True
                    failure = exc
                    break
                if not items:
                    self.exhausted = True
                    break
                start = self.submitted
                self.submitted = start + len(items)
                try:
                    payload = ser.dumps_chunk(self.fn_blob, self.fn, items, self.star)
                    size = _oob.total(payload) if type(payload) is list else len(payload)
                    if size > engine.max_payload:
                        raise MemoryError(
                            f"a chunk of {len(items)} items of a map over {ser.describe(self.fn)} "
                            f"takes {size} bytes, more than the pool's shared region can "
                            f"hold ({engine.max_payload} bytes)")
                except BaseException as exc:  # noqa: B902
                    self.exhausted = self.aborted = True
                    failure = exc
                    break
                tid = engine.new_id()
                pending[tid] = _ChunkEntry(self, start, items)
                self.inflight += 1
                if push is None or overflow or not push(
                        tid, kind | _oob.KIND_OOB if type(payload) is list else kind, 0, payload, 0.0):
                    engine.submit_chunk(tid, payload, track)  # queues it without blocking
            finished = self.exhausted and self.inflight == 0 and not self._done_reported
            if finished or failure is not None:
                self._done_reported = True
        if failure is not None:
            self.sink.fail(failure)
            self.engine.job_done(self)
        elif finished:
            self.sink.done()
            self.engine.job_done(self)

    def chunk_done(self, entry, values, errors, elapsed, to_feed=None):
        """to_feed: a set the caller feeds once it has delivered a whole batch of results (one
        feed() per batch instead of one per chunk), or None to feed now."""
        with self.lock:
            self.inflight -= 1
            self.chunker.observe(len(entry.items), elapsed)
        self.sink.chunk(entry.start, values, errors)
        if to_feed is None:
            self.feed()
        else:
            to_feed.add(self)

    def chunk_failed(self, entry, index, exc, resubmit):
        """Item `index` of the chunk failed with exc (the worker died or the task timed out);
        items before it are lost with the worker's result, items after it never ran."""
        with self.lock:
            self.inflight -= 1
        start = entry.start
        n = len(entry.items)
        if resubmit and not self.aborted and n > 1:
            # Items before `index` may have run, but their results died with the worker, and
            # items after it never ran: only the one that was running fails; the rest run again.
            redo = [i for i in range(n) if i != index]
            for i in redo:
                self._resubmit(start + i, entry.items[i])
            self.sink.item(start + index, False, exc)
        else:
            for i in range(n):
                self.sink.item(start + i, False, exc)
        self.feed()

    def _resubmit(self, index, item):
        engine = self.engine
        payload = ser.dumps_chunk(self.fn_blob, self.fn, [item], self.star)
        tid = engine.new_id()
        with self.lock:
            self.inflight += 1
        engine._pending[tid] = _ChunkEntry(self, index, [item])
        engine.submit_chunk(tid, payload, 1)

    def note_consumed(self, n=1):
        self.consumed += n
        if self.starved:
            self.feed()

    def feed_all(self):
        """The pool is closing: queue everything that is left now."""
        self.unbounded = True
        self.feed()

    def abort(self, exc=None):
        with self.lock:
            self.aborted = True
            self.exhausted = True
        if exc is not None and not self._done_reported:
            self._done_reported = True
            self.sink.fail(exc)
        self.engine.job_done(self)
