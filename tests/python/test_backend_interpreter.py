"""backend="interpreter": each worker is a subinterpreter with its own GIL (Python 3.12+).

What the Pool API tests cannot see: workers are separate interpreters (own modules, own state),
a C extension that refuses subinterpreters gives a clear error naming it, our own extension works
in an isolated interpreter, terminate() and Ctrl-C interrupt running Python code, the process
exits cleanly after its workers received big arguments or called C functions with keywords (an
abort at exit on 3.12.1), and the backend is refused with a clear message on 3.11.
"""
import functools
import importlib.util
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import allcores
from backend_impls import unavailable
from backend_tasks import (core_round_trip, get_state, hash_of, import_module, interpreter_id,
                           numpy_sum, set_state, spin_until_interrupted, square)
from helpers_tasks import wait_until

# Python 3.12+ and a build with the subinterpreter host
works_here = pytest.mark.skipif(bool(unavailable("interpreter")),
                                reason=unavailable("interpreter") or "")


def _pool(n=2, *args, **kwargs):
    return allcores.Pool(n, *args, backend="interpreter", **kwargs)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the backend works here")
def test_refused_before_312_with_a_clear_error():
    with pytest.raises(RuntimeError, match=r"3\.12 or later.*backend='process'"):
        _pool()
    with pytest.raises(RuntimeError, match=r"3\.12 or later"):
        allcores.ProcessPoolExecutor(2, backend="interpreter")


@works_here
def test_each_worker_is_an_interpreter_of_its_own(tmp_path):
    from backend_tasks import meet_then_interpreter_id
    with _pool(2) as pool:
        ids = pool.map(functools.partial(meet_then_interpreter_id, str(tmp_path), 2), range(2), 1)
    assert interpreter_id() == 0
    assert 0 not in ids and len(set(ids)) == 2


@works_here
def test_workers_have_their_own_modules():
    """The initializer sets module state in each worker's interpreter, not in the caller's."""
    import backend_tasks
    before = dict(backend_tasks._state)
    with _pool(2, set_state, ("in the worker",)) as pool:
        states = pool.map(get_state, range(6), 1)
    assert states == ["in the worker"] * 6
    assert backend_tasks._state == before


@works_here
def test_workers_are_named_as_worker_processes_are(tmp_path):
    from backend_tasks import process_name
    with _pool(2) as pool:
        names = pool.map(process_name, range(8))
    assert set(names) <= {"AllcoresPoolWorker-1", "AllcoresPoolWorker-2"}


@works_here
def test_maxtasksperchild_starts_a_fresh_interpreter():
    with _pool(1, maxtasksperchild=2) as pool:
        ids = [pool.apply(interpreter_id) for _ in range(6)]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[4] == ids[5]
    assert len(set(ids)) == 3


def _assert_names_itself(exc, module):
    assert isinstance(exc, allcores._interp.SubinterpreterImportError)
    assert isinstance(exc, ImportError)
    assert exc.name.split(".")[0] == module, exc.name
    assert f"{module} cannot be used in a subinterpreter" in str(exc)
    assert "backend='process'" in str(exc)


@works_here
def test_numpy_refused_in_subinterpreters_names_itself():
    """numpy does not declare per-interpreter GIL support (numpy 2.x): a task that imports it
    fails with an ImportError naming numpy's extension module and pointing to
    backend='process'; the pool goes on. (When a numpy release loads there, this fails: the
    docs' list of refused modules needs updating then.)"""
    pytest.importorskip("numpy")
    with _pool(1) as pool:
        with pytest.raises(ImportError) as info:
            pool.apply(numpy_sum, (10,))
        _assert_names_itself(info.value, "numpy")
        assert info.value.name.startswith("numpy.")  # its extension module, not numpy itself
        assert pool.apply(square, (7,)) == 49


@works_here
def test_a_module_refused_in_subinterpreters_names_itself():
    """Any C extension without per-interpreter GIL support: the first of these importable
    here."""
    candidates = ["_testsinglephase", "_curses", "readline"]
    with _pool(1) as pool:
        for name in candidates:
            try:
                __import__(name)
            except ImportError:
                continue
            with pytest.raises(ImportError) as info:
                pool.apply(import_module, (name,))
            _assert_names_itself(info.value, name)
            assert pool.apply(square, (7,)) == 49
            return
    pytest.skip(f"none of {candidates} is importable here")


@works_here
def test_our_extension_works_in_isolated_interpreters():
    """allcores._core declares per-interpreter GIL support: each worker imports it, builds a
    Region of its own and uses it, at the same time as the others."""
    with _pool(2) as pool:
        got = pool.map(core_round_trip, [5] * 6, 1)
    assert got == [[1, 2, 3, 4, 5]] * 6


@works_here
def test_our_extension_imports_in_a_stdlib_isolated_interpreter():
    """The same check without our host: an isolated interpreter made by the standard library."""
    code = textwrap.dedent("""
        import sys
        if sys.version_info >= (3, 13):
            import _interpreters as I
            i = I.create("isolated")
            err = I.exec(i, "import allcores._core; allcores._core.Region(1, 2, 2, 1 << 20)")
            assert err is None, err
        else:
            import _xxsubinterpreters as I
            i = I.create(isolated=True)
            I.run_string(i, "import allcores._core; allcores._core.Region(1, 2, 2, 1 << 20)")
        I.destroy(i)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# Each case: what the task gets and does. On 3.12.0-3.12.3 the process aborted at exit after the
# first call with keywords of a stdlib C function had happened in a subinterpreter (CPython
# gh-119213): pickle.loads(stream, buffers=...) on a big argument, hashlib's import, zlib below.
_EXIT_CASES = {
    "bytes": ("length", 'b"y" * (1 << 20)'),
    "bytearray": ("length", "bytearray(1 << 20)"),
    "memoryview": ("length", "memoryview(bytearray(1 << 20))"),
    "numpy": ("length", "__import__('numpy').zeros(1 << 17)"),
    "hashlib": ("hash_of", 'b"a"'),
    "zlib keywords": ("compressed_length", 'b"z" * 1000'),
}


@works_here
@pytest.mark.parametrize("case", list(_EXIT_CASES))
def test_the_process_exits_cleanly_after_its_workers_ran(tmp_path, case):
    """Every Python the backend runs on (3.12.1 here aborted: "free(): invalid pointer", exit
    status 134): a fresh process whose 1-worker pool ran one such task exits with status 0."""
    fn, arg = _EXIT_CASES[case]
    if case == "numpy" and importlib.util.find_spec("numpy") is None:
        pytest.skip("numpy is not installed")
    script = tmp_path / "one_task.py"
    script.write_text(textwrap.dedent(f"""
        import allcores
        import backend_tasks

        if __name__ == "__main__":
            with allcores.Pool(1, backend="interpreter") as pool:
                try:
                    print(pool.apply(backend_tasks.{fn}, ({arg},)))
                except ImportError as exc:  # numpy refuses to load there: fine, as documented
                    print(type(exc).__name__)
            print("end of script")
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(__file__)] + [p for p in sys.path if p]))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "end of script"
    assert proc.stderr == ""


@works_here
def test_functions_of_main_travel_by_value(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent("""
        import allcores

        def triple(x):
            return 3 * x

        if __name__ == "__main__":
            with allcores.Pool(2, backend="interpreter") as pool:
                print(pool.map(triple, range(4)), pool.apply(lambda: "lambda"))
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 3, 6, 9] lambda"


@works_here
@pytest.mark.timeout(60)
def test_terminate_interrupts_running_python_code(tmp_path):
    marker = str(tmp_path / "running")
    pool = _pool(1)
    running = pool.apply_async(spin_until_interrupted, (marker,))
    wait_until(lambda: os.path.exists(marker), what="the task's start")
    pool.terminate()
    pool.join()
    assert not running.ready() or not running.successful()
    threads = pool._engine.worker_threads()
    wait_until(lambda: not any(t.is_alive() for t in threads), what="the worker's end")


@works_here
@pytest.mark.timeout(60)
def test_interrupt_stops_the_work_and_the_pool_goes_on(tmp_path):
    """What Ctrl-C in a waiting caller does (Engine.interrupt): running Python code is
    interrupted, queued tasks cancelled; the pool serves again."""
    marker = str(tmp_path / "running")
    with _pool(1) as pool:
        running = pool.apply_async(spin_until_interrupted, (marker,))
        queued = pool.apply_async(square, (3,))
        wait_until(lambda: os.path.exists(marker), what="the task's start")
        pool._engine.interrupt()
        with pytest.raises(Exception):
            queued.get(30)
        # The pool's only worker was spinning forever: it serves again, so it was interrupted.
        assert pool.apply(square, (4,)) == 16
        assert not running.ready() or not running.successful()


@works_here
def test_task_timeout_is_refused():
    with pytest.raises(ValueError, match="backend='process'"):
        _pool(1, task_timeout=1.0)
    with _pool(1) as pool:
        with pytest.raises(ValueError, match="backend='process'"):
            pool.apply(square, (2,), task_timeout=1.0)
        with pytest.raises(ValueError, match="backend='process'"):
            pool.map(square, [1, 2], task_timeout=1.0)


@works_here
def test_pools_leave_no_thread_behind():
    before = threading.active_count()
    for _ in range(3):
        with _pool(2) as pool:
            assert pool.map(square, range(10)) == [x * x for x in range(10)]
        pool.join()
    wait_until(lambda: threading.active_count() <= before, what="the worker threads' end")


@works_here
def test_a_process_pool_next_to_running_interpreters_is_refused_clearly():
    """CPython cannot fork a process in which isolated subinterpreters run (the forked template
    aborts while deleting them, and the process pool would wait forever): refused with a clear
    error; created first, or once the interpreter pool is joined, it works."""
    with allcores.Pool(1) as first:
        with _pool(2) as interp:
            assert interp.map(square, range(4)) == [0, 1, 4, 9]
            assert first.map(square, range(4)) == [0, 1, 4, 9]
            with pytest.raises(RuntimeError, match="process pool first"):
                allcores.Pool(1)
        interp.join()
    with allcores.Pool(1) as later:
        assert later.map(square, range(4)) == [0, 1, 4, 9]
