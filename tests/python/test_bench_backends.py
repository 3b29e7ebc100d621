"""The backend cases of allcores bench: the CPU-bound case and the memory per worker
on backend="interpreter" against backend="process". They need Python 3.12+: under 3.11 the bench
runs them under a sibling venv (.venv-3.13), and says why when there is none."""
import sys
from dataclasses import replace

import pytest

from allcores_bench import pythons, runner
from allcores_bench.case import load
from budget import tools_suite

pytestmark = [pytest.mark.timeout(180), tools_suite]


def _python():
    python, version = pythons.python_for(load()["backends"])
    if python is None:
        pytest.skip(version)
    return python


def test_a_newer_python_is_found_or_the_reason_given():
    python, version = pythons.python_for(load()["backends"])
    if sys.version_info >= (3, 12):
        assert (python, version) == (sys.executable, None)
    elif python is None:
        assert "needs Python 3.12+" in version
    else:
        assert version >= "3.12" and python != sys.executable


def test_a_case_no_python_here_can_run_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.delenv("ALLCORES_BENCH_PYTHON", raising=False)
    case = replace(load()["backends"], name="backends", min_python=(9, 9))
    lines = []
    out = runner.run([case], ["allcores"], 2, 1, True, 60,
                     lambda text, end="\n": lines.append(text))
    row = out["backends"]["rows"]["allcores"]
    assert row["runs"] == 0 and "needs Python 9.9+" in row["skip"]


def test_cpu_row_times_both_backends_and_pairs_them():
    r = runner.run_row("backends", "allcores", 2, {"rounds": 2, "work_n": 20000}, 120,
                       _python())
    assert "error" not in r, r
    assert r["wall_s"] > 0 and r["efficiency"] > 0 and r["vs_process"] > 0
    assert r["also"]["process"]["wall_s"] > 0


def test_memory_row_gives_a_figure_per_worker_for_both_backends():
    r = runner.run_row("backend_memory", "allcores", 2, {}, 120, _python())
    assert "error" not in r, r
    # A slope (2W workers minus W workers): noise can make it small, never absent.
    assert isinstance(r["mib"], float) and isinstance(r["also"]["process"]["mib"], float)
    assert r["also"]["process"]["worker_uss_mib"] > 0
