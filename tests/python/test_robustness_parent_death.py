"""Parent death: when the program using a pool dies, even by SIGKILL in the middle of a map, every
worker exits and nothing is left in /dev/shm.
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from helpers_tasks import process_gone, wait_until

pytestmark = pytest.mark.timeout(60)

_SCRIPT = textwrap.dedent('''
    import functools, os, sys, time
    import allcores

    def sleeper(directory, x):
        open(os.path.join(directory, str(os.getpid())), "w").close()
        time.sleep(60)
        return x

    if __name__ == "__main__":
        directory, api = sys.argv[1], sys.argv[2]
        task = functools.partial(sleeper, directory)
        if api == "pool":
            with allcores.Pool(2) as pool:
                pool.map(task, range(8), 1)
        elif api == "executor":
            with allcores.ProcessPoolExecutor(2) as ex:
                list(ex.map(task, range(8)))
        else:
            allcores.map(task, range(8), 1)
''')


def _shm():
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


@pytest.mark.parametrize("api", ["pool", "executor", "default"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_exit_when_the_parent_dies(allcores_impl, tmp_path, api, sig):
    running = tmp_path / "running"
    running.mkdir()
    script = tmp_path / "prog.py"
    script.write_text(_SCRIPT)
    shm_before = _shm()
    proc = subprocess.Popen([sys.executable, str(script), str(running), api], cwd=tmp_path,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until(lambda: len(os.listdir(running)) >= 2, what="the program's tasks to start")
        workers = [int(n) for n in os.listdir(running)]
        proc.send_signal(sig)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    for pid in workers:
        wait_until(lambda: process_gone(pid, zombie_ok=True), limit=5,
                   what=f"the exit of worker {pid} after its parent's death")
    leaked = {n for n in _shm() - shm_before if "allcores" in n or n.startswith(("psm_", "mp-"))}
    assert not leaked
