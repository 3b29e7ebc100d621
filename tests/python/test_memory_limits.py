"""Pools under an address space limit (RLIMIT_AS: ulimit -v, schedulers that cap virtual memory):
the shared arena is mapped as payloads need it and may grow to a share of the room left instead of
half the RAM, arena_size= and ALLCORES_ARENA_SIZE choose that size, a size that does not fit fails
with a MemoryError saying what to set, and a payload that no longer fits fails its task alone."""
import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

import allcores
from allcores import _arena_size
from allcores import _engine

LIMIT_MIB = 1024  # far below the default arena on any machine with 4 GiB of RAM or more

# A free-threaded CPython reserves address space of its own (mimalloc's arenas): under a 1 GiB
# RLIMIT_AS it cannot even load its extension modules, with or without allcores.
pytestmark = pytest.mark.skipif(bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
                                reason="a free-threaded CPython does not start under a 1 GiB "
                                       "address space limit (its allocator reserves more)")


def _run_limited(body, limit_mib=LIMIT_MIB, env=None):
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({limit_mib} << 20, {limit_mib} << 20))
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_pool_works_under_an_address_space_limit():
    if _engine.ARENA_BYTES < LIMIT_MIB << 20:
        pytest.skip("this machine's default arena fits the limit anyway")
    out = _run_limited("""
        import allcores, concurrent.futures
        with allcores.Pool(2) as pool:
            print(pool.map(abs, range(-3, 0)), len(pool.worker_pids()))
            print(len(pool.apply(bytes, (8 << 20,))))   # a payload through the arena
        with allcores.ProcessPoolExecutor(2) as ex:
            print(list(ex.map(abs, [-1, -2])))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["[3, 2, 1] 2", str(8 << 20), "[1, 2]"]


def test_an_arena_too_big_for_the_limit_says_what_to_set():
    out = _run_limited("""
        import allcores
        try:
            allcores.Pool(1, arena_size="8G")
        except MemoryError as exc:
            print(exc)
    """)
    assert out.returncode == 0, out.stderr
    msg = out.stdout
    assert "8589934592 bytes" in msg and "arena_size=" in msg and "ALLCORES_ARENA_SIZE" in msg
    assert "RLIMIT_AS" in msg and str(LIMIT_MIB << 20) in msg


def test_the_environment_variable_sets_the_arena():
    out = _run_limited("""
        import allcores
        try:
            allcores.Pool(1)
        except MemoryError as exc:
            print(exc)
    """, env={"ALLCORES_ARENA_SIZE": "8G"})
    assert "as asked by ALLCORES_ARENA_SIZE" in out.stdout, out.stderr
    out = _run_limited("""
        import allcores
        with allcores.Pool(1) as pool:
            print(pool._engine.max_payload < (32 << 20), pool.apply(abs, (-4,)))
    """, env={"ALLCORES_ARENA_SIZE": "32M"})
    assert out.stdout.split() == ["True", "4"], out.stderr


def test_arena_size_argument():
    with allcores.Pool(1, arena_size="16M") as pool:
        assert pool._engine.max_payload < 16 << 20
        with pytest.raises(MemoryError, match="shared region"):
            pool.apply(len, (b"x" * (20 << 20),))
        assert pool.apply(len, (b"x" * (1 << 20),)) == 1 << 20
    with allcores.ProcessPoolExecutor(1, arena_size=16 << 20) as ex:
        assert ex._engine.max_payload < 16 << 20
        assert ex.submit(abs, -2).result(timeout=60) == 2


@pytest.mark.parametrize("backend", ["thread", "auto"])
def test_arena_size_argument_on_other_shared_region_backends(backend):
    # the thread backend's tasks pass through an arena too, and it takes the same argument
    with allcores.Pool(1, backend=backend, arena_size="16M") as pool:
        assert pool._engine.max_payload < 16 << 20
        with pytest.raises(MemoryError, match="shared region"):
            pool.apply(len, (b"x" * (20 << 20),))
        assert pool.apply(len, (b"x" * (1 << 20),)) == 1 << 20
    with allcores.ProcessPoolExecutor(1, backend=backend, arena_size="16M") as ex:
        assert ex.submit(abs, -2).result(timeout=60) == 2


@pytest.mark.parametrize("value, expected", [
    (1 << 20, 1 << 20), ("1M", 1 << 20), ("256m", 256 << 20), ("2G", 2 << 30),
    ("3GiB", 3 << 30), ("4096k", 4 << 20), ("1T", 1 << 40), (" 2097152 ", 2 << 20),
])
def test_sizes(value, expected):
    assert _arena_size.parse_size(value) == expected


@pytest.mark.parametrize("value, exc", [
    ("lots", ValueError), ("1.5G", ValueError), (1000, ValueError), ("10K", ValueError),
    (True, TypeError), (2.0, TypeError),
])
def test_bad_sizes(value, exc):
    with pytest.raises(exc, match="arena_size"):
        allcores.Pool(1, arena_size=value)


def test_the_arena_takes_a_share_of_the_room_left(monkeypatch):
    monkeypatch.delenv("ALLCORES_ARENA_SIZE", raising=False)
    monkeypatch.setattr(_arena_size, "address_space_limit", lambda: 3 << 30)
    monkeypatch.setattr(_arena_size, "address_space_used", lambda: 1 << 30)
    assert _arena_size.choose(None, 64 << 30) == ((2 << 30) // 4, "RLIMIT_AS")
    assert _arena_size.choose(None, 64 << 20) == (64 << 20, "default")  # the default fits
    assert _arena_size.choose("1G", 64 << 20) == (1 << 30, "arena_size=")
    monkeypatch.setattr(_arena_size, "address_space_limit", lambda: None)
    assert _arena_size.choose(None, 64 << 30) == (64 << 30, "default")


def _committed_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Committed_AS:"):
                return int(line.split()[1]) << 10
    pytest.skip("/proc/meminfo has no Committed_AS")


def test_the_arena_commits_no_memory():
    # Under vm.overcommit_memory=2 the kernel refuses whatever it would have to commit. The
    # arena is a memfd, whose pages are counted only as they are touched: a pool whose three
    # processes map 8 GiB each commits next to nothing (machine-wide figure: other programs
    # may move it, hence the wide margin).
    before = _committed_bytes()
    with allcores.Pool(2, arena_size="8G") as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
        during = _committed_bytes()
    assert during - before < 2 << 30, (before, during)


def _vsz(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def test_a_pool_maps_its_arena_as_payloads_need_it():
    # An 8 GiB arena costs its processes tens of MiB of address space until payloads need more.
    before = _vsz(os.getpid())
    with allcores.Pool(2, arena_size="8G") as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
        pids = pool.worker_pids()
        assert len(pids) == 2
        assert _vsz(os.getpid()) - before < 1 << 30
        assert all(_vsz(pid) - before < 1 << 30 for pid in pids)   # forked from this process
        # a payload past the first segment: both sides map the segment that holds it
        data = bytes(range(256)) * (160 << 12)   # 160 MiB
        assert pool.apply(len, (data,)) == len(data)
        assert pool.apply(bytes.__len__, (data,)) == len(data)


def test_the_program_keeps_its_address_space_under_a_limit():
    # Under RLIMIT_AS the arena is mapped as payloads need it, so the program's own memory still
    # fits beside a pool whose arena could grow to most of the limit.
    out = _run_limited("""
        import allcores
        with allcores.Pool(1, arena_size="600M") as pool:
            big = bytearray(500 << 20)
            print(len(big))
            del big
            print(pool.apply(len, (b"x" * (100 << 20),)))
            print(pool.apply(abs, (-3,)))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(500 << 20), str(100 << 20), "3"]


def test_a_worker_that_cannot_map_a_payload_fails_that_task_alone():
    # The worker's own address space is nearly full: it cannot map the segment holding a big
    # argument. That task fails with MemoryError saying what to set; the pool goes on.
    out = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import resource, allcores
        def tight():
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * 4096
            resource.setrlimit(resource.RLIMIT_AS, (used + (8 << 20), resource.RLIM_INFINITY))
        if __name__ == "__main__":
            with allcores.Pool(1, initializer=tight) as pool:
                try:
                    pool.apply(len, (b"x" * (40 << 20),))
                except MemoryError as exc:
                    print("MemoryError:", exc)
                print(pool.apply(abs, (-5,)), pool.apply(len, (b"y" * (1 << 20),)))
                print(pool.map(len, [b"z" * (256 << 10)] * 8))
    """)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second, third = out.stdout.strip().split("\n")
    assert first.startswith("MemoryError: worker ") and "could not map" in first
    assert "arena_size=" in first and "ALLCORES_ARENA_SIZE" in first and "replaced" in first
    assert second == f"5 {1 << 20}"
    assert third == str([256 << 10] * 8)


def test_a_result_this_process_cannot_map_fails_that_task_alone():
    # The parent's own address space is nearly full: it cannot map the segment holding a big
    # result. That task fails with MemoryError; the block is freed all the same.
    out = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import resource, allcores
        def vsz():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[0]) * 4096
        if __name__ == "__main__":
            with allcores.Pool(1) as pool:
                pool.apply(abs, (1,))
                resource.setrlimit(resource.RLIMIT_AS, (vsz() + (24 << 20), resource.RLIM_INFINITY))
                try:
                    pool.apply(bytes, (40 << 20,))
                except MemoryError as exc:
                    print("MemoryError:", exc)
                print(pool.apply(abs, (-5,)), len(pool.apply(bytes, (1 << 20,))))
                print(pool._engine._region.stats()["arena_bytes_in_use"])
    """)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second, third = out.stdout.strip().split("\n")
    assert first.startswith("MemoryError: this process could not map") and "result of" in first
    assert second == f"5 {1 << 20}"
    assert third == "0"
