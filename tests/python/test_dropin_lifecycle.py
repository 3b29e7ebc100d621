"""Lifecycle as the standard library has it: no task lost to maxtasksperchild, each API's own
behaviour at interpreter exit, BrokenProcessPool (never an internal error) from a broken pool,
the warnings and logs the standard library gives, and no descriptor of the program kept open by
the processes a pool forks.
"""
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
import warnings
from concurrent.futures.process import BrokenProcessPool

import pytest

from helpers_tasks import pid_of, square

pytestmark = pytest.mark.timeout(120)

SCRIPT_TIMEOUT_S = 60


def _run_script(code, *args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.abspath(__file__)) + os.pathsep + \
        env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, env=env)


def _outcomes(results):
    out = []
    for get in results:
        try:
            out.append(get())
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test compares
            out.append(type(exc).__name__)
    return out


# -- maxtasksperchild loses nothing, counts items ------------------------------------------------

def test_executor_max_tasks_per_child_completes_every_task(impl):
    ex = impl.executor(3, max_tasks_per_child=1)
    futures = [ex.submit(square, i) for i in range(6)]
    ex.shutdown()
    assert _outcomes([lambda f=f: f.result(timeout=30) for f in futures]) == \
        [i * i for i in range(6)]


def test_pool_maxtasksperchild_completes_every_task(impl):
    pool = impl.pool(3, maxtasksperchild=1)
    results = [pool.apply_async(square, (i,)) for i in range(6)]
    pool.close()
    pool.join()
    assert _outcomes([lambda r=r: r.get(timeout=30) for r in results]) == \
        [i * i for i in range(6)]


def test_executor_max_tasks_per_child_counts_items_of_a_map(impl):
    with impl.executor(2, max_tasks_per_child=1) as ex:
        pids = list(ex.map(pid_of, range(20)))
    assert len(set(pids)) == 20


def test_pool_maxtasksperchild_map_completes_after_close(impl):
    pool = impl.pool(2, maxtasksperchild=1)
    result = pool.map_async(square, range(12), 1)
    pool.close()
    pool.join()
    assert result.get(timeout=30) == [i * i for i in range(12)]


# -- interpreter exit ----------------------------------------------------------------------------

_EXIT_SCRIPT = '''
    import sys, time
    import {module} as lib
    from helpers_tasks import sleep_then

    if __name__ == "__main__":
        if sys.argv[1] == "executor":
            ex = lib.ProcessPoolExecutor(2)
            futures = [ex.submit(sleep_then, i, 0.2) for i in range(4)]
            futures[-1].add_done_callback(lambda f: print("last", f.result(), flush=True))
        else:
            pool = lib.Pool(2)
            results = [pool.apply_async(sleep_then, (i, 5)) for i in range(4)]
            time.sleep(0.3)
        t0 = time.monotonic()
        import atexit
        atexit.register(lambda: print("exit after", round(time.monotonic() - t0), flush=True))
'''


@pytest.mark.parametrize("module", ["allcores", "concurrent.futures"])
def test_executor_left_open_finishes_its_futures_at_exit(module):
    proc = _run_script(_EXIT_SCRIPT.format(module=module), "executor")
    assert proc.returncode == 0, proc.stderr
    assert "last 3" in proc.stdout, (proc.stdout, proc.stderr)


@pytest.mark.parametrize("module", ["allcores", "multiprocessing"])
def test_pool_left_open_is_terminated_at_exit(module):
    proc = _run_script(_EXIT_SCRIPT.format(module=module), "pool")
    assert proc.returncode == 0, proc.stderr
    # Terminated: the tasks (5 s each) were not waited for.
    assert "exit after 0" in proc.stdout, (proc.stdout, proc.stderr)


@pytest.mark.parametrize("module", ["allcores", "concurrent.futures"])
def test_submit_from_atexit_hook_after_interpreter_shutdown(module):
    proc = _run_script(f'''
        import atexit
        import {module} as lib

        @atexit.register
        def late():
            try:
                ex.submit(abs, -1)
            except RuntimeError as exc:
                print("refused:", exc, flush=True)

        if __name__ == "__main__":
            ex = lib.ProcessPoolExecutor(2)
            print(ex.submit(abs, -42).result(timeout=30), flush=True)
    ''')
    assert proc.returncode == 0, proc.stderr
    # The standard library's message names the executor's shutdown or the interpreter's.
    assert "refused: cannot schedule new futures after" in proc.stdout, (proc.stdout, proc.stderr)
    if module == "allcores":
        assert "after interpreter shutdown" in proc.stdout, proc.stdout


def test_dropped_executor_finishes_its_futures(allcores_impl):
    from helpers_tasks import sleep_then
    ex = allcores_impl.executor(2)
    futures = [ex.submit(sleep_then, i, 0.1) for i in range(4)]
    del ex
    import gc
    gc.collect()
    assert [f.result(timeout=30) for f in futures] == [0, 1, 2, 3]


def test_running_pool_collected_without_close_warns(impl):
    if type(impl).__name__ == "StdlibImpl" and sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("the reference on a free-threaded build: multiprocessing.Pool is freed when its "
                    "threads merge their counts, and its finalizer then ran inside a later test "
                    "and hung there on its task queue's lock")
    pool = impl.pool(1)
    pool.apply(square, (2,))
    import gc
    with pytest.warns(ResourceWarning, match="unclosed running multiprocessing pool") as seen:
        del pool
        # A free-threaded build frees an object only once every thread that dropped a reference
        # to it has merged its count: a moment later, from the pool's own threads
        deadline = time.monotonic() + 10
        while True:
            gc.collect()
            if any(issubclass(w.category, ResourceWarning) for w in seen) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.05)


# -- a broken pool says BrokenProcessPool --------------------------------------------------------

def _fail_init():
    raise ValueError("init failed on purpose")


def _calls(pool, is_executor):
    if is_executor:
        return {"submit": lambda: pool.submit(square, 2).result(timeout=30),
                "map": lambda: list(pool.map(square, range(3)))}
    return {"apply": lambda: pool.apply(square, (2,)),
            "map": lambda: pool.map(square, range(3)),
            "imap": lambda: list(pool.imap(square, range(3))),
            "starmap": lambda: pool.starmap(square, [(1,)]),
            "submit": lambda: pool.submit(square, 2).result(timeout=30)}


def _wait_broken(pool):
    deadline = time.monotonic() + 30
    while pool._engine.broken is None:
        assert time.monotonic() < deadline, "the pool never noticed"
        time.sleep(0.01)


@pytest.mark.parametrize("api", ["pool", "executor"])
def test_failed_initializer_makes_every_call_raise_broken_process_pool(allcores_impl, api):
    pool = allcores_impl.executor(2, initializer=_fail_init) if api == "executor" else \
        allcores_impl.pool(2, initializer=_fail_init)
    try:
        _wait_broken(pool)
        for name, call in _calls(pool, api == "executor").items():
            with pytest.raises(BrokenProcessPool):
                call()
    finally:
        pool.shutdown() if api == "executor" else pool.terminate()


def _kill_template(pool):
    """Kills the pool's template process; returns once a new one runs (or the pool broke)."""
    engine = pool._engine
    host = engine._host
    old = host.pid
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while host.pid == old and engine.broken is None:
        assert time.monotonic() < deadline, "the pool never noticed its template's death"
        time.sleep(0.01)


@pytest.mark.parametrize("api", ["pool", "executor"])
def test_pool_survives_the_death_of_its_template(allcores_impl, api):
    from allcores import WorkerLost
    from helpers_tasks import sleep_then
    pool = allcores_impl.executor(2) if api == "executor" else allcores_impl.pool(2)
    try:
        assert pool.submit(square, 3).result(timeout=30) == 9
        running = [pool.submit(sleep_then, i, 30) for i in range(2)]
        deadline = time.monotonic() + 30
        while not all(f.running() for f in running):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        queued = [pool.submit(square, i) for i in range(6)]
        _kill_template(pool)
        for f in running:  # only the tasks whose workers died with it fail
            with pytest.raises(WorkerLost):
                f.result(timeout=30)
        assert [f.result(timeout=30) for f in queued] == [i * i for i in range(6)]
        for name, call in _calls(pool, api == "executor").items():
            call()
        assert pool._engine.broken is None
    finally:
        pool.shutdown() if api == "executor" else pool.terminate()


@pytest.mark.parametrize("api", ["pool", "executor"])
def test_templates_that_keep_dying_break_the_pool(allcores_impl, api):
    pool = allcores_impl.executor(2) if api == "executor" else allcores_impl.pool(2)
    try:
        for _ in range(4):
            assert pool.submit(square, 3).result(timeout=30) == 9
            _kill_template(pool)
        _wait_broken(pool)
        for name, call in _calls(pool, api == "executor").items():
            with pytest.raises(BrokenProcessPool):
                call()
    finally:
        pool.shutdown() if api == "executor" else pool.terminate()


def test_failed_initializer_is_logged_for_the_executor(impl):
    proc = _run_script(f'''
        import {"allcores" if impl.name == "allcores" else "concurrent.futures"} as lib
        from test_dropin_lifecycle import _fail_init

        if __name__ == "__main__":
            ex = lib.ProcessPoolExecutor(1, initializer=_fail_init)
            try:
                ex.submit(abs, 1).result(timeout=30)
            except Exception as exc:
                print(type(exc).__name__, flush=True)
            ex.shutdown()
    ''')
    assert "BrokenProcessPool" in proc.stdout, (proc.stdout, proc.stderr)
    assert "Exception in initializer:" in proc.stderr, proc.stderr
    assert "init failed on purpose" in proc.stderr, proc.stderr


# -- the processes a pool forks keep none of the program's descriptors ---------------------------

@pytest.mark.parametrize("api", ["pool", "executor"])
def test_pipe_closed_by_the_program_gives_eof_while_the_pool_lives(allcores_impl, api):
    import select
    r, w = os.pipe()
    pool = allcores_impl.executor(2) if api == "executor" else allcores_impl.pool(2)
    try:
        assert pool.submit(square, 4).result(timeout=30) == 16  # the workers are up
        os.close(w)
        ready, _, _ = select.select([r], [], [], 30)
        assert ready, "the pool's processes keep the pipe's write end open"
        assert os.read(r, 1) == b""
    finally:
        os.close(r)
        pool.shutdown() if api == "executor" else pool.terminate()


def test_shared_objects_made_before_the_pool_still_work_in_workers(allcores_impl):
    import allcores
    global _COUNTER
    _COUNTER = allcores.Counter()
    try:
        with allcores_impl.pool(2) as pool:
            back = pool.map(_bump_inherited, range(10), 1)
        assert _COUNTER.value == 10
        assert back[0].value == 10  # sent back from a worker: the same memory
    finally:
        _COUNTER = None


_COUNTER = None


def _bump_inherited(_):
    global _COUNTER
    _COUNTER += 1
    return _COUNTER


# -- forks while other threads run ---------------------------------------------------------------

def test_templates_forked_while_threads_run_give_no_fork_warning(allcores_impl):
    """os.fork() warns (DeprecationWarning, Python 3.12+) in a process running other threads;
    the template forks, made with CPython's fork hooks, never do: not for a pool started while
    another pool's collector thread and a thread of the program run, not for a new template."""
    import threading
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, args=(60,))
    other.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with allcores_impl.pool(1) as first, allcores_impl.pool(1) as second:
                assert first.apply(square, (2,)) == 4
                assert second.apply(square, (3,)) == 9
                _kill_template(second)
                assert second.apply(square, (4,)) == 16
                assert second._engine.broken is None
    finally:
        stop.set()
        other.join(timeout=30)


def test_a_forked_child_dropping_the_parents_pool_leaves_it_running():
    """A forked child that closes, terminates or garbage-collects its copy of the parent's pool
    must not stop the parent's: the region, template and workers are the parent's."""
    import allcores
    for how in ("terminate", "close", "drop"):
        pool = allcores.Pool(2)
        try:
            assert pool.apply(abs, (-1,)) == 1
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    import warnings
                    warnings.simplefilter("ignore")
                    if how == "terminate":
                        pool.terminate()
                    elif how == "close":
                        pool.close()
                        pool.join()
                    else:
                        pool.__del__()  # what collecting it runs
                except BaseException:
                    code = 1
                os._exit(code)
            deadline = time.monotonic() + 30
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                assert time.monotonic() < deadline, "forked child hung"
                time.sleep(0.01)
            assert os.waitstatus_to_exitcode(status) == 0
            assert pool.map(abs, range(-50, 0), chunksize=1) == list(range(50, 0, -1)), how
        finally:
            pool.terminate()
