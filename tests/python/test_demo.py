"""allcores demo: the structure of what it prints (each row's wall time, speedup and cores used,
the line computed from them), never a speed."""
import os
import re
import subprocess
import sys

import pytest

from allcores.demo import Row, cpu_verdict

ROW = re.compile(r"^  (?P<name>\S.*?)\s+(?P<wall>\d+\.\d+)s\s+(?P<speedup>\d+\.\d+)x\s+"
                 r"(?P<cores>\d+\.\d+)$")


@pytest.fixture(scope="module")
def quick_demo():
    out = subprocess.run([sys.executable, "-m", "allcores", "demo", "--quick", "--workers", "2"],
                         capture_output=True, text=True, timeout=120)
    return out


def _section(text, number):
    block = text.split(f"\n{number}. ", 1)[1]
    return block.split(f"\n{number + 1}. ", 1)[0]


def test_quick_demo_exits_zero(quick_demo):
    assert quick_demo.returncode == 0, quick_demo.stderr
    assert "demo took" in quick_demo.stdout


def test_cpu_bound_step_has_every_row_and_a_verdict(quick_demo):
    block = _section(quick_demo.stdout, 1)
    assert block.startswith("CPU-bound pure Python")
    rows = {m["name"]: m for m in map(ROW.match, block.splitlines()) if m}
    assert list(rows) == ["serial", "2 threads", "multiprocessing.Pool", "allcores.Pool"]
    assert rows["serial"]["speedup"] == "1.00"
    for m in rows.values():
        assert float(m["wall"]) > 0 and float(m["cores"]) > 0
    verdict = [line for line in block.splitlines() if line.startswith("  -> ")]
    assert len(verdict) == 1
    assert re.search(r"threads: \d+\.\d\dx on \d+\.\d\d cores", verdict[0])
    assert re.search(r"allcores\.Pool \d+\.\d\dx on \d+\.\d\d", verdict[0])
    assert re.search(r"multiprocessing\.Pool \d+\.\d\dx on \d+\.\d\d", verdict[0])


def test_io_and_counter_steps(quick_demo):
    io_block = _section(quick_demo.stdout, 2)
    assert [m["name"] for m in map(ROW.match, io_block.splitlines()) if m] == [
        "sleep, serial", "sleep, 8 threads", "sockets, serial", "sockets, 8 threads"]
    text = quick_demo.stdout
    lost = re.search(r"without a lock: ([\d,]+)", text)
    locked = re.search(r"with a lock:\s+([\d,]+)", text)
    assert lost and locked
    assert int(locked[1].replace(",", "")) == 400_000
    assert int(lost[1].replace(",", "")) <= 400_000


def test_verdict_is_computed_from_the_numbers():
    rows = [Row("serial", 2.0, 2.0), Row("2 threads", 2.0, 2.0),
            Row("multiprocessing.Pool", 1.0, 2.0), Row("allcores.Pool", 1.0, 2.0)]
    text = cpu_verdict(rows, 2)
    cores = min(2, os.cpu_count())
    assert "threads: 1.00x on 1.00 cores" in text
    assert f"multiprocessing.Pool 2.00x on 2.00, allcores.Pool 2.00x on 2.00 of {cores} cores" \
        in text
    assert "slower" not in text
    rows[3] = Row("allcores.Pool", 1.5, 2.85)
    rows[2] = Row("multiprocessing.Pool", 1.6, 3.0)
    text = cpu_verdict(rows, 2)
    assert "allcores.Pool 1.33x" in text
    assert "speedup (1.33x) is below the cores used (1.90)" in text
