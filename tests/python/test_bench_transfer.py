"""The transfer cases of allcores bench: 64 MiB payloads to a worker and back, shared
arrays handed to tasks, the shared counter, each run as the bench runs it (a row in a fresh
process) at tiny sizes. Never a speed: the figures only have to exist and be consistent."""
import contextlib
import io
import json

import pytest

import allcores_bench as bench
from allcores_bench import bars, runner
from allcores_bench.case import load
from budget import tools_suite

load()  # registers the cases' bars

pytestmark = [pytest.mark.timeout(180), tools_suite]
TINY = {"mib": 1, "warm": 1, "n": 2, "cap_s": 0.1}


@pytest.mark.parametrize("case", ["bytes64", "numpy64"])
@pytest.mark.parametrize("lib", ["allcores", "ProcessPoolExecutor", "multiprocessing", "shm"])
def test_a_transfer_row_measures_both_ways(case, lib):
    r = runner.run_row(case, lib, 2, TINY, timeout=60)
    assert "error" not in r and "skip" not in r, r
    assert r["to_gbs"] > 0 and r["back_gbs"] > 0 and r["n"] >= 1
    assert r["gbs"] == pytest.approx(min(r["to_gbs"], r["back_gbs"]))
    assert r["to_ms"] == pytest.approx((1 << 20) / r["to_gbs"] / 1e6)
    if lib == "allcores":  # the machine's limits ride along with allcores' row
        assert set(r["also"]) == {"copy_mapped", "copy_fresh"}
        assert all(limit["gbs"] > 0 for limit in r["also"].values())


def test_joblib_row_goes_through_its_memmapping():
    pytest.importorskip("joblib")
    r = runner.run_row("numpy64", "joblib", 2, TINY, timeout=60)
    assert r.get("to_gbs", 0) > 0 and r.get("back_gbs", 0) > 0, r


@pytest.mark.parametrize("lib", ["allcores", "shm"])
def test_shared_array_hand_off_times_both_sizes(lib):
    r = runner.run_row("shared_array", lib, 2, {"small_mib": 1, "big_mib": 4, "n": 5},
                       timeout=60)
    assert r["us"] > 0 and r["small_us"] > 0
    assert r["big_over_small"] == pytest.approx(r["us"] / r["small_us"])


def test_counter_counts_every_increment_and_reports_rates():
    r = runner.run_row("counter", "allcores", 2, {"n": 2000}, timeout=60)
    assert r["mops"] > 0 and r["also"]["allcores.value"]["mops"] > 0
    assert runner.run_row("counter", "multiprocessing", 2, {"n": 2000}, timeout=60)["mops"] > 0


def _transfer(to, back, ppe_to, ppe_back):
    rows = {"allcores": {"to_gbs": to, "back_gbs": back},
            "ProcessPoolExecutor": {"to_gbs": ppe_to, "back_gbs": ppe_back}}
    return {"bytes64": {"figure": "gbs", "lower_is_better": False, "rows": rows}}


def _verdicts(results):
    return {text: ok for text, ok, _ in bars.check(results)}


def test_transfer_bars_need_both_ways():
    ok = _verdicts(_transfer(6.0, 7.0, 0.5, 0.6))
    assert ok["64 MiB bytes: >= 5 GB/s each way"]
    assert ok["64 MiB bytes: >= 10x ProcessPoolExecutor each way"]
    slow_back = _verdicts(_transfer(6.0, 4.0, 0.5, 0.6))
    assert not slow_back["64 MiB bytes: >= 5 GB/s each way"]
    assert not slow_back["64 MiB bytes: >= 10x ProcessPoolExecutor each way"]


def test_shared_array_bar_reads_the_ratio_of_sizes():
    r = {"shared_array": {"figure": "us", "lower_is_better": True,
                          "rows": {"allcores": {"us": 30.0, "small_us": 20.0,
                                                "big_over_small": 1.5}}}}
    assert _verdicts(r) == {"shared array hand-off: 1 GiB within 2x of 1 MiB": True}
    r["shared_array"]["rows"]["allcores"]["big_over_small"] = 2.5
    assert _verdicts(r) == {"shared array hand-off: 1 GiB within 2x of 1 MiB": False}


def test_libs_can_leave_the_hand_written_peer_out(tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        bench.main(["--quick", "--cases", "shared_array,counter", "--libs",
                    "allcores,multiprocessing", "--json", str(tmp_path / "r.json")])
    doc = json.loads((tmp_path / "r.json").read_text())
    assert set(doc["results"]["shared_array"]["rows"]) == {"allcores"}
    counter = doc["results"]["counter"]["rows"]
    assert set(counter) == {"allcores", "allcores.value", "multiprocessing"}
    assert doc["results"]["counter"]["ratios"]["multiprocessing"] > 0
