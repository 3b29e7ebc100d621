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
import sys
import threading
import time
import weakref
from concurrent.futures import CancelledError

from . import _core, _oob
from . import _serialize as ser
from ._protocol import KIND_MASK, OOB, RESULT_CHUNK, TASK_CHUNK, task_kind
from .errors import TaskTimeout, WorkerLost

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


class _AllFailed:
    """The errors of a chunk whose every item failed with one exception: a dict of n entries
    would cost n (terminate() failing large chunks item by item took seconds)."""
    __slots__ = ("exc", "n")

    def __init__(self, exc, n):
        self.exc = exc
        self.n = n

    def __bool__(self):
        return True

    def __len__(self):
        return self.n

    def __contains__(self, i):
        return True

    def __getitem__(self, i):
        return self.exc

    def __setitem__(self, i, value):
        pass

    def __iter__(self):
        return iter(range(self.n))


class _ChunkEntry:
    """A pending chunk in the engine: items[start:start+len] of a job. track: the worker records
    which item runs (without it, a worker's death cannot be pinned on one item)."""
    __slots__ = ("job", "start", "items", "what", "t0", "timeout", "track")

    def __init__(self, job, start, items, track):
        self.t0 = time.perf_counter_ns()
        self.timeout = job.timeout
        self.job = job
        self.start = start
        self.items = items
        self.what = job.fn
        self.track = track

    def deliver(self, engine, kind, payload, to_feed=None):
        if kind & KIND_MASK == RESULT_CHUNK:
            values, errors, elapsed = (_oob.loads(payload) if kind & OOB
                                       else ser.loads(payload))
            self.job.chunk_done(self, values, errors, elapsed, to_feed)
        else:  # the whole chunk failed before running (e.g. its payload could not be unpickled)
            exc = ser.loads_exception(payload)
            self.job.chunk_failed(self, 0, exc, resubmit=False)

    def fail(self, engine, exc, item=None):
        if isinstance(exc, (WorkerLost, TaskTimeout)):  # its worker died or was killed
            if not self.track and len(self.items) > 1:
                # The worker ran it at full speed, recording no item: run it again tracked, so
                # that a second death is pinned on the one item that causes it.
                self.job.chunk_retry(self)
            else:
                # Only the item that was running fails; the others run again.
                self.job.chunk_failed(self, item or 0, exc, resubmit=True)
        else:  # cancelled, or the pool broke: every item fails
            self.job.chunk_failed(self, 0, exc, resubmit=False)


class MapJob:
    """Feeds one map's chunks to the engine; hands each item's outcome to a sink.

    The sink has: chunk(start, values, errors) for a chunk's outcomes (errors maps an index in
    the chunk to an exception or its pickled form: see item_error), item(index, ok, value) for
    one item, done() once all items are delivered, and fail(exc) when the input iterable raised
    or the map was stopped (then `stopped` is true: outcomes still missing never come). An item
    that cannot be pickled fails alone, at its position. For an ordered map the sink decides
    what an item's error means.

    A lazy job holds its sink (the consumer's iterator) only weakly while it waits for the
    consumer with nothing in flight, so that an iterator the program dropped is freed: its
    __del__ calls abandon(), and the rest of the input is never read.
    """

    def __init__(self, engine, fn, iterable, chunksize, star, sink, *, lazy, window=None,
                 timeout=None):
        self.engine = engine
        self.fn = fn
        self.star = star
        self.sink = sink
        self.fn_blob = ser.dumps_callable(fn, engine.main_names)
        # Per item, checked by the caller (engine.check_timeout); items are then tracked one by
        # one in the worker.
        self.timeout = timeout
        # Items run tracked whenever a timeout applies: the limit is per item.
        self.track_all = timeout is not None or engine.task_timeout is not None
        self.lock = threading.RLock()
        total = None
        if not lazy:
            if not hasattr(iterable, "__len__"):
                iterable = list(iterable)
            total = len(iterable)
        self.total = total
        self.it = iter(iterable)
        self.exhausted = False
        self.aborted = False     # outcomes no longer wanted: nothing more is sent or resent
        self.stopped = False     # abort()ed: the sink waits for no missing outcome
        self.submitted = 0       # items sent, or failed at once (unpicklable)
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
        self.unbounded = False   # feed_all(): no window, no wait for the consumer
        self.eager = False       # finish(): no wait for the consumer
        self.starved = False
        engine.add_job(self)

    def start(self):
        self.feed()
        return self

    def feed(self):
        """Sends chunks while the window and the consumer allow."""
        try:
            finished = False
            failure = None
            bad = None
            with self.lock:
                if self.aborted:
                    return
                sink = self.sink
                if type(sink) is weakref.ref:
                    sink = sink()
                    if sink is None:
                        return  # dropped: its __del__ calls abandon()
                    self.sink = sink
                self.starved = False
                engine = self.engine
                chunker = self.chunker
                bounded = not self.unbounded
                limit = self.window if chunker.measured else engine.nworkers
                cap = None
                if self.lazy and bounded and not self.eager:
                    cap = max(self.window * max(chunker.size, 1), 2 * self.window)
                track = 1 if chunker.track or self.track_all else 0
                register = engine.register
                # The engine's submit_chunk() inlined where it has a task ring: this loop runs
                # once per chunk, i.e. per item with chunksize=1, where every call counts.
                kind = task_kind(TASK_CHUNK, track=bool(track))
                push, overflow = engine.direct_queue()
                while not self.exhausted:
                    if bounded and self.inflight >= limit:
                        break
                    if cap is not None and self.submitted - self.consumed >= cap:
                        # The consumer lags: note_consumed() resumes feeding.
                        self.starved = True
                        break
                    size = chunker.next_size(self.submitted)
                    items = []
                    try:
                        # extend() keeps the items it took before the input failed: they are
                        # sent, and the input's error ends the map after their results.
                        items.extend(itertools.islice(self.it, size))
                    except Exception as exc:  # the input iterable failed
                        self.exhausted = True
                        failure = exc
                    if not items:
                        self.exhausted = True
                        break
                    start = self.submitted
                    try:
                        payload = ser.dumps_chunk(self.fn_blob, self.fn, items, self.star)
                        size = _oob.total(payload) if type(payload) is list else len(payload)
                        if size > engine.max_payload:
                            raise self._too_big(f"a chunk of {len(items)} items", size)
                    except Exception:
                        bad = self._send_one_by_one(start, items)
                        break
                    tid = register(_ChunkEntry(self, start, items, track))
                    self.inflight += 1
                    # Counted once registered: the sink waits for every item counted here.
                    self.submitted = start + len(items)
                    try:
                        pushed = push is not None and not overflow and push(
                            tid, kind | OOB if type(payload) is list else kind, 0,
                            payload, 0.0)
                    except _core.ClosedError:  # the pool broke or stopped meanwhile
                        pushed = False
                    if not pushed:
                        # Queues it without blocking; fails it (BrokenProcessPool) on a closed ring.
                        engine.submit_chunk(tid, payload, track)
                    if failure is not None:
                        break
                if failure is not None:
                    if self._done_reported:
                        failure = None  # stopped meanwhile: the sink heard of it already
                    else:
                        self._done_reported = True
                elif bad is None:
                    finished = self.exhausted and self.inflight == 0 and not self._done_reported
                    if finished:
                        self._done_reported = True
                    elif self.starved and self.inflight == 0:
                        # Waiting for the consumer with nothing in flight: hold it weakly, so
                        # that a dropped iterator is freed (its last reference goes as this
                        # returns).
                        self.sink = weakref.ref(sink)
            if bad is not None:
                for index, exc in bad:
                    sink.item(index, False, exc)
                if failure is not None:
                    sink.fail(failure)
                    self.engine.job_done(self)
                    return
                if not self.aborted:
                    self.feed()  # feed on past the failed items
                return
            if failure is not None:
                sink.fail(failure)
                self.engine.job_done(self)
            elif finished:
                sink.done()
                self.engine.job_done(self)
            return
        except BaseException:  # noqa: B902 - Ctrl-C in the caller's thread: stop this map
            # The sink must not wait for items this call took but never sent.
            self.abort(CancelledError())
            raise

    def _too_big(self, what, size):
        return MemoryError(
            f"{what} of a map over {ser.describe(self.fn)} takes {size} bytes, more than the "
            f"pool's shared region can hold ({self.engine.max_payload} bytes)")

    def _send_one_by_one(self, start, items):
        """A chunk that cannot be pickled: sends its items one by one; returns [(index, exc)]
        for those that cannot be sent, which fail alone (as an unpicklable task does)."""
        engine = self.engine
        bad = []
        for i, item in enumerate(items):
            try:
                payload = ser.dumps_chunk(self.fn_blob, self.fn, [item], self.star)
                size = _oob.total(payload) if type(payload) is list else len(payload)
                if size > engine.max_payload:
                    raise self._too_big(f"item {start + i}", size)
            except Exception as exc:
                bad.append((start + i, exc))
            else:
                tid = engine.register(_ChunkEntry(self, start + i, [item], 1))
                self.inflight += 1
                engine.submit_chunk(tid, payload, 1)
            self.submitted = start + i + 1
        return bad

    def chunk_done(self, entry, values, errors, elapsed, to_feed=None):
        """to_feed: a set the caller feeds once it has delivered a whole batch of results (one
        feed() per batch instead of one per chunk), or None to feed now."""
        with self.lock:
            self.inflight -= 1
            self.chunker.observe(len(entry.items), elapsed)
            # Read under the lock: once inflight is 0, feed() in another thread may hold the
            # sink weakly (a consumer that dropped it gets nothing more).
            sink = self.sink
        if type(sink) is weakref.ref:
            sink = sink()
        if sink is not None:
            sink.chunk(entry.start, values, errors)
        if to_feed is None:
            self.feed()
        else:
            to_feed.add(self)

    def chunk_failed(self, entry, index, exc, resubmit):
        """Item `index` of the chunk failed with exc (the worker died or the task timed out);
        items before it are lost with the worker's result, items after it never ran. Without
        resubmit (cancelled, the pool broke), every item fails with exc."""
        with self.lock:
            self.inflight -= 1
            sink = self._sink_now()
        start = entry.start
        items = entry.items
        n = len(items)
        if sink is None:  # the consumer dropped its iterator
            pass
        elif resubmit and not self.aborted and n > 1:
            # Items before `index` may have run, but their results died with the worker, and
            # items after it never ran: only the one that was running fails; the rest run again.
            if index:
                self._resubmit(start, items[:index])
            if index + 1 < n:
                self._resubmit(start + index + 1, items[index + 1:])
            sink.item(start + index, False, exc)
        elif n == 1:
            sink.item(start, False, exc)
        else:
            sink.chunk(start, [None] * n, _AllFailed(exc, n))
        self.feed()

    def _sink_now(self):
        """Under self.lock: the sink, held strongly for the caller (feed() may hold it weakly
        once nothing is in flight); None when the consumer dropped it."""
        sink = self.sink
        return sink() if type(sink) is weakref.ref else sink

    def chunk_retry(self, entry):
        """The worker died running an untracked chunk: run it again, tracked."""
        with self.lock:
            self.inflight -= 1
            sink = self._sink_now()
        if self.aborted:
            n = len(entry.items)
            if sink is not None:
                sink.chunk(entry.start, [None] * n, _AllFailed(CancelledError(), n))
        else:
            self._resubmit(entry.start, entry.items)
        self.feed()

    def _resubmit(self, start, items):
        engine = self.engine
        payload = ser.dumps_chunk(self.fn_blob, self.fn, items, self.star)
        with self.lock:
            self.inflight += 1
        tid = engine.register(_ChunkEntry(self, start, items, 1))
        engine.submit_chunk(tid, payload, 1)

    def note_consumed(self, n=1):
        self.consumed += n
        if self.starved:
            self.feed()

    def feed_all(self):
        """Queue everything that is left now (no window, no wait for the consumer)."""
        self.unbounded = True
        self.feed()

    def finish(self):
        """The pool is joined: feed the rest without waiting for the consumer (results wait
        in the sink, as multiprocessing's do), within the window. A dropped iterator's job is
        abandoned instead: nothing would ever consume an endless input's results."""
        if self.lazy:
            with self.lock:
                # Referenced by self.sink and the stack only: dropped while chunks were in
                # flight (else it would be held weakly and gone already).
                dropped = type(self.sink) is not weakref.ref and sys.getrefcount(self.sink) <= 2
            if dropped:
                self.abandon()
                return
        self.eager = True
        self.feed()

    def stop_input(self, exc):
        """Read no more input: the results of the items already sent come first, then exc (the
        executor shut down under a map that reads its input as its consumer goes)."""
        with self.lock:
            report = not self.exhausted and not self._done_reported
            if report:
                self.exhausted = self._done_reported = True
            finished = not report and self.exhausted and self.inflight == 0 and not self._done_reported
            if finished:
                self._done_reported = True
            sink = self._sink_now()
        if sink is not None:
            if report:
                sink.fail(exc)
            elif finished:
                sink.done()
        self.engine.job_done(self)

    def abandon(self):
        """The consumer dropped the iterator: read no more input (chunks in flight finish)."""
        with self.lock:
            self.aborted = self.exhausted = True
        self.engine.job_done(self)

    def abort(self, exc=None):
        with self.lock:
            self.aborted = True
            self.exhausted = True
            self.stopped = True
            sink = self.sink
            report = exc is not None and not self._done_reported
            if report:
                self._done_reported = True
        if report:
            if type(sink) is weakref.ref:
                sink = sink()
            if sink is not None:
                sink.fail(exc)
        self.engine.job_done(self)
