"""ProcessPoolExecutor.terminate_workers() and kill_workers(), as concurrent.futures has them from
Python 3.14: the workers get the signal, queued work is cancelled, running work fails with
BrokenProcessPool, and the executor accepts nothing more."""
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
    assert ("42" in text) == exited_cleanly, text
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
