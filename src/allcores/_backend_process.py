"""backend="process" (the default): workers are processes forked from a template process.

- The template process is forked once, before the pool starts any thread; every worker is forked
  from it (single-threaded, so no inherited locks). It reaps workers and reports exits in the
  region; its workers die with it (PR_SET_PDEATHSIG), and it dies with the parent (pidfd).
- When the template dies (killed, the OOM killer), its workers die with it; a new one forks them
  again, unless templates keep dying.

ProcessHost is also the contract of a worker host: what _engine.Engine asks of the object that
starts its workers (start, wake, stop, exit_status, restart, join, close, describe,
interrupt_running). It uses only the engine's public members: region, nworkers, stopped,
draining, main_names, break_pool, reap_workers, host_restarting.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import weakref

from . import _core
from . import _serialize as ser
from . import _worker as W
from ._engine import Engine
from ._protocol import WorkerState, worker_slot

# Checks run before forking a template: each returns why this process must not fork now, or
# None. Another backend whose presence makes a fork unsafe adds one (see _backend_interpreter).
fork_guards: list = []


class ProcessHost:
    """Starts an engine's workers as processes forked from a template process."""

    def __init__(self, engine):
        # Weakly: the engine holds its host, and a cycle would keep the shared region mapped
        # until the garbage collector runs, not until the last pool reference goes.
        self.engine = weakref.proxy(engine)
        self._efd = -1
        self._template_pid = 0

    def start(self, initializer, initargs, maxtasks, log_init_errors):
        """Starts the host; it then starts a worker for every slot the region asks for."""
        for guard in fork_guards:
            refusal = guard()
            if refusal:
                raise RuntimeError(refusal)
        self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._template_args = (initializer, initargs, maxtasks, log_init_errors)
        self._template_deaths = []
        self._fork_template()

    def _fork_template(self):
        # What the template's __main__ will hold (taken again for each template): those
        # functions travel by name.
        self.engine.main_names = ser.main_functions()
        pid = _core.fork_template()
        if pid == 0:
            _template_main(self.engine.region, self._efd, *self._template_args)
        self._template_pid = pid

    @property
    def pid(self):
        """The template process's pid (a new one after a restart)."""
        return self._template_pid

    def describe(self):
        """The host as error messages name it."""
        return f"template process {self._template_pid}"

    def wake(self):
        """Tells the host to look at spawn/kill requests and the shutdown word."""
        efd = self._efd
        if efd >= 0:
            try:
                _core.notify(efd)
            except OSError:
                pass

    def stop(self):
        """Stops every worker now (the pool broke or is terminated)."""
        try:
            self.engine.region.shutdown(2)
            self.wake()
        except (OSError, ValueError):
            pass

    def interrupt_running(self):
        """Ctrl-C: interrupt running tasks whose workers cannot be killed (none here)."""

    def exit_status(self):
        """The host's wait status once it has exited (-1: unknown); None while it runs."""
        try:
            pid, status = os.waitpid(self._template_pid, os.WNOHANG)
        except ChildProcessError:
            return -1
        if pid == 0:
            return None
        return status

    def restart(self):
        """The template died (killed, the OOM killer) and its workers with it. As when a worker
        dies: only the tasks they ran fail (WorkerLost), a task taken but not started is given
        back, and a new template forks every worker again. Returns False (the pool breaks)
        when templates keep dying: more than 3 in 10 seconds."""
        engine = self.engine
        now = time.monotonic()
        self._template_deaths = [t for t in self._template_deaths if now - t < 10.0] + [now]
        if len(self._template_deaths) > 3 or engine.stopped:
            return False
        region = engine.region
        orphans = []
        for k in range(engine.nworkers):
            slot = worker_slot(region, k)
            if slot.state in (WorkerState.STARTING, WorkerState.IDLE) and slot.pid > 0:
                orphans.append((k, slot.pid))
        # They were sent SIGKILL as the template died; nothing is repaired before they are gone.
        deadline = now + 5.0
        for _k, pid in orphans:
            while _process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.001)
        for k, _pid in orphans:
            region.orphaned(k, signal.SIGKILL)
        engine.reap_workers()
        if not engine.host_restarting():
            return False
        self._fork_template()
        return True

    def join(self):
        """Waits until the host has exited (after stop(), or once the ring drained)."""
        try:
            os.waitpid(self._template_pid, 0)
        except ChildProcessError:
            pass

    def close(self):
        """Releases what the host holds, once it has exited."""
        efd, self._efd = self._efd, -1
        try:
            os.close(efd)
        except OSError:
            pass


class ProcessEngine(Engine):
    """The shared-region engine with worker processes."""

    host_type = ProcessHost
    worker_processes = True


def _template_main(region, efd, initializer, initargs, maxtasks, log_init_errors=False):
    """Runs in the template process; never returns."""
    code = 70
    try:
        import gc
        gc.freeze()  # objects inherited from the parent are never traversed, so never copied
        _core.isolate_fds([efd] + _std_stream_fds())
        from . import _inherited
        _inherited.forget_parent_state()
        k = region.template_serve(efd)
        if k is None:
            code = 0
        else:
            W.name_this_worker(k)
            code = W.main(region, k, initializer, initargs, maxtasks, log_init_errors)
    except BaseException:  # noqa: B902
        try:
            import traceback
            traceback.print_exc()
        except BaseException:  # noqa: B902
            pass
    finally:
        os._exit(code)


def _std_stream_fds():
    """The descriptors behind sys.stdin/stdout/stderr (maybe redirected, as pytest's capture
    does): what tasks print must still reach the program's output."""
    fds = []
    for stream in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__,
                   sys.__stderr__):
        try:
            fds.append(stream.fileno())
        except Exception:  # closed, None, or no descriptor behind it
            pass
    return fds


def _process_alive(pid):
    """False once pid has exited (a zombie counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the number went to another user's process: ours is gone
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False

