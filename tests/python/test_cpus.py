"""The default worker count is the CPUs this process may use: its affinity mask and its cgroup's
CPU quota, not the machine's CPU count; `allcores info` shows the figure and where it came from."""
import os
import shutil
import subprocess
import sys

import pytest

from allcores import _cpus


@pytest.mark.parametrize("text, cpus", [
    ("max 100000\n", None),
    ("max\n", None),
    ("200000 100000\n", 2.0),
    ("150000 100000\n", 1.5),
    ("50000 100000\n", 0.5),
    ("100000\n", 1.0),          # the period defaults to 100000
    ("", None),
    ("garbage here\n", None),
    ("-1 100000\n", None),
])
def test_cpu_max_parser(text, cpus):
    assert _cpus.parse_cpu_max(text) == cpus


@pytest.mark.parametrize("quota, period, cpus", [
    ("-1\n", "100000\n", None), ("300000\n", "100000\n", 3.0), ("x", "100000", None),
])
def test_cfs_quota_parser(quota, period, cpus):
    assert _cpus.parse_cfs(quota, period) == cpus


def _tree(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_the_tightest_quota_on_the_path_counts(tmp_path, monkeypatch):
    _tree(tmp_path, {"cpu.max": "max 100000\n",
                     "a/cpu.max": "150000 100000\n",
                     "a/b/cpu.max": "400000 100000\n"})
    monkeypatch.setattr(_cpus, "_own_cgroup_v2", lambda root: str(tmp_path / "a" / "b"))
    limit, path = _cpus.cgroup_cpu_limit(str(tmp_path))
    assert limit == 1.5 and path == str(tmp_path / "a" / "cpu.max")


def test_no_quota_anywhere(tmp_path, monkeypatch):
    _tree(tmp_path, {"a/cpu.max": "max 100000\n"})
    monkeypatch.setattr(_cpus, "_own_cgroup_v2", lambda root: str(tmp_path / "a"))
    assert _cpus.cgroup_cpu_limit(str(tmp_path)) is None


def test_cgroup_v1_quota(tmp_path, monkeypatch):
    _tree(tmp_path, {"cpu,cpuacct/cpu.cfs_quota_us": "250000\n",
                     "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    monkeypatch.setattr(_cpus, "_own_cgroup_v2", lambda root: None)
    limit, path = _cpus.cgroup_cpu_limit(str(tmp_path))
    assert limit == 2.5 and path.endswith("cpu.cfs_quota_us")


def test_a_quota_rounds_up_and_lowers_the_count(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(_cpus, "cgroup_cpu_limit", lambda: (1.5, "/sys/fs/cgroup/x/cpu.max"))
    n, source = _cpus.usable_cpus()
    assert n == 2 and "cgroup CPU quota" in source and "1.5 CPUs" in source
    monkeypatch.setattr(_cpus, "cgroup_cpu_limit", lambda: (0.2, "/q"))
    assert _cpus.usable_cpus()[0] == 1  # a fraction of a CPU still gets one worker
    monkeypatch.setattr(_cpus, "cgroup_cpu_limit", lambda: None)
    assert _cpus.usable_cpus() == (64, "the machine's CPU count")


def test_usable_cpus_never_exceeds_affinity():
    assert 1 <= _cpus.usable_cpus()[0] <= len(os.sched_getaffinity(0))


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) not installed")
def test_pool_under_taskset_starts_one_worker_per_allowed_cpu():
    code = ("import allcores\n"
            "with allcores.Pool() as p, allcores.ProcessPoolExecutor() as ex:\n"
            "    print(p._processes, ex._max_workers, len(p.worker_pids()))\n")
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.split() == ["1", "1", "1"], out.stderr
    # the thread backend counts the same cores: one per core without a GIL, else cores + 4
    # (as ThreadPoolExecutor from Python 3.13)
    code = ("import allcores, allcores._backends as b\n"
            "with allcores.Pool(backend='thread') as p:\n"
            "    print(p._processes, 1 if b.python_in_parallel() else 5)\n")
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=120)
    got, want = out.stdout.split()
    assert got == want, out.stderr
    info = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "allcores", "info"],
                          capture_output=True, text=True, timeout=120).stdout
    line = next(x for x in info.splitlines() if x.startswith("cores"))
    assert line.split()[1] == "1" and "affinity" in line, info
