"""What a process's threads were doing, from their Python stacks: the doctor's stack samples.

A sample takes sys._current_frames() and the kernel's state of each thread (R: on a CPU or
runnable). Only running threads are counted, each as one of:
  pickling / unpickling   inside pickle, copyreg, multiprocessing.reduction, allcores' serializer
  pool                    the pool's own machinery: multiprocessing, concurrent.futures, allcores,
                          queue, threading (sending and receiving tasks, bookkeeping)
  code                    anything else: the program's own code, labelled by its innermost frame
The top Python frame decides: a C call (a sort, a BLAS call) counts as the Python code that made it.
"""
from __future__ import annotations

import os
import sys
import threading
from collections import Counter

_PICKLE_FILES = ("/pickle.py", "/copyreg.py", "/multiprocessing/reduction.py", "/allcores/_serialize.py",
                 "/allcores/_oob.py", "/cloudpickle/")
_POOL_PARTS = ("/multiprocessing/", "/concurrent/futures/", "/allcores/", "/queue.py", "/threading.py",
               "/selectors.py", "/loky/", "/joblib/")
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


def classify(frame) -> tuple[str, str]:
    """(kind, label) of a running thread from its innermost Python frame (the doctor's own
    frames, where a signal made it run on the thread, are skipped)."""
    while frame.f_back is not None and "/allcores/gil/" in frame.f_code.co_filename.replace("\\", "/"):
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
    """Per-thread /proc stat files, opened once and re-read with pread."""

    def __init__(self):
        self.fds: dict[int, int] = {}

    def running(self, tid: int) -> bool | None:
        fd = self.fds.get(tid)
        try:
            if fd is None:
                fd = self.fds[tid] = os.open(f"/proc/self/task/{tid}/stat", os.O_RDONLY)
            data = os.pread(fd, 512, 0)
        except OSError:
            self.drop(tid)
            return None
        return data[data.rfind(b")") + 2:][:1] == b"R"

    def drop(self, tid):
        fd = self.fds.pop(tid, None)
        if fd is not None:
            try:
                os.close(fd)
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
            if t.name in DOCTOR_THREADS or t.native_id is None:
                continue
            f = frames.get(t.ident)
            if f is None:
                continue
            seen.add(t.native_id)
            if not self._files.running(t.native_id):
                continue
            kind, label = classify(f)
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
