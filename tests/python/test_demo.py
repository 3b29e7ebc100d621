"""allcores demo: the structure of what it prints (each row's wall time, speedup and cores used,
the line computed from them), never a speed. --quick runs steps 1, 2 and 5; the other steps run
apart with small sizes (a few seconds), so that every step of the demo runs under test."""
import os
import re
import subprocess
import sys
import threading
import time

import pytest

import allcores_demo as demo
from allcores_demo import Row, c_verdict, cpu_verdict, switch_verdict
from budget import tools_suite

pytestmark = tools_suite  # a tool of the repository: the same on every Python

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
    counter = re.search(r"allcores\.Counter \(lock-free\): ([\d,]+) in \d+\.\d\d s", text)
    assert counter and int(counter[1].replace(",", "")) == 400_000


def test_quick_skips_only_what_help_says_it_skips(quick_demo):
    help_text = subprocess.run([sys.executable, "-m", "allcores", "demo", "--help"],
                               capture_output=True, text=True, timeout=60).stdout
    flat = " ".join(help_text.split())
    assert "skips steps 3 (c: hashlib), 4 (switch: sys.setswitchinterval) and 6 (gil:" in flat
    ran = re.findall(r"^(\d)\. ", quick_demo.stdout, re.M)
    assert ran == ["1", "2", "5"]


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


def _meter_missing():
    """Why the GIL meter cannot count here (its C sampler not built), or None."""
    try:
        from allcores.gil import meter
    except ImportError as exc:
        return f"allcores.gil does not import: {exc}"
    with meter(timeline=False) as m:
        time.sleep(0.05)  # long enough for samples: an empty run reads nothing
    if m.report().switches is None:
        return "the GIL meter does not read the GIL here: " + "; ".join(m.report().notes)
    return None


@pytest.fixture(scope="module")
def long_steps(tmp_path_factory):
    """Steps 3, 4 and 6 (what --quick skips), with 0.05 s tasks: a few seconds."""
    html = tmp_path_factory.mktemp("demo") / "gil.html"
    out = subprocess.run([sys.executable, "-m", "allcores", "demo", "--steps", "c,switch,gil",
                          "--task-seconds", "0.05", "--workers", "2", "--html", str(html)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout, html


def test_c_code_step_has_rows_and_a_measured_verdict(long_steps):
    block = _section(long_steps[0], 3)
    assert block.startswith("C code that releases the GIL")
    rows = [m["name"] for m in map(ROW.match, block.splitlines()) if m]
    assert rows == ["serial", "2 threads"]
    verdict = [line for line in block.splitlines() if line.startswith("  -> ")]
    assert len(verdict) == 1
    # Other work is blamed only with the measured wait for a CPU beside it.
    if "other work" in verdict[0]:
        assert re.search(r"waited \d+\.\d\d s runnable without a CPU, \d+% of", verdict[0])


def test_switch_interval_step_counts_switches_with_the_meter(long_steps):
    block = _section(long_steps[0], 4)
    lines = [line for line in block.splitlines() if line.startswith("  interval ")]
    assert [line.split(":")[0] for line in lines] == ["  interval  5.0 ms", "  interval  0.5 ms"]
    assert "hand-offs)" not in block  # the old wall / interval estimate is gone
    missing = _meter_missing()
    if missing:
        assert all(line.endswith("switches not measured") for line in lines)
        pytest.skip(f"switch counts not checked: {missing}")
    counts = [int(re.search(r"(\d+) switches, counted by the GIL meter$", line)[1])
              for line in lines]
    assert all(c >= 1 for c in counts)
    verdict = block.split("  -> ", 1)[1]
    assert f"({counts[0]} -> {counts[1]})" in verdict
    assert re.search(r"wall time \d+\.\d\d -> \d+\.\d\d s \([+-]\d+%\)", verdict)


def test_gil_timeline_step_writes_the_html_report(long_steps):
    text, html = long_steps
    block = _section(text, 6)
    missing = _meter_missing()
    if missing:
        pytest.skip(f"GIL timeline not checked: {missing}")
    assert re.search(r"GIL held \d+%, \d+ switches, \d+\.\d\d cores used", block)
    assert f"timeline written to {html}" in block
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") or page.lstrip().lower().startswith("<!doctype")
    assert "spinner-0" in page and "spinner-1" in page
    assert "(_serve)" not in page
    # Every line of the verdict stays under its arrow: none starts at the left margin.
    verdict = block.split("  -> ", 1)[1].split("  timeline written", 1)[0]
    assert all(line.startswith("     ") for line in verdict.splitlines()[1:])


def test_io_step_leaves_no_thread_behind(capsys):
    before = set(threading.enumerate())
    demo.io_bound(1)
    left = [t.name for t in threading.enumerate() if t not in before]
    assert left == []
    out = capsys.readouterr().out
    assert "sleep, 4 threads" in out and "sockets, 4 threads" in out


def test_plurals_with_one_worker(capsys):
    demo.cpu_bound(1, 0.01)
    block = capsys.readouterr().out
    assert "1 worker on" in block and "1 workers" not in block
    assert [m["name"] for m in map(ROW.match, block.splitlines()) if m][:2] == \
        ["serial", "1 thread"]


def test_c_verdict_blames_other_work_only_when_the_threads_starved():
    threads = Row("2 threads", 1.0, 1.05)
    starved = c_verdict(threads, 2, starved=0.9, load=0.3)
    assert "other work held the cores" in starved and "0.90 s runnable without a CPU" in starved
    idle = c_verdict(threads, 2, starved=0.01, load=0.3)
    assert "other work" not in idle and "not for lack of a CPU" in idle
    unknown = c_verdict(threads, 2, starved=None, load=0.3)
    assert "other work" not in unknown and "not measured" in unknown
    assert "without any process" in c_verdict(Row("2 threads", 1.0, 1.9), 2, 0.0, 3.0)


def test_switch_verdict_reads_the_measured_counts():
    runs = [(0.005, Row("2 threads", 1.0, 1.0), 64, 0.0),
            (0.0005, Row("2 threads", 1.1, 1.0), 509, 0.0)]
    text = switch_verdict(runs)
    assert "10x shorter interval made 8.0x more hand-offs (64 -> 509)" in text
    assert "wall time 1.00 -> 1.10 s (+10%)" in text
    runs[1] = (0.0005, Row("2 threads", 1.0, 1.0), 70, 0.05)
    text = switch_verdict(runs)
    assert "did not multiply the hand-offs here (64 -> 70)" in text and "other work" not in text
    runs[1] = (0.0005, Row("2 threads", 1.0, 1.0), 70, 0.45)
    assert "other work kept the threads off the CPUs 45% of the time" in switch_verdict(runs)
    runs = [(i, r, None, None) for i, r, _, _ in runs]
    text = switch_verdict(runs, "no sampler")
    assert "switches were not counted (no sampler)" in text and "hand-offs (" not in text
