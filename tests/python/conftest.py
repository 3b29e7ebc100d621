"""Shared fixtures for the pool behaviour tests.

`impl` runs a test against allcores and against the standard library (multiprocessing.Pool and
concurrent.futures.ProcessPoolExecutor with the fork start method), so each test shows that it
encodes what the standard library really does. Tests of what allcores does beyond the standard
library take the `allcores_impl` fixture instead.

Every test is checked for processes left behind, and a hang is turned into a failure with every
thread's stack printed.
"""
import concurrent.futures
import faulthandler
import multiprocessing
import os
import sys
import time

import signal

import psutil
import pytest

# A run started in the background by a shell (or under nohup) inherits SIGINT ignored, and Python
# then installs no KeyboardInterrupt handler: the tests that send Ctrl-C would wait for ever.
# Python's own handler restores what a terminal run has; programs the tests start get SIGINT at
# its default (a handler is reset on exec), so their Python installs it too.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The bench and the demo live in the checkout beside the package, not in the installed allcores:
# their tests import them from there.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(_CHECKOUT, "benchmarks"), os.path.join(_CHECKOUT, "demo")]

HANG_GUARD_S = 60  # the per-test hang guard of the pool behaviour tests unless they set one
_OWN_MODULES = ("test_pool_", "test_executor_", "test_default_pool", "test_errors",
                "test_robustness_")
LEFTOVER_GRACE_S = 5.0

try:
    import allcores
    allcores.Pool
    allcores.ProcessPoolExecutor
    _ALLCORES_MISSING = None
except (ImportError, AttributeError) as exc:  # the pool not built yet: run the stdlib half
    allcores = None
    _ALLCORES_MISSING = f"allcores.Pool is not importable yet ({exc!r})"


class Impl:
    """One implementation of the pool APIs, built the way its users build it."""

    name = None

    def pool(self, processes=2, *args, **kwargs):
        raise NotImplementedError

    def executor(self, max_workers=2, **kwargs):
        raise NotImplementedError

    def __repr__(self):
        return self.name


class AllcoresImpl(Impl):
    name = "allcores"
    TimeoutError = multiprocessing.TimeoutError

    def pool(self, processes=2, *args, **kwargs):
        return allcores.Pool(processes, *args, **kwargs)

    def executor(self, max_workers=2, **kwargs):
        return allcores.ProcessPoolExecutor(max_workers, **kwargs)


class StdlibImpl(Impl):
    name = "stdlib"

    def pool(self, processes=2, *args, **kwargs):
        return multiprocessing.get_context("fork").Pool(processes, *args, **kwargs)

    def executor(self, max_workers=2, **kwargs):
        if "mp_context" not in kwargs:
            # The stdlib refuses max_tasks_per_child with fork; spawn is its own default then.
            method = "spawn" if kwargs.get("max_tasks_per_child") else "fork"
            kwargs["mp_context"] = multiprocessing.get_context(method)
        return concurrent.futures.ProcessPoolExecutor(max_workers, **kwargs)


@pytest.fixture(params=["allcores", "stdlib"])
def impl(request):
    """The implementation under test: allcores, or the standard library as the reference."""
    if request.param == "allcores":
        if _ALLCORES_MISSING:
            pytest.skip(_ALLCORES_MISSING)
        return AllcoresImpl()
    return StdlibImpl()


@pytest.fixture
def allcores_impl():
    """For behaviour allcores promises beyond the standard library."""
    if _ALLCORES_MISSING:
        pytest.skip(_ALLCORES_MISSING)
    return AllcoresImpl()


def _hosts_subinterpreters(item):
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    return item.path.name == "test_backend_interpreter.py" or \
        "interpreter" in (params.get("backend"), params.get("any_backend"))


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture parameters
def pytest_collection_modifyitems(config, items):
    # Tests that create subinterpreters run last: CPython does not give back all the memory of
    # a destroyed subinterpreter (about 3 MiB each here), so after hundreds of them the test
    # process holds gigabytes, and every later fork (each process pool's template) copies the
    # page tables of all of it: the process-pool tests that followed took twice as long.
    items[:] = [i for i in items if not _hosts_subinterpreters(i)] + \
        [i for i in items if _hosts_subinterpreters(i)]
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("impl") == "stdlib":
            # multiprocessing forks from its handler threads (maxtasksperchild, replacing dead
            # workers); Python 3.12+ warns about that, and this project turns warnings into errors.
            item.add_marker(pytest.mark.filterwarnings(
                "ignore:This process .* is multi-threaded:DeprecationWarning"))
        if item.get_closest_marker("timeout") is None and \
                item.path.name.startswith(_OWN_MODULES):
            item.add_marker(pytest.mark.timeout(HANG_GUARD_S))


# -- processes left behind ------------------------------------------------------------------------

def _is_mp_helper(proc):
    """multiprocessing's resource tracker and fork server are process-wide singletons by design."""
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.Error, OSError):
        return False
    return "resource_tracker" in cmd or "forkserver" in cmd


def _all_descendants():
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _descendants():
    return [p for p in _all_descendants() if not _is_mp_helper(p)]


def _describe(proc, parent=True):
    try:
        text = f"pid {proc.pid} {' '.join(proc.cmdline())[:80]!r} status={proc.status()}"
        if parent:
            up = proc.parent()
            text += f", child of {_describe(up, parent=False) if up else 'nobody'}"
        return text
    except psutil.Error as exc:
        return f"pid {proc.pid} ({exc.__class__.__name__})"


def _shut_default_pool():
    """The default pool lives for the whole process by design: a test that used it shuts it down,
    so that its workers are not counted as left behind and its shutdown is checked too."""
    default = sys.modules.get("allcores._default")
    pool = getattr(default, "_pool", None)
    if pool is not None and getattr(pool, "_state", None) == "RUN":
        pool.terminate()
        pool.join()


def _stop_mp_helpers(before):
    """Stops multiprocessing's resource tracker and fork server when this test started them
    (spawn and forkserver contexts do): they would outlive the test, and later tests of this
    process count every child."""
    helpers = [p for p in _all_descendants() if _is_mp_helper(p) and p.pid not in before]
    if not helpers:
        return
    from multiprocessing import forkserver, resource_tracker
    for singleton in (forkserver._forkserver, resource_tracker._resource_tracker):
        try:
            singleton._stop()
        except Exception:  # private API: the leak check below still reports what remains
            pass


def _check_left_behind(before, when):
    _shut_default_pool()
    _stop_mp_helpers(before)
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while True:
        left = [p for p in _descendants() if p.pid not in before]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if left:
        desc = "; ".join(_describe(p) for p in left)
        for p in left:  # do not let these leftovers fail the next tests too
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=2)
        pytest.fail(f"{len(left)} process(es) left behind {when}: {desc}", pytrace=False)


def _uses_wider_fixture(item):
    """True when the test uses a module- or session-scoped fixture of this project (a pool shared
    by several tests may start or replace processes during any of them)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    for name, defs in info.name2fixturedefs.items():
        if name == "no_process_left_behind_by_module":
            continue
        for d in defs:
            if d.scope != "function" and d.baseid:  # baseid "" means pytest's own fixtures
                return True
    return False


@pytest.fixture(scope="module", autouse=True)
def no_process_left_behind_by_module():
    """Processes started by module-scoped fixtures must be gone once the module is done."""
    before = {p.pid for p in _all_descendants()}
    yield
    _check_left_behind(before, "after the module")


@pytest.fixture(autouse=True)
def no_process_left_behind(request):
    """Fails a test that leaves child processes (workers, helpers, zombies) of the test process
    behind. Processes that were there before the test are not this test's fault; tests sharing
    a module-scoped pool are checked when the module ends instead."""
    per_test = not _uses_wider_fixture(request.node)
    before = {p.pid for p in _all_descendants()} if per_test else None
    marker = request.node.get_closest_marker("timeout")
    try:
        guard = float(marker.args[0] if marker and marker.args else
                      request.config.getini("timeout") or 300)
    except (ValueError, TypeError):
        guard = 300.0
    # A last resort for a hang that holds the GIL (pytest-timeout's signal cannot fire then):
    # dump every thread's stack and exit.
    faulthandler.dump_traceback_later(guard + 30, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()
    if per_test:
        _check_left_behind(before, "after the test")


@pytest.fixture
def gate(tmp_path):
    """A path tasks wait for (helpers_tasks.wait_for_file) until the test creates it."""
    return str(tmp_path / "gate")
