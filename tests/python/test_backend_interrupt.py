"""One real Ctrl-C (SIGINT) on the backends whose workers cannot be killed: thread and dask, and
interpreter (whose running Python code is interrupted). As with processes
(test_robustness_interrupt.py, same bound): the waiting caller gets KeyboardInterrupt within
0.5 s and queued tasks are cancelled. Running tasks finish there (a thread, or a task on a
cluster worker, cannot be stopped), and the pool then serves again at full strength."""
import functools
import os
import time

import pytest

from backend_impls import backend  # noqa: F401 - fixture
from backend_tasks import meet_token, square, started_then_nap
from test_robustness_interrupt import BOUND_S, TOLERANCE_S, _interrupt

pytestmark = pytest.mark.timeout(60)

NAP_S = 1.0  # how long each task runs: what a running task makes the pool wait after Ctrl-C
N = 6  # tasks per call, for 2 workers: 4 are queued when Ctrl-C comes
USES_HELPERS_TASKS = False  # its tasks come from backend_tasks.py (see backend_impls)


@pytest.fixture
def pool(backend):
    p = backend.pool(2)
    yield p
    p.terminate()
    p.join()


def _calls(pool, task):
    """What a caller may be waiting in when Ctrl-C comes, by name."""
    return {
        "map": lambda: pool.map(task, range(N), 1),
        "imap": lambda: list(pool.imap(task, range(N), 1)),
        "apply": lambda: pool.apply(task, (0,)),
        "async get": lambda: pool.map_async(task, range(N), 1).get(),
        "future": lambda: [f.result() for f in [pool.submit(task, i) for i in range(N)]],
    }


@pytest.mark.parametrize("call", ["map", "imap", "apply", "async get", "future"])
def test_one_ctrl_c_interrupts_the_caller_and_cancels_the_queue(pool, tmp_path, call):
    running = tmp_path / "running"
    running.mkdir()
    task = functools.partial(started_then_nap, str(running), secs=NAP_S)
    started = 1 if call == "apply" else 2
    delay = _interrupt(_calls(pool, task)[call], str(running), started)
    assert delay < BOUND_S + TOLERANCE_S
    # The pool serves again with both workers, once the running tasks end by themselves.
    meet = tmp_path / "meet"
    meet.mkdir()
    assert len(set(pool.map(functools.partial(meet_token, str(meet), 2), range(2), 1))) == 2
    assert pool.map(square, range(10)) == [x * x for x in range(10)]
    # The queued tasks never ran: only those running when Ctrl-C came did.
    time.sleep(NAP_S)
    assert len(os.listdir(running)) == started, os.listdir(running)
