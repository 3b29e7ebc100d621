"""The examples run to the end on tiny inputs and their own correctness checks pass (results
identical across methods, counters exact). Never a speed: the timings are the examples' output,
not something to assert on a shared 2-core machine."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

from budget import long_suite

pytestmark = long_suite  # whole programs on the API the core suite checks on every Python
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def run_example(name, *args, env=None):
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                         text=True, timeout=240, cwd=EXAMPLES, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def speedups(text, names):
    """The table rows of print_table for `names` ({name: speedup}); each must be there once."""
    found = {}
    for name in names:
        rows = re.findall(rf"^  {re.escape(name)} +\d+\.\d{{3}}s +(\d+\.\d\d)x$", text, re.M)
        assert len(rows) >= 1, f"no speedup row for {name!r} in:\n{text}"
        found[name] = float(rows[0])
    return found


def conclusion(text):
    lines = [line for line in text.splitlines() if line.startswith("-> ")]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.timeout(300)
def test_log_analytics_results_identical(tmp_path):
    log = tmp_path / "access.log"
    text = run_example("log_analytics.py", "--mb", "2", "--workers", "2", "--path", str(log))
    assert "results identical: yes (4 runs compared exactly)" in text
    x = speedups(text, ("serial", "threads", "ProcessPoolExecutor", "allcores.Pool"))
    assert x["serial"] == 1.0
    line = conclusion(text)
    # The conclusion quotes the table's speedups, and says processes used the cores only when
    # they were faster.
    assert f"ProcessPoolExecutor {x['ProcessPoolExecutor']:.2f}x" in line
    assert f"allcores.Pool {x['allcores.Pool']:.2f}x" in line
    if max(x["ProcessPoolExecutor"], x["allcores.Pool"]) < 1:
        assert "use the cores" not in line
    assert "(0 unparsed)" in text
    assert log.stat().st_size >= 2_000_000  # --path keeps the generated log


@pytest.mark.timeout(300)
def test_log_analytics_removes_its_temporary_log(tmp_path):
    text = run_example("log_analytics.py", "--mb", "0.5", "--workers", "2",
                       env={**os.environ, "TMPDIR": str(tmp_path)})
    assert "results identical: yes" in text
    assert list(tmp_path.iterdir()) == []


def _example_modules():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import loggen
        import logstats
    finally:
        sys.path.remove(str(EXAMPLES))
    return loggen, logstats


def test_log_analytics_conclusion_follows_the_numbers():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import log_analytics
    finally:
        sys.path.remove(str(EXAMPLES))

    def rows(threads, ppe, ours):
        return [("serial", 2.0), ("threads", 2.0 / threads), ("ProcessPoolExecutor", 2.0 / ppe),
                ("allcores.Pool", 2.0 / ours)]
    fast = log_analytics.conclusion(rows(1.0, 1.8, 1.9), 2)
    assert "threads share one GIL (1.00x)" in fast
    assert "processes use the cores: ProcessPoolExecutor 1.80x, allcores.Pool 1.90x" in fast
    slow = log_analytics.conclusion(rows(0.9, 0.7, 0.8), 2)
    assert "use the cores" not in slow
    assert "processes did not beat serial on this run (ProcessPoolExecutor 0.70x" in slow
    one = log_analytics.conclusion(rows(1.0, 0.9, 0.95), 1)
    assert "with 1 worker processes have no core to add" in one


def test_loggen_is_deterministic(tmp_path):
    loggen, _ = _example_modules()
    paths = [tmp_path / name for name in ("a", "b", "c")]
    for path, seed in zip(paths, (5, 5, 6)):
        loggen.write_log(path, 0.1, seed=seed)
    assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()


def test_logstats_chunks_cover_every_line_once(tmp_path):
    loggen, logstats = _example_modules()
    path = tmp_path / "a.log"
    _, count = loggen.write_log(path, 0.2, seed=3)
    whole = logstats.parse_range((path, 0, path.stat().st_size))
    for chunk in (1, 97, 4096, 65536):  # chunk edges inside lines, on newlines, past the end
        merged = logstats.merge(map(logstats.parse_range, logstats.byte_ranges(path, chunk)))
        assert merged == whole
    assert whole["lines"] == count and whole["bad"] == 0
    assert logstats.percentiles({1: 50, 2: 45, 10: 5}) == [1, 2, 10]


@pytest.mark.timeout(300)
def test_counter_race_counts_are_exact_with_a_lock_and_a_counter():
    text = run_example("counter_race.py", "--workers", "2", "--increments", "20000")
    assert "the lock and allcores.Counter are exact (yes)" in text
    speedups(text, ("multiprocessing.Value + lock", "allcores.Counter"))
    assert re.search(r"Counter is \d+\.\dx faster than the locked Value", conclusion(text))
    assert "multiprocessing.Value + lock     total      40,000  lost         0" in text
    assert "allcores.Counter                 total      40,000  lost         0" in text


@pytest.mark.timeout(300)
def test_io_threads_results_identical():
    text = run_example("io_threads.py", "--tasks", "6", "--delay-ms", "10", "--workers", "3")
    assert "results identical: yes" in text
    assert "requests to 127.0.0.1:" in text
    assert len(re.findall(r"^  ThreadPoolExecutor +\d+\.\d{3}s +\d+\.\d\dx$", text, re.M)) == 2
    assert re.search(r"sleeps \d+\.\dx and the socket requests \d+\.\dx", conclusion(text))


def test_io_threads_help_describes_the_example_in_full():
    text = run_example("io_threads.py", "--help")
    assert "releases the GIL, so the others run meanwhile." in " ".join(text.split())


@pytest.mark.timeout(300)
def test_mixed_results_identical():
    text = run_example("mixed.py", "--docs", "4", "--batch", "2", "--delay-ms", "10",
                       "--rounds", "2", "--workers", "2")
    assert "results identical: yes" in text
    speedups(text, ("threads only", "processes only", "processes + threads"))
    assert re.search(r"do both: \d+\.\d\dx faster than threads only", conclusion(text))
