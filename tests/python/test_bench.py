"""allcores bench: what a run reports (every case, every library, ratios, bars, the machine)
and that a broken row cannot hang it. Never a speed: the figures only have to exist."""
import contextlib
import io
import json
import os
import pathlib
import time

import psutil
import pytest

import allcores_bench as bench
from allcores_bench import bars, report, runner
from allcores_bench.adapters import ADAPTERS, ORDER
from allcores_bench.case import load
from budget import tools_suite

# the quick run: one to two minutes on 2 busy cores
pytestmark = [pytest.mark.timeout(300), tools_suite]
HERE = pathlib.Path(__file__).parent


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = bench.main(["--quick", "--json", str(d / "bench.json"),
                         "--markdown", str(d / "BENCHMARKS.md")])
    doc = json.loads((d / "bench.json").read_text())
    return rc, out.getvalue(), doc, (d / "BENCHMARKS.md").read_text()


def test_quick_run_exits_zero_and_every_case_has_every_library(quick):
    rc, _, doc, _ = quick
    assert rc == 0
    cases = load()
    assert list(doc["results"]) == list(cases)
    for name, case in cases.items():
        rows = doc["results"][name]["rows"]
        assert set(case.libs) <= set(rows), name
    assert {"serial", "ideal"} <= set(doc["results"]["cpu"]["rows"])


THIRD_PARTY = ("loky", "joblib", "mpire")
ADAPTER_BUGS = ("AttributeError", "TypeError", "NameError", "KeyError", "AssertionError")


def test_every_row_has_a_positive_headline_figure(quick):
    _, _, doc, _ = quick
    # A third-party peer's own failure (loky's executor breaking under load, say) is a row the
    # bench reports; a wrong result or a wrongly driven API is a bug of the bench.
    errors = [(name, lib, r["error"]) for name, c in doc["results"].items()
              for lib, r in c["rows"].items() if "error" in r
              if lib not in THIRD_PARTY or r["error"].startswith(ADAPTER_BUGS)]
    assert not errors
    for name, c in doc["results"].items():
        for lib, r in c["rows"].items():
            if "skip" in r:  # a peer that is not installed; allcores never skips, except
                # where a case needs a Python none found is (the interpreter backend: a newer
                # one; the thread backend's parallel rows: a free-threaded one)
                assert lib not in ("allcores", "allcores.executor", "multiprocessing",
                                   "ProcessPoolExecutor") or load()[name].min_python or \
                    load()[name].free_threaded, (name, lib, r)
                continue
            if "error" in r:
                continue
            assert r["runs"] >= 1
            # A time, a rate, a memory is never zero; another module's share may round to it.
            pool_case = load()[name].fn.__module__ == "allcores_bench.pool_cases"
            assert r[c["figure"]] > 0 if pool_case else r[c["figure"]] >= 0, (name, lib, r)


def test_ratios_compare_allcores_with_every_peer(quick):
    _, _, doc, _ = quick
    for name, c in doc["results"].items():
        if c["figure"] not in c["rows"]["allcores"]:  # skipped: no Python 3.12+ here
            assert "skip" in c["rows"]["allcores"] and not c["ratios"]
            continue
        ours = c["rows"]["allcores"][c["figure"]]
        for lib, r in c["rows"].items():
            if lib == "allcores" or c["figure"] not in r:
                assert lib not in c["ratios"]
                continue
            theirs = r[c["figure"]]
            expected = theirs / ours if c["lower_is_better"] else ours / theirs
            assert c["ratios"][lib] == pytest.approx(expected), (name, lib)


def test_every_bar_is_checked(quick):
    _, printed, doc, _ = quick
    assert [b["bar"] for b in doc["bars"]] == [text for text, _, _, _ in bars.BARS]
    for b in doc["bars"]:
        assert isinstance(b["pass"], bool) and b["detail"]
        assert f"{'PASS' if b['pass'] else 'FAIL'}  {b['bar']}" in printed


def test_json_and_markdown_say_which_machine(quick):
    _, printed, doc, md = quick
    m = doc["machine"]
    assert m["cores"] >= 1 and m["cpu"] and len(m["loadavg"]) == 3
    assert m["python"] == ".".join(map(str, __import__("sys").version_info[:3]))
    for pkg in ("allcores", "loky", "joblib", "mpire"):
        assert pkg in m["packages"]
    assert doc["quick"] is True and doc["workers"] >= 1 and doc["seconds"] > 0
    assert f"Python {m['python']}" in md and m["cpu"] in md
    for c in doc["results"].values():
        assert c["title"] in md and c["title"] in printed
    for lib in ORDER:
        assert ADAPTERS[lib].label in md


def test_unknown_case_or_library_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--cases", "rtt,nonesuch"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        bench.main(["--libs", "threads"])
    assert "nonesuch" in capsys.readouterr().err


def _results(figure_a, figure_b, lower):
    return {"x": {"figure": "v", "lower_is_better": lower,
                  "rows": {"allcores": {"v": figure_a}, "peer": {"v": figure_b}}}}


def test_advantage_is_how_many_times_better_allcores_is():
    assert bars.advantage(_results(10.0, 100.0, True), "x", "peer") == pytest.approx(10)
    assert bars.advantage(_results(0.9, 0.6, False), "x", "peer") == pytest.approx(1.5)
    assert bars.advantage(_results(10.0, None, True), "x", "peer") is None
    r = _results(2.0, 8.0, True)
    report.add_ratios(r)
    assert r["x"]["ratios"] == {"peer": pytest.approx(4)}


def test_bars_of_cases_not_run_are_left_out_and_missing_figures_fail():
    r = {"rtt": {"figure": "us", "lower_is_better": True,
                 "rows": {"allcores": {"us": 12.0}, "ProcessPoolExecutor": {"us": 200.0},
                          "allcores.executor": {"error": "boom", "runs": 0}}}}
    checks = bars.check(r)
    assert [(t, ok) for t, ok, _ in checks] == [
        ("round trip: median <= 15 µs", True),
        ("round trip: >= 10x ProcessPoolExecutor", True),
        ("round trip: allcores.ProcessPoolExecutor >= 10x ProcessPoolExecutor", False)]
    assert "no figure" in checks[2][2]
    del r["rtt"]["rows"]["allcores.executor"]  # not run (--libs): its bar is left out
    assert len(bars.check(r)) == 2


def test_summary_is_the_median_of_the_runs_that_worked():
    s = runner.summarize([{"us": 3.0, "n": 10}, {"error": "boom"}, {"us": 1.0, "n": 10},
                          {"us": 2.0, "n": 10}])
    assert s["us"] == 2.0 and s["n"] == 10 and s["runs"] == 3 and s["failed_runs"] == ["boom"]
    assert runner.summarize([{"skip": "not installed: mpire"}]) == {
        "skip": "not installed: mpire", "runs": 0}


@pytest.fixture
def test_cases(monkeypatch):
    monkeypatch.setenv("ALLCORES_BENCH_CASES", "bench_cases_for_tests")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(HERE)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_hung_row_is_killed_with_its_processes(test_cases, tmp_path):
    pids = tmp_path / "pids"
    t0 = time.monotonic()
    out = runner.run_row("test_hang", "allcores", 2, {"pids": str(pids)}, timeout=3)
    assert time.monotonic() - t0 < 30
    assert out["error"].startswith("timeout")
    row, worker = map(int, pids.read_text().split())
    deadline = time.monotonic() + 5
    while not (_gone(row) and _gone(worker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(row) and _gone(worker)


def test_a_failing_row_is_a_result(test_cases):
    assert runner.run_row("test_raise", "allcores", 2, {}, timeout=60) == {
        "error": "ValueError: broken peer"}
    assert "error" in runner.run_row("test_die", "allcores", 2, {}, timeout=60)
