"""The process tree under the doctor: every process the program starts, read from /proc.

A thread of the doctor's process (named allcores-doctor) polls every POLL_S seconds:
- new processes: the pids in /proc not seen before whose parent is in the tree (fork, spawn,
  forkserver and subprocess children all hang below the program's process, or below a helper
  that does);
- each live process's CPU (utime + stime, and cutime + cstime of the children it has reaped),
  read through a /proc/<pid>/stat descriptor kept open;
- each thread's schedstat, to count the threads that want a CPU (on one or waiting for one);
- the doctor's process's own Python stacks (stacks.StackSampler).
The CPU of the whole program is the sum, over the processes still alive, of their own CPU and
that of the children they reaped: a process that exits and is waited for moves from one term to
the other, so nothing is counted twice or lost. A process whose parent never waits for it, or
that leaves the tree (a daemon that double-forks), is counted until it is last seen.
"""
from __future__ import annotations

import os
import threading
import time

from .child import STACK_S
from .stacks import DOCTOR_COMMS, StackSampler, name_this_thread

#: Time between polls. A poll reads one stat file per process and per thread (about 40 us each
#: on a loaded 2-vCPU VM), so 10 polls a second stay near 0.5% of one CPU for a small pool.
POLL_S = 0.1
#: New processes are looked for every this many polls (listing /proc costs about 0.6 ms with a
#: hundred processes on the machine); one that lives less than that is counted in its parent's
#: CPU (cutime) but not listed.
DISCOVER_EVERY = 2
TICK = os.sysconf("SC_CLK_TCK")
THREAD_NAME = "allcores-doctor"


def _boot_s() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _parse_stat(data: bytes):
    """(comm, state, ppid, own ticks, reaped children's ticks, threads, start ticks) from a stat line."""
    r = data.rfind(b")")
    comm = data[data.find(b"(") + 1:r].decode(errors="replace")
    f = data[r + 2:].split()
    # fields after comm: 0 state, 1 ppid, ..., 11 utime, 12 stime, 13 cutime, 14 cstime,
    # 17 num_threads, 19 starttime
    return comm, f[0][:1].decode(), int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]), \
        int(f[17]), int(f[19])


def _read(path: str, n: int = 4096) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return None


class Proc:
    """One process of the tree as the poller saw it. Times are seconds from the doctor's start."""

    def __init__(self, pid: int, ppid: int, comm: str, start_s: float, cmdline: list[str]):
        self.pid, self.ppid, self.comm = pid, ppid, comm
        self.start_s = start_s
        self.end_s: float | None = None
        self.cmdline = cmdline
        self.own_ticks0 = 0          # ticks at the start (non-zero only for the doctor's process)
        self.own_ticks = 0
        self.child_ticks0 = 0
        self.child_ticks = 0
        self.points: list[tuple[float, int, float]] = []   # (t, own ticks, threads wanting a CPU)
        self.fd: int | None = None
        self.task_fds: dict[int, list] = {}   # tid -> [schedstat fd, last run+wait ns, the doctor's]
        self.runnable_sum = 0.0      # threads wanting a CPU, summed over the polls it was busy in
        self.runnable_polls = 0

    @property
    def cpu_s(self) -> float:
        return (self.own_ticks - self.own_ticks0) / TICK

    def close(self):
        for fd in [self.fd, *(st[0] for st in self.task_fds.values())]:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fd, self.task_fds = None, {}


class TreePoller:
    """Follows the processes below this one; start(), then stop() returns nothing: read .procs."""

    def __init__(self, poll_s: float = POLL_S, stacks: bool = True):
        self.poll_s = poll_s
        self.root = os.getpid()
        self.procs: dict[int, Proc] = {}
        self.ended: set[int] = set()
        self._others: set[int] = set()      # pids seen that are not ours
        self.runnable: list[tuple[float, float, int]] = []  # (t, threads wanting a CPU, busy processes)
        self.stacks = StackSampler() if stacks else None
        self.cpu_s = 0.0                   # the poller's own CPU
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stack_thread: threading.Thread | None = None
        self._stack_cpu_s = 0.0
        self.t0_mono = self.t0_boot = 0.0
        self.wall_s = 0.0
        self._polls = 0

    def start(self) -> "TreePoller":
        self.t0_mono, self.t0_boot = time.monotonic(), _boot_s()
        self._others = {int(p) for p in os.listdir("/proc") if p.isdigit()} - {self.root}
        data = _read(f"/proc/{self.root}/stat")
        comm, _, ppid, own, child, _, _ = _parse_stat(data)
        me = Proc(self.root, ppid, comm, 0.0, self._cmdline(self.root))
        me.own_ticks0 = me.own_ticks = own
        me.child_ticks0 = me.child_ticks = child
        self.procs[self.root] = me
        self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
        self._thread.start()
        name_this_thread(tid=self._thread.native_id)
        if self.stacks:
            # The stacks on their own thread, at their own pace: a poll reads /proc for every
            # process and waits for the GIL at each read while the program's main thread holds
            # it, so stack samples taken between polls would come ever more rarely as the
            # program works harder (3 in a 2.5 s run was seen).
            self._stack_thread = threading.Thread(target=self._stack_loop, name=THREAD_NAME,
                                                  daemon=True)
            self._stack_thread.start()
            name_this_thread(tid=self._stack_thread.native_id)
        return self

    def stop(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(10)
            self._thread = None
            if self._stack_thread is not None:
                self._stack_thread.join(10)
                self._stack_thread = None
                self.cpu_s += self._stack_cpu_s
            self._poll(final=True)
            self.wall_s = time.monotonic() - self.t0_mono
            for p in self.procs.values():
                p.close()
            if self.stacks:
                self.stacks.close()

    # ---- polling ----

    def _loop(self):
        name_this_thread()
        c0 = time.thread_time()
        while not self._stop.wait(self.poll_s):
            try:
                self._poll()
            except Exception:  # a poll must never take the program down; the next one retries
                pass
        self.cpu_s += time.thread_time() - c0

    def _stack_loop(self):
        name_this_thread()
        c0 = time.thread_time()
        while not self._stop.wait(STACK_S):
            try:
                self.stacks.sample()
            except Exception:  # never take the program down
                pass
        self._stack_cpu_s = time.thread_time() - c0

    def _cmdline(self, pid: int) -> list[str]:
        data = _read(f"/proc/{pid}/cmdline", 8192) or b""
        return [a.decode(errors="replace") for a in data.split(b"\0") if a]

    def _discover(self, now: float):
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return
        new = sorted(p for p in pids if p not in self.procs and p not in self._others)
        pending = []
        for pid in new:
            data = _read(f"/proc/{pid}/stat")
            if data is None:
                continue
            st = _parse_stat(data)
            pending.append((pid, st))
        changed = True
        while changed:  # a parent found in the same poll as its child may come after it
            changed = False
            for item in list(pending):
                pid, (comm, _, ppid, own, child, _, start) = item
                if ppid in self.procs:
                    start_s = max(start / TICK - self.t0_boot, 0.0)
                    self.procs[pid] = Proc(pid, ppid, comm, start_s, self._cmdline(pid))
                    pending.remove(item)
                    changed = True
        self._others.update(pid for pid, _ in pending)

    def _poll(self, final: bool = False):
        now = time.monotonic() - self.t0_mono
        self._polls += 1
        if final or self._polls % DISCOVER_EVERY == 1:
            self._discover(now)
        runnable = busy = 0
        for p in self.procs.values():
            if p.pid in self.ended:
                continue
            try:
                if p.fd is None:
                    p.fd = os.open(f"/proc/{p.pid}/stat", os.O_RDONLY)
                data = os.pread(p.fd, 1024, 0)
                comm, state, _, own, child, nthreads, _ = _parse_stat(data)
            except (OSError, ValueError, IndexError):
                # gone from /proc: reaped, so its CPU is now in its reaper's cutime
                if p.end_s is None:
                    p.end_s = now
                self.ended.add(p.pid)
                p.close()
                continue
            if comm != p.comm:  # it exec'd: a new program in the same process
                p.comm, p.cmdline = comm, self._cmdline(p.pid)
            used = bool(p.points) and own - p.points[-1][1] >= 0.5 * TICK * (now - p.points[-1][0])
            p.own_ticks, p.child_ticks = own, child
            if state == "Z":  # exited, not yet waited for: polled on until it is
                p.points.append((now, own, 0))
                if p.end_s is None:
                    p.end_s = now
                continue
            dt = now - p.points[-1][0] if p.points else now - p.start_s
            n = 0.0 if final else self._runnable_threads(p, nthreads, dt)
            p.points.append((now, own, n))
            runnable += n
            if used or n >= 0.5:  # as processes.is_busy
                busy += 1
                p.runnable_sum += n
                p.runnable_polls += 1
        if not final:
            self.runnable.append((now, runnable, busy))

    def _runnable_threads(self, p: Proc, nthreads: int, dt: float) -> float:
        """How many of the process's threads wanted a CPU over the last poll interval, on
        average: the time each spent on a CPU or runnable waiting for one (schedstat), over the
        interval. A CPU-bound thread counts 1.0 however loaded the machine is (it waits for
        what it does not get); a thread woken for a moment counts more on a loaded machine,
        where it waits longer. The doctor's own threads are left out."""
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{p.pid}/task")]
        except OSError:
            return 0.0
        me = threading.get_native_id()
        want = 0
        for tid in tids:
            if tid == me:  # the poller itself
                continue
            st = p.task_fds.get(tid)
            try:
                if st is None:
                    fd = os.open(f"/proc/{p.pid}/task/{tid}/schedstat", os.O_RDONLY)
                    st = p.task_fds[tid] = [fd, None, False]
                f = os.pread(st[0], 128, 0).split()
                total = int(f[0]) + int(f[1])
            except (OSError, ValueError, IndexError):
                continue
            if st[1] is not None and not st[2]:
                d = total - st[1]
                # a thread that wanted a CPU a good part of the interval: is it the doctor's own?
                # (they name themselves as they start, so the name is checked again until then)
                if d >= 0.2e9 * dt:
                    comm = _read(f"/proc/{p.pid}/task/{tid}/comm", 64) or b""
                    st[2] = comm.strip() in DOCTOR_COMMS
                if not st[2]:
                    want += d
            st[1] = total
        for tid in set(p.task_fds) - set(tids):
            try:
                os.close(p.task_fds.pop(tid)[0])
            except OSError:
                pass
        return want / 1e9 / dt if dt > 0 else 0.0

    # ---- results ----

    def program_cpu_s(self) -> float:
        """CPU of the whole program since the start: the own CPU of every process not yet reaped,
        and the CPU of the children each of them reaped."""
        total = 0
        for p in self.procs.values():
            if p.pid not in self.ended:
                total += p.own_ticks - p.own_ticks0 + p.child_ticks - p.child_ticks0
        return max(total, 0) / TICK

    def busy_series(self, p: Proc) -> list[tuple[float, float, float, int]]:
        """(start_s, end_s, cores, runnable threads at end_s) for each poll interval of a process.
        On a loaded machine a busy process may get less than a core: its runnable threads say
        that it wanted one."""
        out = []
        prev = (p.start_s, 0) if p.pid != self.root else (0.0, p.own_ticks0)
        for t, ticks, n in p.points:
            if t > prev[0]:
                out.append((prev[0], t, (ticks - prev[1]) / TICK / (t - prev[0]), n))
            prev = (t, ticks)
        return out
