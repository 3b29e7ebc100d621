"""Runs CPython's own process-pool test suites against allcores, in a child interpreter.

The running interpreter's standard-library test package is loaded as it is installed; only the
pool types are substituted before the tests are collected: allcores.ProcessPoolExecutor for the
process-pool classes' executor_type and concurrent.futures.ProcessPoolExecutor, allcores.Pool for
ProcessesMixin.Pool and multiprocessing.Pool (some tests name the standard library's type). A
test that starts a fresh interpreter (test_shutdown's interpreter-exit tests) runs the standard
library's executor there. No test code lives here.

    python cpython_suites.py list SUITE            one test id a line
    python cpython_suites.py run SUITE OUT SKIP    runs SUITE; one JSON line a test into OUT

A test that runs past PER_TEST_S is recorded as a timeout with every thread's stack, and the
child exits: the caller starts another for the rest (SKIP names the ids already recorded).

EXPECTED lists the only failures allowed, each with its reason. Two kinds only: the test reads
private attributes of the standard library's objects, or it asserts a documented deliberate
difference (docs/reference.md).
"""
import faulthandler
import io
import json
import os
import sys
import threading
import time
import traceback
import unittest

PER_TEST_S = float(os.environ.get("AC_CPYTHON_SUITES_TEST_S", 120))  # the watchdog of one test

FUTURES_MODULES = ("executor", "test_process_pool", "test_shutdown", "test_wait",
                   "test_as_completed", "test_deadlock", "test_init")
# The process-pool classes of test_concurrent_futures that use the fork context. allcores makes
# the same workers whatever context is passed (it only warns for spawn and forkserver), so their
# spawn and forkserver copies would run the same tests against the same code a second and third
# time; the thread pool's classes do not use a process pool.
FUTURES_CONTEXTS = ("fork",)
# Records of what ran outside a test (module and class set-up and clean-up) carry this prefix.
FIXTURE = "fixture: "
MP_CLASSES = ("WithProcessesTestPool", "WithProcessesTestPoolWorkerErrors",
              "WithProcessesTestPoolWorkerLifetime")

_PRIVATE = "reads private attributes of the standard library's object: "
_SURVIVES = ("deliberate difference (docs/reference.md): a task whose argument or result cannot "
             "be unpickled fails alone with that error, and the pool goes on; the standard "
             "library breaks the whole executor (BrokenProcessPool)")
_EXE = "ProcessPoolForkProcessPoolExecutorTest."
_SHUT = "ProcessPoolForkProcessPoolShutdownTest."
_DEAD = "ProcessPoolForkExecutorDeadlockTest."

# Keyed by "Class.test" (the module part of an id differs between Python versions).
EXPECTED = {
    # test_concurrent_futures
    _EXE + "test_killed_child": _PRIVATE + "_processes",
    _EXE + "test_saturation": _PRIVATE + "_processes",
    _EXE + "test_max_tasks_per_child_defaults_to_spawn_context": _PRIVATE + "_mp_context",
    _EXE + "test_force_shutdown_workers_stops_pool": _PRIVATE + "_processes",
    _EXE + "test_traceback": _PRIVATE + "the cause's type is concurrent.futures.process."
                             "_RemoteTraceback (allcores: multiprocessing.pool.RemoteTraceback)",
    _EXE + "test_python_finalization_error": _PRIVATE + "it replaces threading."
                                             "_start_joinable_thread to fail the executor's "
                                             "second internal thread, which allcores does not have",
    _EXE + "test_max_tasks_per_child": (
        "deliberate difference (docs/reference.md): max_tasks_per_child is accepted with the "
        "fork context, since allcores forks from a single-threaded template (the standard "
        "library raises ValueError); then " + _PRIVATE + "_processes"),
    _SHUT + "test_context_manager_shutdown": _PRIVATE + "_processes",
    _SHUT + "test_del_shutdown": _PRIVATE + "_executor_manager_thread, _processes",
    _SHUT + "test_processes_terminate": _PRIVATE + "_processes",
    _SHUT + "test_shutdown_no_wait": _PRIVATE + "_executor_manager_thread, _processes",
    _SHUT + "test_cancel_futures": (
        "deliberate difference (docs/reference.md): shutdown(cancel_futures=True) cancels every "
        "task no worker has taken yet; the standard library has already moved max_workers + 1 "
        "of them to its call queue and runs those, which this test counts on"),
    _DEAD + "test_shutdown_deadlock_pickle": _PRIVATE + "_executor_manager_thread",
    _DEAD + "test_error_at_task_unpickle": _SURVIVES,
    _DEAD + "test_exit_at_task_unpickle": _SURVIVES,
    _DEAD + "test_error_during_result_unpickle_in_result_handler": _SURVIVES,
    _DEAD + "test_exit_during_result_unpickle_in_result_handler": _SURVIVES,
    "ProcessPoolForkFailingInitializerTest.test_initializer": _PRIVATE + "_broken",
    # _test_multiprocessing
    "WithProcessesTestPool.test_make_pool": _PRIVATE + "_pool",
    "WithProcessesTestPoolWorkerLifetime.test_pool_worker_lifetime": _PRIVATE + "_pool",
    "WithProcessesTestPoolWorkerErrors.test_unpickleable_result": (
        "deliberate difference (docs/reference.md): a result pickle refuses travels by "
        "cloudpickle, so the lambda this test returns arrives (multiprocessing raises "
        "MaybeEncodingError; allcores does for a result neither can pickle)"),
    "WithProcessesTestPool.test_imap_handle_iterable_exception": (
        "deliberate difference (docs/reference.md): when imap's input raises, every item it "
        "yielded before comes back before the error; multiprocessing drops the items of the "
        "chunk the input failed in, which this test counts on"),
}


#: Tests that are not run, with the reason: each reads a private attribute of the standard
#: library's executor before it releases the tasks it started, which then wait for ever (the
#: test's clean-up, shutdown(wait=True), would hang until the watchdog).
NOT_RUN = {
    _EXE + "test_broken_process_pool_traceback": _PRIVATE + "_processes (to terminate a worker); "
    "its three tasks then wait for ever on an event nothing sets",
    _EXE + "test_force_shutdown_workers": _PRIVATE + "_processes (to watch a worker's "
    "terminate()); its task then waits for ever on an event nothing sets",
}

#: Expected failures whose outcome depends on timing: they may pass (where workers take every
#: queued task before shutdown() runs, nothing is left for cancel_futures to cancel).
MAY_PASS = {_SHUT + "test_cancel_futures"}


def may_pass(test_id):
    cls, name = test_id.split(".")[-2:]
    return f"{cls}.{name}" in MAY_PASS


def expected_reason(test_id):
    cls, name = test_id.split(".")[-2:]
    return EXPECTED.get(f"{cls}.{name}")


def unavailable(suite):
    """Why SUITE cannot run on this interpreter, or None."""
    import importlib.util
    name = "test.test_concurrent_futures" if suite == "futures" else "test._test_multiprocessing"
    try:
        if importlib.util.find_spec(name) is None:
            raise ImportError
    except ImportError:
        return (f"this Python {sys.version_info[0]}.{sys.version_info[1]} has no {name} "
                "in its standard-library test package")
    return None


def _substitute():
    import concurrent.futures
    import multiprocessing
    import allcores
    concurrent.futures.ProcessPoolExecutor = allcores.ProcessPoolExecutor
    multiprocessing.Pool = allcores.Pool
    return allcores


def _load(suite):
    """The selected tests of SUITE, with the pool types substituted."""
    allcores = _substitute()
    import importlib
    loader = unittest.TestLoader()
    tests = []
    if suite == "futures":
        pkg = importlib.import_module("test.test_concurrent_futures")
        if hasattr(pkg, "__path__"):  # 3.13+: a package
            util = importlib.import_module("test.test_concurrent_futures.util")
            mods = [importlib.import_module(f"test.test_concurrent_futures.{m}")
                    for m in FUTURES_MODULES]
            for mixin in (util.ProcessPoolForkMixin, util.ProcessPoolForkserverMixin,
                          util.ProcessPoolSpawnMixin):
                mixin.executor_type = allcores.ProcessPoolExecutor
        else:  # 3.11: one module
            mods = [pkg]
            for mixin in (pkg.ProcessPoolForkMixin, pkg.ProcessPoolForkserverMixin,
                          pkg.ProcessPoolSpawnMixin):
                mixin.executor_type = allcores.ProcessPoolExecutor
        for mod in mods:
            for name, obj in sorted(vars(mod).items()):
                if (isinstance(obj, type) and issubclass(obj, unittest.TestCase)
                        and getattr(obj, "executor_type", None) is allcores.ProcessPoolExecutor
                        and getattr(obj, "ctx", None) in FUTURES_CONTEXTS
                        and obj.__module__ == mod.__name__):
                    tests.append((mod, obj))
    else:
        mp = importlib.import_module("test._test_multiprocessing")
        mp.ProcessesMixin.Pool = staticmethod(allcores.Pool)
        import types
        mod = types.ModuleType("test_multiprocessing_allcores")
        sys.modules[mod.__name__] = mod
        mp.install_tests_in_module_dict(vars(mod), "fork", only_type="processes")
        for name in MP_CLASSES:
            tests.append((mod, vars(mod)[name]))
    for mod, cls in tests:
        for name in dir(cls):
            reason = NOT_RUN.get(f"{cls.__name__}.{name}")
            if reason:
                setattr(cls, name, unittest.skip("not run: " + reason)(getattr(cls, name)))
    out = []
    for mod, cls in tests:
        out.append((mod, cls, loader.loadTestsFromTestCase(cls)))
    return out


def _ids(suite):
    return [t.id() for _, _, s in _load(suite) for t in s]


class _Recorder(unittest.TestResult):
    """Writes one JSON line per finished test, and arms the per-test watchdog."""

    def __init__(self, out):
        super().__init__()
        self._out = out
        self._timer = None
        self._current = None
        self._outcome = None
        self._started = 0.0
        self._arm(FIXTURE + "set-up before the first test")

    def _write(self, test_id, outcome, detail="", seconds=None):
        rec = {"id": test_id, "outcome": outcome, "detail": detail, "seconds": seconds}
        self._out.write(json.dumps(rec) + "\n")
        self._out.flush()

    def _arm(self, what):
        """Starts the watchdog for what runs next: a test, or the fixtures between two tests."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(PER_TEST_S, self._expired, (what,))
        self._timer.daemon = True
        self._timer.start()

    def disarm(self):
        self._timer.cancel()

    def _expired(self, what):
        buf = io.StringIO()
        for ident, frame in sys._current_frames().items():
            buf.write(f"--- thread {ident}\n")
            buf.write("".join(traceback.format_stack(frame)))
        self._write(what, "timeout", f"ran past {PER_TEST_S} s\n" + buf.getvalue(), PER_TEST_S)
        os._exit(3)

    def startTest(self, test):
        super().startTest(test)
        self._current = test.id()
        self._outcome = ("passed", "")
        self._started = time.monotonic()
        self._arm(test.id())

    def stopTest(self, test):
        self._arm(f"{FIXTURE}clean-up after {test.id()} (class or module tearDown)")
        super().stopTest(test)
        self._write(test.id(), *self._outcome, round(time.monotonic() - self._started, 2))

    def _set(self, outcome, detail):
        if self._outcome[0] in ("passed", "skipped", "expected_failure"):
            self._outcome = (outcome, detail)

    def addError(self, test, err):
        super().addError(test, err)
        if test.id() != self._current:  # a class or module fixture failed
            self._write(FIXTURE + test.id(), "error", self._exc_info_to_string(err, test))
        else:
            self._set("error", self._exc_info_to_string(err, test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set("failed", self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "failed" if issubclass(err[0], test.failureException) else "error"
            self._set(kind, f"{subtest.id()}\n" + self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if test.id() != self._current:
            self._write(FIXTURE + test.id(), "skipped", reason)
        else:
            self._outcome = ("skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._outcome = ("passed", "")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set("failed", "unexpected success")


def _run(suite, out_path, skip_path):
    skip = set()
    if os.path.exists(skip_path):
        with open(skip_path) as f:
            skip = set(f.read().split())
    runnable = unittest.TestSuite()
    for _mod, _cls, tests in _load(suite):
        keep = [t for t in tests if t.id() not in skip]
        if keep:
            runnable.addTests(keep)
    faulthandler.enable()
    with open(out_path, "a") as out:
        result = _Recorder(out)
        # The suites' module set-up and clean-up (setUpModule/tearDownModule) run through
        # unittest's own suite machinery, as `python -m unittest` would.
        runnable.run(result)
        result.disarm()


def main(argv):
    cmd, suite = argv[1], argv[2]
    if cmd == "list":
        print("\n".join(_ids(suite)))
    elif cmd == "run":
        _run(suite, argv[3], argv[4])
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv)
