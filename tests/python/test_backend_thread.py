"""backend="thread": whether its workers run Python in parallel (a free-threaded build whose GIL
is off) or take turns holding the GIL, and what follows from it: the default worker count and
`allcores info`. sys._is_gil_enabled is stood in for, so that every Python runs every case; a
free-threaded build (3.13t) also runs the real thing."""
import os
import subprocess
import sys
import sysconfig

import pytest

import allcores
from allcores import _backends, cli

FREE_THREADED_BUILD = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


@pytest.fixture
def gil(monkeypatch):
    """gil(True/False): this process's GIL as sys._is_gil_enabled() reports it; gil(None): a
    Python without sys._is_gil_enabled (before 3.13)."""
    def set_gil(enabled):
        if enabled is None:
            monkeypatch.delattr(sys, "_is_gil_enabled", raising=False)
        else:
            monkeypatch.setattr(sys, "_is_gil_enabled", lambda: enabled, raising=False)
    return set_gil


@pytest.mark.parametrize("enabled, parallel", [(None, False), (True, False), (False, True)])
def test_python_runs_in_parallel_only_without_a_gil(gil, enabled, parallel):
    gil(enabled)
    assert _backends.python_in_parallel() is parallel


def test_the_gil_is_asked_each_time(gil):
    """A free-threaded build turns its GIL back on when it imports an extension that does not
    declare it can run without one: the answer follows."""
    gil(False)
    assert _backends.python_in_parallel()
    gil(True)
    assert not _backends.python_in_parallel()


@pytest.mark.parametrize("cores, enabled, workers", [
    (8, True, 12), (8, None, 12), (40, True, 32), (8, False, 8), (40, False, 40), (1, True, 5),
])
def test_default_worker_count(gil, monkeypatch, cores, enabled, workers):
    """Under a GIL as ThreadPoolExecutor (threads that wait): min(32, cores + 4); without one,
    one per core, as processes. Cores are those this process may use, as a process pool counts
    them (test_cpus.py checks that count under taskset)."""
    from allcores import _cpus
    gil(enabled)
    monkeypatch.setattr(_cpus, "default_workers", lambda: cores)
    assert _backends.default_thread_workers() == workers


@pytest.mark.parametrize("enabled", [True, False])
def test_a_thread_pool_says_whether_its_workers_run_in_parallel(gil, enabled):
    gil(enabled)
    with allcores.Pool(backend="thread") as pool:
        assert pool._engine.parallel is (not enabled)
        assert pool.processes == _backends.default_thread_workers()
        assert pool.map(abs, [-1, -2]) == [1, 2]
    with allcores.Pool(3, backend="thread") as pool:
        assert pool.processes == 3


def test_interpreter_and_dask_workers_run_in_parallel():
    from allcores._backend_dask import DaskEngine
    from allcores._backend_interpreter import InterpreterEngine
    assert InterpreterEngine.parallel is True and DaskEngine.parallel is True


@pytest.mark.parametrize("enabled, says", [(True, "take turns holding the GIL"),
                                           (False, "run Python in parallel")])
def test_allcores_info_says_how_thread_workers_run(gil, capsys, enabled, says):
    gil(enabled)
    assert cli.info() == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("threads")]
    assert line == [f"threads  backend='thread' workers {says} "
                    f"({_backends.default_thread_workers()} by default)"]


@pytest.mark.skipif(not FREE_THREADED_BUILD, reason="needs a free-threaded build (3.13t)")
def test_importing_allcores_keeps_the_gil_off():
    """Our extensions declare they run without the GIL (src/ext/module.c, src/sampler): a
    free-threaded build keeps it off when it imports them (a RuntimeWarning, made an error here,
    would say it turned it on), and thread workers then run Python in parallel."""
    code = ("import sys, allcores, allcores._core, allcores._gil, allcores.pool; "
            "from allcores._backends import python_in_parallel; "
            "print(sys._is_gil_enabled(), python_in_parallel())")
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "PYTHON_GIL"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
