"""The free-threaded case of allcores bench: backend="thread" against plain threading and
ThreadPoolExecutor, on a free-threaded Python with its GIL off (under a bench on a build with a
GIL, a sibling .venv-3.13t runs its rows, or the case says why it cannot)."""
import sys

import pytest

from allcores_bench import bars, pythons, runner
from allcores_bench.case import load
from budget import tools_suite

pytestmark = [pytest.mark.timeout(180), tools_suite]


def _python():
    python, version = pythons.python_for(load()["threads"])
    if python is None:
        pytest.skip(version)
    return python


def test_a_free_threaded_python_is_found_or_the_reason_given():
    python, version = pythons.python_for(load()["threads"])
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        assert (python, version) == (sys.executable, None)
    elif python is None:
        assert "needs a free-threaded Python" in version and ".venv-3.13t" in version
    else:
        assert version.endswith("free-threaded") and python != sys.executable


def test_without_a_free_threaded_python_the_rows_are_skipped_with_the_reason(monkeypatch):
    monkeypatch.delenv("ALLCORES_BENCH_PYTHON", raising=False)
    monkeypatch.setattr(pythons, "FREE_THREADED", ())
    monkeypatch.setattr(pythons, "_gil_off_here", lambda: False)
    lines = []
    out = runner.run([load()["threads"]], ["allcores"], 2, 1, True, 60,
                     lambda text, end="\n": lines.append(text))
    row = out["threads"]["rows"]["allcores"]
    assert row["runs"] == 0 and "needs a free-threaded Python" in row["skip"]


def test_the_row_times_the_pool_and_both_kinds_of_threads_in_the_same_rounds():
    r = runner.run_row("threads", "allcores", 2, {"rounds": 2, "work_n": 20000}, 120, _python())
    assert "error" not in r, r
    assert r["speedup"] > 0 and r["wall_s"] > 0 and r["vs_tpe"] > 0 and r["workers"] == 2
    assert set(r["also"]) == {"threading", "ThreadPoolExecutor"}
    for peer in r["also"].values():
        assert peer["speedup"] > 0 and peer["wall_s"] > 0


def test_the_bars_read_the_speedup_against_the_thread_count():
    load()  # the case modules register their bars
    rows = {"allcores": {"speedup": 1.85, "workers": 2, "vs_tpe": 1.02},
            "ThreadPoolExecutor": {"speedup": 1.9}}
    results = {"threads": {"rows": rows, "figure": "speedup", "lower_is_better": False}}
    verdicts = {text: ok for text, ok, _ in bars.check(results) if "free-threaded" in text}
    assert len(verdicts) == 2 and all(verdicts.values())
    rows["allcores"].update(speedup=1.2, vs_tpe=1.5)
    verdicts = {text: ok for text, ok, _ in bars.check(results) if "free-threaded" in text}
    assert not any(verdicts.values())
