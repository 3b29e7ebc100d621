"""What a process's threads were doing, from their Python stacks: the doctor's stack samples.

A sample takes sys._current_frames(), each thread's CPU time (schedstat) and the call it sleeps in
(syscall). Only running threads are counted: on a CPU or runnable, or asleep in a futex in the
program's own code after running since the previous sample (a fifth of that time or more on a
CPU: it handed the GIL to the sampler). Each counts as one of:
  pickling / unpickling   inside pickle, copyreg, multiprocessing.reduction, allcores' serializer
  pool                    the pool's own machinery: multiprocessing, concurrent.futures, allcores,
                          queue, threading (sending and receiving tasks, bookkeeping)
  code                    anything else: the program's own code, labelled by its innermost frame
The top Python frame decides: a C call (a sort, a BLAS call) counts as the Python code that made it.
Why not the kernel's state alone: the sampler needs the GIL, so a thread running Python has just
handed it over and often already sleeps waiting for it back; R alone says mostly who waits for a
CPU at this instant (on a loaded machine, threads just woken in the pool's queues).
A thread stopped at the entry of a function has run nothing of it yet: the CPU it used was its
caller's (the GIL is handed over at a call, right after a long C call such as a sort returns).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter

_PICKLE_FILES = ("/pickle.py", "/copyreg.py", "/multiprocessing/reduction.py", "/allcores/_serialize.py",
                 "/allcores/_oob.py", "/cloudpickle/")
_POOL_PARTS = ("/multiprocessing/", "/concurrent/futures/", "/allcores/", "/queue.py", "/threading.py",
               "/selectors.py", "/loky/", "/joblib/")
#: A thread counts as running in a sample when it was on a CPU this share of the time since the
#: previous one (a thread woken for a moment to hand a task on uses far less).
RAN_SHARE = 0.2
_FUTEX = str({"x86_64": 202, "aarch64": 98}.get(os.uname().machine, 202)).encode()
#: Offsets of the first instruction that runs in a code object (RESUME), by code object.
_ENTRY: dict = {}
_ENTRY_MAX = 4096
#: Thread names the doctor itself runs; never counted.
DOCTOR_THREADS = ("allcores-doctor",)
#: What the kernel calls the doctor's threads (comm): its Python threads name themselves with
#: name_this_thread(), the C sampler names itself.
DOCTOR_COMMS = (b"allcores-doctor", b"allcores-gil")


def name_this_thread(name: str = "allcores-doctor", tid: int | None = None) -> None:
    """Gives a thread of this process (the calling one by default) its name in the kernel's view
    too (/proc/.../comm); done by the starter as soon as the thread exists, so that no poll sees
    it unnamed."""
    try:
        with open(f"/proc/self/task/{tid or threading.get_native_id()}/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


def _at_entry(frame) -> bool:
    code = frame.f_code
    off = _ENTRY.get(code)
    if off is None:
        import dis
        off = next((i.offset for i in dis.get_instructions(code) if i.opname == "RESUME"), -1)
        if len(_ENTRY) >= _ENTRY_MAX:
            _ENTRY.clear()
        _ENTRY[code] = off
    return frame.f_lasti <= off


def classify(frame) -> tuple[str, str]:
    """(kind, label) of a running thread from its innermost Python frame (the doctor's own
    frames, where a signal made it run on the thread, are skipped; a frame just entered stands
    for its caller)."""
    while frame.f_back is not None and "/allcores/gil/" in frame.f_code.co_filename.replace("\\", "/"):
        frame = frame.f_back
    if frame.f_back is not None and _at_entry(frame):
        frame = frame.f_back
    code = frame.f_code
    fn, name = code.co_filename.replace("\\", "/"), code.co_name
    if any(p in fn for p in _PICKLE_FILES):
        if "load" in name:
            return "unpickling", name
        return "pickling", name
    if fn.endswith("/multiprocessing/connection.py") and name == "recv":
        return "unpickling", "multiprocessing recv"
    if any(p in fn for p in _POOL_PARTS) and "/allcores/gil/" not in fn:
        return "pool", name
    return "code", f"{name} ({os.path.basename(fn)}:{frame.f_lineno})"


class _StatFiles:
    """Per-thread /proc schedstat and syscall files, opened once and re-read with pread."""

    def __init__(self):
        self.fds: dict[int, tuple[int, int]] = {}
        self.last: dict[int, tuple[int, int]] = {}   # tid -> (ns on a CPU, monotonic ns) at its last sample

    def running(self, tid: int) -> str | None:
        """"R" when the thread is on a CPU or runnable now; "waited" when it ran RAN_SHARE of the
        time since its last sample and now sleeps in a futex (a lock, or the GIL handed to the
        sampler); "" otherwise; None when it is gone."""
        fds = self.fds.get(tid)
        try:
            if fds is None:
                fds = self.fds[tid] = (os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY),
                                       os.open(f"/proc/self/task/{tid}/syscall", os.O_RDONLY))
            ran = int(os.pread(fds[0], 128, 0).split()[0])
            call = os.pread(fds[1], 64, 0).split()[:1]
        except (OSError, ValueError, IndexError):
            self.drop(tid)
            return None
        now = time.monotonic_ns()
        prev = self.last.get(tid)
        self.last[tid] = (ran, now)
        if call == [b"running"]:
            return "R"
        if prev is not None and call == [_FUTEX] and ran - prev[0] >= RAN_SHARE * max(now - prev[1], 1):
            return "waited"
        return ""

    def drop(self, tid):
        self.last.pop(tid, None)
        fd = self.fds.pop(tid, None)
        for f in fd or ():
            try:
                os.close(f)
            except OSError:
                pass

    def close(self):
        for tid in list(self.fds):
            self.drop(tid)


class StackSampler:
    """Counts what the running Python threads of this process are doing; call sample() now and then."""

    def __init__(self):
        self.samples = 0
        self.kinds: Counter = Counter()           # kind -> running-thread samples
        self.main_kinds: Counter = Counter()      # the same, main thread only
        self.labels: Counter = Counter()          # "code" labels -> samples
        self._files = _StatFiles()

    def sample(self):
        self.samples += 1
        frames = sys._current_frames()
        main = threading.main_thread().ident
        seen = set()
        for t in threading.enumerate():
            # the main thread's id is the process's: a process forked by C code (allcores'
            # workers) keeps the native_id of the thread that forked its parent
            tid = os.getpid() if t.ident == main else t.native_id
            if t.name in DOCTOR_THREADS or tid is None:
                continue
            f = frames.get(t.ident)
            if f is None:
                continue
            seen.add(tid)
            state = self._files.running(tid)
            if not state:
                continue
            kind, label = classify(f)
            # a thread asleep after running is counted where it waits only in the program's own
            # code (the GIL it handed over); asleep in the pool's queues, it ran elsewhere
            if state == "waited" and kind != "code":
                continue
            self.kinds[kind] += 1
            if t.ident == main:
                self.main_kinds[kind] += 1
            if kind == "code":
                self.labels[label] += 1
        for tid in set(self._files.fds) - seen:
            self._files.drop(tid)

    def close(self):
        self._files.close()

    def to_dict(self) -> dict:
        return {"samples": self.samples, "kinds": dict(self.kinds), "main_kinds": dict(self.main_kinds),
                "top_code": self.labels.most_common(5)}
