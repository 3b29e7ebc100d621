"""What concurrent.futures added in Python 3.14, on every Python: terminate_workers() and
kill_workers() (the workers get the signal, queued work is cancelled, running work fails with
BrokenProcessPool, the executor accepts nothing more), and map()'s buffersize (validated; at most
that many items read ahead; after shutdown no more input is read)."""
import itertools
import os
import signal
import time
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool

import pytest

import allcores

WAIT = 60


def _sleep_and_pid(s):
    time.sleep(s)
    return os.getpid()


def _catch_term(s):
    # a task that makes SIGTERM a clean exit, to tell SIGTERM from SIGKILL in the result
    signal.signal(signal.SIGTERM, lambda *a: os._exit(42))
    time.sleep(s)


def _gone(pid, deadline):
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("method", ["terminate_workers", "kill_workers"])
def test_force_shutdown_stops_running_and_cancels_queued(method):
    ex = allcores.ProcessPoolExecutor(2)
    pids = {ex.submit(_sleep_and_pid, 0).result(timeout=WAIT) for _ in range(4)}
    running = [ex.submit(time.sleep, 60) for _ in range(2)]
    queued = [ex.submit(time.sleep, 60) for _ in range(3)]
    deadline = time.monotonic() + WAIT
    while not all(f.running() for f in running) and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    getattr(ex, method)()
    for f in running:
        with pytest.raises(BrokenProcessPool):
            f.result(timeout=WAIT)
    for f in queued:
        with pytest.raises(CancelledError):
            f.result(timeout=WAIT)
    assert time.monotonic() - t0 < 50   # nobody waited for the 60 s sleeps
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(abs, 1)
    ex.shutdown(wait=True)
    for pid in pids:
        assert _gone(pid, time.monotonic() + WAIT), f"worker {pid} still alive"


@pytest.mark.parametrize("method, exited_cleanly", [("terminate_workers", True), ("kill_workers", False)])
def test_the_signal_is_the_one_named(method, exited_cleanly, tmp_path):
    # SIGTERM can be caught by the task (it exits 42 here), SIGKILL cannot: the future's error
    # says how the worker ended
    with allcores.ProcessPoolExecutor(1) as ex:
        f = ex.submit(_catch_term, 60)
        deadline = time.monotonic() + WAIT
        while not f.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)   # the task has installed its handler
        getattr(ex, method)()
        with pytest.raises(BrokenProcessPool) as info:
            f.result(timeout=WAIT)
    text = str(info.value)
    assert ("exited with code 42" in text) == exited_cleanly, text  # (a pid may hold "42")
    assert ("SIGKILL" in text or "signal 9" in text or "killed" in text) != exited_cleanly, text


def test_force_shutdown_of_an_idle_or_shut_executor_is_harmless():
    ex = allcores.ProcessPoolExecutor(2)
    assert ex.submit(abs, -3).result(timeout=WAIT) == 3
    ex.terminate_workers()
    ex.kill_workers()          # again, on a shut executor: nothing to do
    ex.shutdown(wait=True)


@pytest.mark.parametrize("backend", ["thread"])
def test_force_shutdown_on_a_backend_without_processes(backend):
    ex = allcores.ProcessPoolExecutor(1, backend=backend)
    running = ex.submit(time.sleep, 0.5)
    queued = ex.submit(time.sleep, 0.5)
    deadline = time.monotonic() + WAIT
    while not running.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    ex.terminate_workers()
    for f in (running, queued):
        with pytest.raises(CancelledError):
            f.result(timeout=WAIT)
    with pytest.raises(RuntimeError):
        ex.submit(abs, 1)
    ex.shutdown(wait=True)


def test_buffersize_is_validated_as_concurrent_futures_does():
    with allcores.ProcessPoolExecutor(1) as ex:
        for bad in ("foo", 2.0):
            with pytest.raises(TypeError, match="buffersize must be an integer or None"):
                ex.map(str, range(4), buffersize=bad)
        for bad in (0, -1):
            with pytest.raises(ValueError, match="buffersize must be None or > 0"):
                ex.map(str, range(4), buffersize=bad)
        assert list(ex.map(str, range(4), buffersize=1)) == ["0", "1", "2", "3"]


def test_buffersize_reads_only_that_many_items_ahead():
    ints = iter(range(10))
    ex = allcores.ProcessPoolExecutor(2)
    ex.map(str, ints, buffersize=2)
    ex.shutdown(wait=True)
    assert next(ints) == 2


@pytest.mark.parametrize("wait", [True, False])
def test_shutdown_under_an_endless_buffered_map_reads_no_more_input(wait):
    # the map's input never ends: shutdown must neither read it to its end (a hang) nor lose the
    # results of what was sent; the iterator then says it can submit no more
    ex = allcores.ProcessPoolExecutor(2)
    counted = itertools.count()
    res = ex.map(str, counted, buffersize=2)
    assert next(res) == "0"
    ex.shutdown(wait=wait)
    got = []
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        for x in res:
            got.append(x)
            assert len(got) < 100, "the map went on reading its input after shutdown"
    assert got == [str(i) for i in range(1, len(got) + 1)]
    assert next(counted) == len(got) + 1
    ex.shutdown(wait=True)


def test_force_shutdown_names_its_operation():
    with allcores.ProcessPoolExecutor(1) as ex:
        with pytest.raises(ValueError, match="Unsupported operation"):
            ex._force_shutdown(operation="invalid operation")
