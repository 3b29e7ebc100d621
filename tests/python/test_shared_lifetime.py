"""When shared objects are freed: no file descriptor or mapping growth over create/destroy cycles,
nothing in /dev/shm, doors kept open only for references in flight, and a clear error when no
process that could open a reference is left."""
import gc
import os
import pickle

import pytest

import allcores
from allcores import _core

np = pytest.importorskip("numpy")

pytestmark = [
    pytest.mark.timeout(120),
    # These tests fork on purpose; another test's pool may have left threads running, about
    # which Python 3.12+ warns at every fork.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def _fds():
    return len(os.listdir("/proc/self/fd"))


def _maps():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def _one_of_each():
    objs = [allcores.Counter(), allcores.Value("i", 1), allcores.Array("d", 10), allcores.Lock(),
            allcores.RLock(), allcores.Semaphore(), allcores.BoundedSemaphore(), allcores.Event(),
            allcores.Queue(), allcores.SharedBuffer(100), allcores.shared_array((2, 2))]
    objs[-1][:] = 1
    objs[-3].put("x")
    with objs[3]:
        pass
    return objs


def test_a_thousand_create_destroy_cycles_leave_no_fd_or_mapping():
    for _ in range(20):  # warm up
        pickle.loads(pickle.dumps(_one_of_each()))
    gc.collect()
    fds0, maps0, lingering0 = _fds(), _maps(), _core.shared_sweep()
    for _ in range(1000):
        objs = _one_of_each()
        pickle.loads(pickle.dumps(objs))  # round trips through a reference too
        del objs
    gc.collect()
    assert _fds() <= fds0 and _maps() <= maps0
    assert _core.shared_sweep() <= lingering0


def test_nothing_appears_in_dev_shm():
    before = set(os.listdir("/dev/shm"))
    objs = _one_of_each()
    pid = os.fork()
    if pid == 0:
        pickle.loads(pickle.dumps(objs))
        os._exit(0)
    os.waitpid(pid, 0)
    assert set(os.listdir("/dev/shm")) == before
    del objs


def test_a_dropped_object_keeps_its_door_open_until_its_reference_arrives():
    fds0, lingering0 = _fds(), _core.shared_sweep()
    c = allcores.Counter(5)
    blob = pickle.dumps(c)
    assert c._segment._pins == 1
    del c
    gc.collect()
    assert _fds() == fds0 + 1          # kept for the reference in flight
    assert _core.shared_sweep() == lingering0 + 1
    c2 = pickle.loads(blob)            # taken back from the lingering list, pin consumed
    assert c2.value == 5 and c2._segment._pins == 0
    del c2
    gc.collect()
    assert _fds() == fds0 and _core.shared_sweep() == lingering0


def test_a_reference_opened_by_another_process_releases_the_senders_door():
    c = allcores.Counter()
    blob = pickle.dumps(c)
    pid = os.fork()
    if pid == 0:
        c2 = pickle.loads(blob)
        c2 += 1
        os._exit(0)
    os.waitpid(pid, 0)
    assert c.value == 1 and c._segment._pins == 0


def test_unpickling_twice_never_drives_the_pin_count_negative():
    c = allcores.Counter()
    blob = pickle.dumps(c)
    pickle.loads(blob)
    pickle.loads(blob)
    assert c._segment._pins == 0


def test_memory_is_freed_when_the_last_process_drops_it():
    """The segment of a dropped object is unmapped here; a child that still holds its copy keeps
    using it, and the parent's mapping count returns to where it was."""
    maps0 = _maps()
    a = allcores.shared_array(1 << 20)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # the parent has dropped its array by now
        a[:] = 3.0
        os._exit(0 if a.sum() == 3.0 * (1 << 20) else 1)
    os.close(r)
    del a
    gc.collect()
    assert _maps() <= maps0
    os.write(w, b"x")
    os.close(w)
    assert os.waitpid(pid, 0)[1] == 0


def test_a_reference_whose_processes_are_all_gone_raises_file_not_found():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        c = allcores.Counter(1)
        os.write(w, pickle.dumps(c))
        os._exit(0)  # the creator (and sender) exits: no door is left
    os.close(w)
    blob = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    with pytest.raises(FileNotFoundError, match="shared object is gone"):
        pickle.loads(blob)


def test_a_reference_outlives_its_creator_through_another_holder():
    """The creator exits; the process that sent the reference still has it open."""
    r, w = os.pipe()
    r2, w2 = os.pipe()
    creator = os.fork()
    if creator == 0:
        os.close(r)
        os.close(w2)
        c = allcores.Counter(41)
        os.write(w, pickle.dumps(c))
        os.read(r2, 1)  # lives until the parent has opened it
        os._exit(0)
    os.close(w)
    os.close(r2)
    c = pickle.loads(os.read(r, 4096))
    os.write(w2, b"x")
    os.close(r)
    os.close(w2)
    os.waitpid(creator, 0)
    blob = pickle.dumps(c)              # sent on by this process
    pid = os.fork()
    if pid == 0:
        c2 = pickle.loads(blob)
        c2 += 1
        os._exit(0)
    os.waitpid(pid, 0)
    assert c.value == 42
