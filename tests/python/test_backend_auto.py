"""backend="auto": threads where they run Python in parallel (a free-threaded build whose GIL is
off), processes elsewhere and whenever a task must be stoppable; `allcores info` says which and
why. sys._is_gil_enabled and the build flag are stood in for, so every Python runs every case."""
import copyreg
import sys

import pytest

import allcores
from allcores import _backends, cli
from allcores._backend_thread import ThreadEngine


@pytest.fixture
def python(monkeypatch):
    """python(free_threaded_build, gil_enabled): this Python as backend="auto" sees it."""
    def set_python(build, enabled):
        monkeypatch.setattr(_backends, "free_threaded_build", lambda: build)
        monkeypatch.setattr(sys, "_is_gil_enabled", lambda: enabled, raising=False)
    return set_python


@pytest.mark.parametrize("build, enabled, picked, why", [
    (True, False, "thread", "GIL off"),
    (True, True, "process", "its GIL is on"),
    (False, True, "process", "has a GIL"),
])
def test_auto_picks_threads_only_where_they_run_in_parallel(python, build, enabled, picked, why):
    python(build, enabled)
    got, reason = _backends.choose_auto()
    assert got == picked and why in reason


def test_auto_picks_processes_when_a_task_must_be_stoppable(python):
    python(True, False)
    assert _backends.choose_auto(task_timeout=5)[0] == "process"


@pytest.mark.parametrize("build, enabled, engine_is_thread", [(True, False, True),
                                                               (False, True, False)])
def test_a_pool_and_an_executor_on_auto_run_on_the_backend_picked(python, build, enabled,
                                                                  engine_is_thread):
    python(build, enabled)
    with allcores.Pool(2, backend="auto") as pool:
        assert isinstance(pool._engine, ThreadEngine) is engine_is_thread
        assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]
    with allcores.ProcessPoolExecutor(2, backend="auto") as ex:
        assert isinstance(ex._engine, ThreadEngine) is engine_is_thread
        assert ex.submit(abs, -4).result(timeout=60) == 4


def test_auto_with_a_task_timeout_is_a_process_pool_that_stops_tasks(python):
    python(True, False)
    with allcores.Pool(1, backend="auto", task_timeout=30) as pool:
        assert not isinstance(pool._engine, ThreadEngine)
        assert pool.apply(abs, (-5,)) == 5


def test_auto_takes_no_backend_options():
    with pytest.raises(TypeError, match="auto"):
        allcores.Pool(1, backend="auto", address="tcp://nowhere:1")


@pytest.mark.parametrize("build, enabled, says", [
    (True, False, "backend='auto' picks 'thread': free-threaded build with the GIL off"),
    (False, True, "backend='auto' picks 'process': this Python has a GIL"),
])
def test_allcores_info_says_what_auto_picks_and_why(python, capsys, build, enabled, says):
    python(build, enabled)
    plain = dict(copyreg.dispatch_table)
    try:
        assert cli.info() == 0
    finally:
        # info imports dask.distributed where installed, which makes every exception class
        # picklable by value (tblib's reducers): later tests expect plain pickle
        copyreg.dispatch_table.clear()
        copyreg.dispatch_table.update(plain)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("auto")]
    assert len(lines) == 1 and says in lines[0]
