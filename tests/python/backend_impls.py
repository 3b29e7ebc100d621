"""Runs the Pool and Executor API tests on the other backends (thread, interpreter, dask).

Each test_backend_<file>.py imports every test of tests/python/<file>.py and replaces the `impl`
and `allcores_impl` fixtures with this module's: the same tests, one backend at a time. A test
is skipped only where the backend cannot do what it checks; SKIPS says why. Tests that identify
workers by process id have backend-neutral twins in test_backend_workers.py.

The dask backend runs against a real cluster: a scheduler and two worker processes on 127.0.0.1,
started once per test module (before any test's check for processes left behind).
"""
import contextlib
import copyreg
import importlib.util
import multiprocessing
import os
import sys

import pytest

import allcores

BACKENDS = ["thread", "interpreter", "dask"]
DASK_WORKERS = 2

_PIDS = "workers of this backend are threads of the test process: they share its pid " \
        "(test_backend_workers.py checks the same behaviour by worker identity)"
_DASK_PIDS = "the cluster decides which worker runs a task, and it has 2 worker processes " \
             "(test_backend_workers.py checks the behaviour by worker identity)"
_NO_RECYCLE = "dask workers belong to the cluster: maxtasksperchild cannot replace them"
_NO_RECYCLE_BATCHES = _NO_RECYCLE + " (test_backend_workers.py's " \
    "test_tiny_tasks_travel_in_batches_on_every_backend sees dask's batches by the tasks sent)"
_WAKE_TWIN = " (test_backend_workers.py's twin, with tasks that end by themselves, checks " \
    "the same on every backend)"
_MAIN_SCRIPT = "runs a script that uses the default (process) backend: not a backend test"
_NO_NUMPY = "numpy refuses to load in a subinterpreter (the task fails with " \
            "SubinterpreterImportError: test_backend_interpreter.py checks it)"
_FRESH_MODULES = "a subinterpreter starts from fresh modules: the caller's module globals are " \
                 "not there (its environment and working directory are: one process)"
_ONE_PROCESS_NAME = "thread workers are one process: multiprocessing.current_process() is " \
                    "the caller's"
_CLUSTER_PROCESSES = "cluster workers are processes started before the pool (possibly on " \
                     "other machines): they see neither the caller's globals, environment nor " \
                     "working directory"

# test name -> reason, per backend (the whole test is skipped; parametrized variants included).
SKIPS = {
    "thread": {
        "test_apply_runs_in_another_process": _PIDS,
        "test_submit_runs_in_another_process": _PIDS,
        "test_worker_pids_are_not_the_caller": _PIDS,
        "test_long_tasks_are_spread_over_the_workers": _PIDS,
        "test_many_tiny_tasks_are_batched": _PIDS,
        "test_imap_batches_tiny_tasks_automatically": _PIDS,
        "test_processes_run_at_the_same_time": _PIDS,
        "test_automatic_chunks_keep_long_tasks_apart": _PIDS,
        "test_maxtasksperchild_replaces_workers": _PIDS,
        "test_max_tasks_per_child": _PIDS,
        "test_two_pools_at_once": _PIDS,
        "test_terminate_stops_running_tasks":
            "a thread cannot be stopped: terminate() cancels queued tasks and leaves running "
            "ones to finish (here a 60 s sleep)",
        "test_context_manager_exit_terminates":
            "a thread cannot be stopped: the 60 s task it leaves running would outlive the test",
        "test_functions_of_main": _MAIN_SCRIPT,
        "test_functions_of_main_with_python_c": _MAIN_SCRIPT,
        "test_failing_initializer_breaks_the_executor":
            "the initializer runs in a thread at once: the executor is often broken before the "
            "first submit(), which then raises BrokenProcessPool itself (test_backend_workers.py "
            "accepts either)",
        "test_workers_have_their_own_process_names": _ONE_PROCESS_NAME,
        "test_each_worker_draws_its_own_random_numbers": _PIDS,
        "test_more_processes_than_cores": _PIDS,
        "test_terminate_wakes_callers_waiting_in_other_threads":
            "its tasks register by pid, one for all threads (so only one of the two it waits "
            "for appears), and sleep 60 s: a thread cannot be stopped" + _WAKE_TWIN,
    },
    "interpreter": {
        "test_apply_runs_in_another_process": _PIDS,
        "test_submit_runs_in_another_process": _PIDS,
        "test_worker_pids_are_not_the_caller": _PIDS,
        "test_long_tasks_are_spread_over_the_workers": _PIDS,
        "test_many_tiny_tasks_are_batched": _PIDS,
        "test_imap_batches_tiny_tasks_automatically": _PIDS,
        "test_processes_run_at_the_same_time": _PIDS,
        "test_automatic_chunks_keep_long_tasks_apart": _PIDS,
        "test_maxtasksperchild_replaces_workers": _PIDS,
        "test_max_tasks_per_child": _PIDS,
        "test_two_pools_at_once": _PIDS,
        "test_terminate_stops_running_tasks":
            "a subinterpreter cannot be killed: terminate() interrupts Python code, but a task "
            "blocked in C (a 60 s time.sleep) finishes first",
        "test_context_manager_exit_terminates":
            "a subinterpreter cannot be killed: the 60 s sleep it leaves running would outlive "
            "the test",
        "test_functions_of_main": _MAIN_SCRIPT,
        "test_functions_of_main_with_python_c": _MAIN_SCRIPT,
        "test_workers_see_the_callers_state_at_pool_creation": _FRESH_MODULES,
        "test_each_worker_draws_its_own_random_numbers": _PIDS,
        "test_more_processes_than_cores": _PIDS,
        "test_workers_have_their_own_process_names":
            "its workers meet by pid, one for all interpreters (they are named "
            "AllcoresPoolWorker-k: test_backend_interpreter.py checks it)",
        "test_tasks_can_use_pools_themselves":
            "an isolated subinterpreter may neither fork nor start daemon threads: a task "
            "cannot start a process pool there",
        "test_terminate_wakes_callers_waiting_in_other_threads":
            "its tasks register by pid, one for all interpreters, and sleep 60 s in C, which "
            "terminate() cannot interrupt" + _WAKE_TWIN,
    },
    "dask": {
        "test_processes_run_at_the_same_time": _DASK_PIDS,
        "test_long_tasks_are_spread_over_the_workers": _DASK_PIDS,
        "test_automatic_chunks_keep_long_tasks_apart": _DASK_PIDS,
        "test_many_tiny_tasks_are_batched": _NO_RECYCLE_BATCHES,
        "test_imap_batches_tiny_tasks_automatically": _NO_RECYCLE_BATCHES,
        "test_maxtasksperchild_replaces_workers": _NO_RECYCLE,
        "test_maxtasksperchild_with_initializer": _NO_RECYCLE,
        "test_maxtasksperchild_map_completes": _NO_RECYCLE,
        "test_max_tasks_per_child": _NO_RECYCLE,
        "test_two_pools_at_once": _DASK_PIDS,
        "test_terminate_stops_running_tasks":
            "dask cannot stop a task running on a cluster worker (allcores will not restart a "
            "shared cluster's workers)",
        "test_context_manager_exit_terminates":
            "dask cannot stop a task running on a cluster worker (allcores will not restart a "
            "shared cluster's workers)",
        "test_functions_of_main": _MAIN_SCRIPT,
        "test_functions_of_main_with_python_c": _MAIN_SCRIPT,
        "test_imap_consumes_its_input_lazily":
            "100,000 one-item tasks (chunksize=1): a dask task costs milliseconds (4 ms each, "
            "13 ms round trip on the 2-core VM), minutes in all",
        "test_executor_map_consumes_its_input_lazily":
            "30,000 one-item tasks: a dask task costs milliseconds (4 ms each on the 2-core VM), "
            "two minutes in all; the lazy reading itself is the engine's, checked on the others",
        "test_workers_see_the_callers_state_at_pool_creation": _CLUSTER_PROCESSES,
        "test_output_of_tasks_reaches_the_callers_stdout":
            "dask workers print to their own stdout (the cluster's console), not the caller's",
        "test_workers_have_their_own_process_names":
            "dask names its worker processes itself",
        "test_each_worker_draws_its_own_random_numbers": _NO_RECYCLE,
        "test_more_processes_than_cores":
            "the cluster has 2 worker processes, whatever `processes` asks for",
        "test_tasks_can_use_pools_themselves":
            "its default-pool half: dask workers outlive the pool, so the default pool a task "
            "starts there stays with the worker (and counts as processes left behind); the "
            "explicit nested-pool half runs in test_backend_dask.py",
        "test_terminate_wakes_callers_waiting_in_other_threads":
            "dask cannot stop a task running on a cluster worker: its 60 s sleeps would hold "
            "the cluster's workers after the test" + _WAKE_TWIN,
    },
}


def unavailable(backend):
    """Why backend cannot run here, or None."""
    if backend == "interpreter":
        try:
            from allcores._backend_interpreter import check_supported
            check_supported()
        except RuntimeError as exc:
            return str(exc)
    if backend == "dask" and importlib.util.find_spec("distributed") is None:
        return "dask.distributed is not installed (pip install 'dask[distributed]')"
    return None


class BackendImpl:
    """allcores.Pool / ProcessPoolExecutor on one backend, with the conftest Impl interface."""

    TimeoutError = multiprocessing.TimeoutError

    def __init__(self, backend, **options):
        self.name = backend
        self.options = options

    def pool(self, processes=2, *args, **kwargs):
        return allcores.Pool(processes, *args, backend=self.name, **self.options, **kwargs)

    def executor(self, max_workers=2, **kwargs):
        return allcores.ProcessPoolExecutor(max_workers, backend=self.name, **self.options,
                                            **kwargs)

    def __repr__(self):
        return self.name


# copyreg as it is before distributed is imported (test modules import this one first, and
# import distributed only when a test runs).
_PLAIN_DISPATCH = dict(copyreg.dispatch_table)


@contextlib.contextmanager
def dask_cluster(**config):
    """A real cluster on 127.0.0.1: a scheduler and DASK_WORKERS worker processes (one thread
    each); no dashboard, and the scheduler's HTTP routes on a free port (8787 may be taken).
    Importing distributed makes every exception class picklable by value (it installs tblib's
    reducers in copyreg): undone afterwards, so that later tests see plain pickle."""
    import dask
    from distributed import LocalCluster
    from gil_build import GIL_OFF
    if GIL_OFF:
        # distributed's profiler walks other threads' frames (sys._current_frames), which
        # crashes a free-threaded 3.13 running without the GIL
        config = {"distributed.worker.profile.enabled": False, **config}
    try:
        with dask.config.set(config):
            cluster = LocalCluster(n_workers=DASK_WORKERS, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=":0",
                                   scheduler_kwargs={"dashboard": False})
        try:
            yield cluster
        finally:
            cluster.close()
    finally:
        copyreg.dispatch_table.clear()
        copyreg.dispatch_table.update(_PLAIN_DISPATCH)


def _not_this_python(name):
    """make test runs the Pool API suite once per backend, on one Python each, to stay within
    its time budget (AC_TEST_BACKEND_PYTHONS="thread:3.11,interpreter:3.13,dask:3.11"; unset:
    every backend on every Python). Each backend's own test file still runs everywhere."""
    spec = os.environ.get("AC_TEST_BACKEND_PYTHONS")
    if not spec:
        return None
    wanted = dict(item.split(":") for item in spec.split(",") if ":" in item)
    from budget import PYTHON as here  # "3.13t" on a free-threaded build
    if name in wanted and wanted[name] != here:
        return (f"make test runs the Pool API suite on backend={name!r} on Python "
                f"{wanted[name]} only (AC_TEST_BACKEND_PYTHONS), to keep within its time budget")
    return None


def _helpers_unusable(name):
    if name == "interpreter" and sys.version_info < (3, 13):
        import helpers_tasks
        if "ctypes" in vars(helpers_tasks):
            return ("helpers_tasks.py imports ctypes, which Python 3.12 refuses to load in a "
                    "subinterpreter (3.13 accepts it): its tasks cannot run there")
    return None


@contextlib.contextmanager
def backend_impl(name, uses_helpers_tasks=False):
    """BackendImpl for backend `name` (skips when it is unavailable here)."""
    why = unavailable(name) or (uses_helpers_tasks and _helpers_unusable(name)) or \
        _not_this_python(name)
    if why:
        pytest.skip(why)
    if name != "dask":
        yield BackendImpl(name)
        return
    with dask_cluster() as cluster:
        yield BackendImpl("dask", address=cluster.scheduler_address)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    """Each backend but process. A test module whose tasks all come from backend_tasks.py sets
    USES_HELPERS_TASKS = False, so that 3.12's interpreter workers run it too."""
    uses_helpers = getattr(request.module, "USES_HELPERS_TASKS", True)
    with backend_impl(request.param, uses_helpers_tasks=uses_helpers) as impl:
        yield impl


@pytest.fixture(scope="module", params=["process"] + BACKENDS)
def any_backend(request):
    """Every backend, the default one included."""
    with backend_impl(request.param) as impl:
        yield impl


def _impl_for(request, backend):
    name = request.function.__name__
    reason = SKIPS.get(backend.name, {}).get(name)
    if reason is None and backend.name == "interpreter" and "numpy" in name:
        reason = _NO_NUMPY
    if reason:
        pytest.skip(f"backend={backend.name!r}: {reason}")
    return backend


@pytest.fixture
def impl(request, backend):
    """Overrides conftest's impl: the backend under test."""
    return _impl_for(request, backend)


@pytest.fixture
def allcores_impl(request, backend):
    """Overrides conftest's allcores_impl: the backend under test."""
    return _impl_for(request, backend)
