"""The doctor without a GIL: on a free-threaded build the report says there is no GIL and gives
each thread's CPU and the parallelism reached instead of GIL figures, and its verdicts stay true
(threads that run in parallel are not "taking turns"). Reports built by hand and a meter told the
GIL is off cover every Python; on a free-threaded interpreter the real thing runs too."""
import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import importlib

from allcores.gil import Report, ThreadReport

gil_meter = importlib.import_module("allcores.gil.meter")  # the module (the package exports a function of that name)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sampler reads Linux /proc")

FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)() or \
    bool(__import__("sysconfig").get_config_var("Py_GIL_DISABLED"))


def th(name, cpu_s, alive_s=2.0):
    return ThreadReport(name=name, native_id=1, held=None, waiting=None, running=0.9, blocked=0.0, cpu_s=cpu_s,
                        runq_s=0.0, python=True, alive_s=alive_s)


def ft_report(threads, cores_used, timeline=()):
    r = Report(held=None, cores_used=cores_used, switches=None, threads=threads, wall_s=2.0, interval_us=1000,
               gil_measured=False, gil_disabled=True, cores_available=4, cores_timeline=list(timeline))
    r._decide()
    return r


def test_parallel_threads_are_said_to_run_in_parallel():
    r = ft_report([th("a", 1.9), th("b", 1.9), th("c", 1.8)], 2.8, timeline=[(0.5, 2.9), (1.5, 2.8)])
    assert r.findings == ["free-threaded"]
    par = r.parallelism()
    assert par["threads"] == 3 and par["reached"] == pytest.approx(2.8) and par["peak"] == pytest.approx(2.9)
    assert "GIL is disabled" in r.verdict and "ran 2.80 at a time" in r.verdict and "ran in parallel" in r.verdict
    assert "take turns" not in r.verdict and "process pool" not in r.verdict
    text = r.summary()
    assert "no GIL (free-threaded build): 3 busy thread(s) ran 2.80 at a time" in text
    assert "GIL held" not in text.splitlines()[0]
    d = json.loads(r.to_json())
    assert d["held"] is None and d["switches"] is None and d["gil_disabled"] is True
    assert d["parallelism"]["reached"] == pytest.approx(2.8)
    assert [t["cpu_s"] for t in d["threads"]] == [1.9, 1.9, 1.8] and all(t["held"] is None for t in d["threads"])


def test_serialised_threads_are_not_called_parallel():
    r = ft_report([th("a", 1.0), th("b", 1.0)], 1.0)
    assert r.parallelism()["reached"] == pytest.approx(1.0)
    assert "did not run in parallel" in r.verdict and "take turns on the GIL" not in r.verdict


def test_one_thread_no_parallel_claim():
    r = ft_report([th("main", 1.9)], 0.95)
    assert r.findings == ["free-threaded"] and "at a time" not in r.verdict


def spin(seconds):
    t = time.thread_time()
    while time.thread_time() - t < seconds:
        pass


def test_meter_told_there_is_no_gil_measures_threads_and_stays_true(monkeypatch):
    """A meter on a GIL build, told the GIL is off, takes the free-threaded path: no GIL figures,
    per-thread CPU, the parallelism reached. The threads really took turns on the GIL, so the
    truth is that they did not run in parallel, and that is what the verdict must say."""
    if FREE_THREADED:
        pytest.skip("the real free-threaded path runs in test_doctor_on_a_free_threaded_build")
    monkeypatch.setattr(gil_meter, "_gil_enabled", lambda: False)
    with gil_meter.meter() as m:
        ts = [threading.Thread(target=spin, args=(0.4,), name=f"ft-{i}") for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
    r = m.report()
    assert r.gil_disabled and not r.gil_measured and r.held is None
    assert r.findings[0] == "free-threaded"
    names = {t.name: t for t in r.threads}
    assert names["ft-0"].cpu_s > 0.3 and names["ft-1"].cpu_s > 0.3 and names["ft-0"].held is None
    par = r.parallelism()
    assert par["threads"] >= 2 and par["reached"] < 1.25, par  # with the GIL really on: one at a time
    assert "did not run in parallel" in r.verdict


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded build (python3.13t; tools/get-python 3.13t)")
def test_doctor_on_a_free_threaded_build(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent("""
        import threading, time
        def spin():
            t = time.thread_time()
            while time.thread_time() - t < 0.6:
                pass
        if __name__ == "__main__":
            ts = [threading.Thread(target=spin, name=f"w{i}") for i in range(2)]
            for t in ts: t.start()
            for t in ts: t.join()
    """))
    env = dict(__import__("os").environ, PYTHON_GIL="0")
    p = subprocess.run([sys.executable, "-X", "gil=0", "-m", "allcores", "doctor", "--json", "r.json", str(prog)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["gil_disabled"] and d["held"] is None and d["findings"][0] == "free-threaded"
    assert "no GIL" in p.stdout and "take turns" not in d["verdict"]
    ws = [t for t in d["threads"] if t["name"] in ("w0", "w1")]
    assert len(ws) == 2 and all(t["cpu_s"] > 0.4 for t in ws)
    assert d["parallelism"]["threads"] >= 2
