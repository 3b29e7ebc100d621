"""A pool that breaks or is terminated while other threads submit to it and consume its maps
raises only the standard library's exceptions from every public call, never an error type of the
shared-memory core (allcores._core)."""
import os
import random
import threading
import time
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool

import pytest

from allcores import Pool, ProcessPoolExecutor, _core
from backend_tasks import square

BACKENDS = ["thread", "process"]
ITEMS = 3000  # more one-item chunks than the task ring holds: the rest wait in the overflow
JOIN_S = 120


def gated_fail_init(path):
    """Fails once the file at path exists (or after 30 s), so that work queues up first."""
    give_up = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < give_up:
        time.sleep(0.001)
    raise RuntimeError("cannot init")


def _hammer(calls, gate, rounds=3):
    """Runs each call in its own threads, rounds times, while the pool breaks; returns every
    exception raised."""
    errors = []
    lock = threading.Lock()

    def loop(call):
        for _ in range(rounds):
            try:
                call()
            except BaseException as exc:  # noqa: B902 - what the caller would see
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in calls for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # let tasks and maps queue up
    open(gate, "w").close()
    for t in threads:
        t.join(JOIN_S)
    assert not any(t.is_alive() for t in threads), "a caller hung while the pool broke"
    return errors


def _check(errors):
    assert errors, "the pool broke but no call failed"
    wrong = [e for e in errors if not isinstance(e, BrokenProcessPool)]
    assert not wrong, f"calls raised {[repr(e) for e in wrong[:5]]}"


def _drain_imap(it):
    try:
        while True:
            it.next(timeout=60)
    except StopIteration:
        pass


@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_breaking_under_concurrent_calls_raises_broken_process_pool(backend, tmp_path):
    gate = str(tmp_path / "go")
    pool = Pool(2, initializer=gated_fail_init, initargs=(gate,), backend=backend)
    try:
        errors = _hammer([
            lambda: pool.apply_async(square, (2,)).get(timeout=60),
            lambda: pool.map_async(square, range(ITEMS), chunksize=1).get(timeout=60),
            lambda: _drain_imap(pool.imap(square, range(ITEMS), chunksize=1)),
            lambda: _drain_imap(pool.imap_unordered(square, range(ITEMS), chunksize=1)),
        ], gate)
    finally:
        pool.terminate()
        pool.join()
    _check(errors)


@pytest.mark.parametrize("backend", BACKENDS)
def test_executor_breaking_under_concurrent_calls_raises_broken_process_pool(backend, tmp_path):
    gate = str(tmp_path / "go")
    ex = ProcessPoolExecutor(2, initializer=gated_fail_init, initargs=(gate,), backend=backend)
    try:
        errors = _hammer([
            lambda: [ex.submit(square, i) for i in range(200)][-1].result(timeout=60),
            lambda: list(ex.map(square, range(ITEMS), timeout=60)),
            lambda: list(ex.map(square, range(ITEMS), timeout=60, buffersize=500)),
        ], gate)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    _check(errors)


TERMINATE_ROUNDS = 100


def _consume_until_stopped(pool, kind):
    """Feeds and consumes maps until the pool refuses work; returns what the calls raised."""
    raised = []
    for _ in range(1000):
        try:
            if kind == 0:
                pool.apply_async(square, (2,)).get(timeout=60)
            else:
                _drain_imap(pool.imap(square, range(ITEMS), chunksize=1))
        except BaseException as exc:  # noqa: B902 - what the caller would see
            raised.append(exc)
            if isinstance(exc, ValueError):  # Pool not running: terminate() is done
                break
    return raised


def test_terminate_from_another_thread_raises_only_public_errors():
    """Callers consuming lazy maps (next() feeds the map) while another thread terminates the
    pool: the map's next chunk meets a closed task ring, which must read as the stdlib's errors."""
    seen = []
    for _ in range(TERMINATE_ROUNDS):
        pool = Pool(2, backend="thread")
        results = []
        threads = [threading.Thread(target=lambda k=k: results.append(
            _consume_until_stopped(pool, k)), daemon=True) for k in (0, 1, 1, 1, 1, 1)]
        for t in threads:
            t.start()
        time.sleep(random.uniform(0.005, 0.05))
        pool.terminate()
        for t in threads:
            t.join(JOIN_S)
        pool.join()
        assert not any(t.is_alive() for t in threads), "a caller hung after terminate()"
        for r in results:
            seen.extend(r)
    core = [e for e in seen if type(e).__module__ == _core.__name__]
    assert not core, f"core errors escaped: {[repr(e) for e in core[:5]]}"
    wrong = [e for e in seen if not isinstance(e, (ValueError, CancelledError, BrokenProcessPool))]
    assert not wrong, f"calls raised {[repr(e) for e in wrong[:5]]}"
