"""The GIL meter's API and report: names, JSON, the timeline, degraded modes, the verdict's rules,
and the sampler's contracts (its C files other than the layout and binding do not see Python)."""
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from gil_build import needs_gil

import allcores
import allcores.gil as gil
from allcores.gil.report import Report, ThreadReport

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sampler reads Linux /proc")

ROOT = pathlib.Path(__file__).resolve().parents[2]


def spin(seconds):
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


def run_threads(targets, meter=None):
    m = meter or gil.meter()
    with m:
        ts = [threading.Thread(target=f, args=a, name=n) for n, f, a in targets]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return m.report()


def test_public_entry_points():
    assert allcores.gil.meter is gil.meter
    from allcores.gil import doctor
    assert callable(doctor.main)
    from allcores import _gil
    assert _gil.PY_MINOR == sys.version_info.minor, "the layout was built for this Python"


@needs_gil
def test_json_has_the_contract_keys(tmp_path):
    r = run_threads([("alpha", spin, (0.3,)), ("beta", time.sleep, (0.3,))])
    path = tmp_path / "r.json"
    text = r.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text)
    d = json.loads(text)
    for key in ("held", "cores_used", "switches", "threads", "verdict"):
        assert key in d
    assert 0 <= d["held"] <= 1
    assert d["cores_used"] >= 0 and isinstance(d["switches"], int)
    names = {t["name"] for t in d["threads"]}
    assert {"alpha", "beta", "MainThread"} <= names
    for t in d["threads"]:
        for key in ("name", "held", "waiting", "cpu_s"):
            assert key in t
        assert 0 <= t["held"] <= 1 and 0 <= t["waiting"] <= 1 and t["cpu_s"] >= 0
    alpha = r.thread("alpha")
    assert 0 < alpha.cpu_s <= alpha.alive_s + 0.02 and alpha.python
    assert r.thread("beta").blocked > 0.5, "a sleeping thread is blocked, not waiting"
    assert isinstance(d["verdict"], str) and d["verdict"]
    assert "timeline" in json.loads(r.to_json(timeline=True))


def test_names_of_exited_and_renamed_threads():
    def renamer():
        threading.current_thread().name = "renamed-inside"
        spin(0.1)
    r = run_threads([("before", renamer, ()), ("plain", spin, (0.1,))])
    names = [t.name for t in r.threads]
    assert "renamed-inside" in names and "plain" in names
    assert not any(n.startswith("native-") for n in names)


def test_profile_hook_is_restored_and_chained():
    seen = []

    def user_hook(frame, event, arg):
        if event == "call":
            seen.append(threading.current_thread().name)
    threading.setprofile(user_hook)
    try:
        run_threads([("hooked", spin, (0.05,))])
        assert threading.getprofile() is user_hook
        assert "hooked" in seen, "the user's own profile hook still reaches new threads"
    finally:
        threading.setprofile(None)
    assert sys.getprofile() is None


@needs_gil
def test_timeline_holds_alternate_and_cores_are_drawn():
    r = run_threads([("a", spin, (0.6,)), ("b", spin, (0.6,))])
    holds = r.holds()
    assert len(holds) >= 5
    holders = [h[0] for h in holds]
    assert {"a", "b"} <= set(holders)
    assert all(b > a for _, a, b in holds)
    assert any(s.state == "waiting" for s in r.segments)
    assert len(r.cores_timeline) >= 3
    assert all(0 <= c <= os.cpu_count() + 0.5 for _, c in r.cores_timeline)


def test_live_report_while_running():
    m = gil.meter().start()
    t = threading.Thread(target=spin, args=(0.3,), name="live")
    t.start()
    time.sleep(0.15)
    live = m.report()
    t.join()
    final = m.stop()
    assert live.wall_s < final.wall_s
    assert live.samples <= final.samples
    assert m.report() is final


def test_meter_errors():
    with pytest.raises(ValueError):
        gil.meter(1)
    m = gil.meter()
    with pytest.raises(RuntimeError):
        m.stop()
    m.start()
    with pytest.raises(RuntimeError):
        m.start()
    m.stop()


@needs_gil
def test_self_test_rejects_a_wrong_layout_and_the_sampler_degrades():
    from allcores import _gil
    good = _gil.Sampler(switch_interval_us=round(sys.getswitchinterval() * 1e6))
    assert good.layout_ok and good.layout_error is None
    bad = _gil.Sampler(switch_interval_us=round(sys.getswitchinterval() * 1e6) + 1)
    assert not bad.layout_ok
    assert "interval" in bad.layout_error
    bad.start()
    spin(0.1)
    bad.stop()
    totals = bad.totals()
    assert not totals["have_gil"] and totals["ticks"] == 0
    assert any(t["cpu_ns"] > 0 for t in bad.threads()), "per-thread CPU is still measured"


@needs_gil
def test_without_the_layout_cpu_and_states_remain():
    r = run_threads([("a", spin, (0.4,)), ("b", spin, (0.4,))], meter=gil.meter(layout=False))
    assert r.held is None and r.switches is None and not r.gil_measured
    assert r.thread("a").held is None
    assert r.thread("a").cpu_s > 0 and r.thread("b").cpu_s > 0
    assert r.cores_used > 0
    assert "no-gil-data" in r.findings
    assert any("layout" in n for n in r.notes)
    d = json.loads(r.to_json())
    assert d["held"] is None and d["threads"]
    r.to_html()  # renders without GIL data


def test_short_lived_threads_leave_no_descriptors():
    fds = len(os.listdir("/proc/self/fd"))
    with gil.meter(200):
        for _ in range(5):
            ts = [threading.Thread(target=spin, args=(0.01,)) for _ in range(10)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
    assert len(os.listdir("/proc/self/fd")) == fds


def test_sampler_cost_is_reported_and_bounded():
    # The default interval stretches to keep the sampler near 1.5% of one CPU; 3% is the bar.
    # A cost is a CPU-time ratio, which a busy shared machine inflates: the best of 3 runs.
    runs = []
    for _ in range(3):
        r = run_threads([("a", spin, (0.5,))])
        assert r.sampler_cpu_s > 0
        runs.append(r)
        if r.sampler_cost < 0.03:
            break
    assert min(r.sampler_cost for r in runs) < 0.03, [r.sampler_cost for r in runs]


# ---- the verdict's rules, on reports built by hand ----

def make_report(threads, **kw):
    base = dict(held=0.5, cores_used=1.0, switches=100, wall_s=2.0, interval_us=1000, samples=2000,
                state_samples=2000, switch_interval_s=0.005, hog=0.0, cores_available=4)
    base.update(kw)
    r = Report(threads=threads, **base)
    r._decide()
    return r


def th(name, held=0.0, waiting=0.0, running=0.0, blocked=0.0, cpu_s=0.0, runq_s=0.0, hog=0.0, alive_s=2.0):
    return ThreadReport(name=name, native_id=1, held=held, waiting=waiting, running=running, blocked=blocked,
                        cpu_s=cpu_s, runq_s=runq_s, python=True, alive_s=alive_s, hog=hog)


def test_verdict_contention_gives_the_pool_speedup():
    r = make_report([th("a", 0.5, 0.5, cpu_s=1.0), th("b", 0.5, 0.5, cpu_s=1.0)], held=1.0)
    assert r.findings == ["gil-contention"]
    assert "2.0x" in r.verdict and "allcores.Pool" in r.verdict
    four = make_report([th(n, 0.25, 0.75, cpu_s=0.5) for n in "abcd"], held=1.0)
    assert "4.0x" in four.verdict
    one_core = make_report([th("a", 0.5, 0.5, cpu_s=1.0), th("b", 0.5, 0.5, cpu_s=1.0)], held=1.0,
                           cores_available=1)
    assert "one usable core" in one_core.verdict


def test_verdict_other_patterns():
    single = make_report([th("main", 0.99, 0.0, cpu_s=2.0)], held=0.99)
    assert single.findings == ["single-thread"]
    io = make_report([th("a", 0.02, 0.01, blocked=0.95), th("b", 0.02, 0.01, blocked=0.95)], held=0.04,
                     cores_used=0.05)
    assert io.findings == ["io-bound"]
    c = make_report([th("a", 0.02, running=0.9, cpu_s=1.8), th("b", 0.02, running=0.9, cpu_s=1.8)], held=0.05,
                    cores_used=1.8)
    assert c.findings == ["c-parallel"] and "1.80 cores" in c.verdict
    hog = make_report([th("sorter", 0.95, hog=0.9, cpu_s=1.9), th("x", 0.01, 0.9)], held=0.97, hog=0.9,
                      max_hold_pressed_s=0.4)
    assert "gil-hog" in hog.findings and "sorter" in hog.verdict
    starved = make_report([th("a", 0.99, cpu_s=0.5, runq_s=1.5)], held=0.99, cores_used=0.25)
    assert "cpu-starved" in starved.findings
    sub = make_report([th("a", 0.0, blocked=1.0)], held=0.01, cores_used=1.0,
                      interpreters=[{"id": 1, "held": 0.95, "switches": 0}])
    assert "subinterpreters" in sub.findings and "io-bound" not in sub.findings
    ft = make_report([th("a", None, None, running=0.9, cpu_s=1.8)], held=None, gil_measured=False,
                     gil_disabled=True, cores_used=1.8)
    assert ft.findings[0] == "free-threaded" and "disabled" in ft.verdict


# ---- contracts of the C files ----

def test_sampler_c_files_stay_free_of_python():
    src = ROOT / "src" / "sampler"
    for path in sorted(src.glob("*.[ch]")):
        text = path.read_text()
        assert text.startswith(f"/* {path.name}:"), f"{path.name} opens with its contract"
        if path.name in ("gil_layout.c", "gil_module.c"):
            continue
        assert not re.search(r'#\s*include\s*[<"]Python\.h', text), f"{path.name} must not include Python.h"


@needs_gil
def test_fork_while_sampling_and_exit_while_running():
    code = textwrap.dedent("""
        import os, threading, time
        import allcores.gil as gil
        m = gil.meter().start()
        t = threading.Thread(target=time.sleep, args=(0.2,)); t.start()
        pid = os.fork()
        if pid == 0:
            r = m.stop()              # no sampling thread in the child: no join, no deadlock
            os._exit(0 if r.wall_s >= 0 else 1)
        _, status = os.waitpid(pid, 0)
        t.join()
        print("child", os.waitstatus_to_exitcode(status), "parent samples", m.stop().samples > 0)
        gil.meter().start()            # still running at exit: stopped by atexit
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "child 0 parent samples True" in p.stdout


def _parent_bound_report(main_kinds):
    """A pool run whose parent worked the whole time while its two workers waited, with the
    main thread's stack samples given."""
    from types import SimpleNamespace as NS
    busy = [(0.1 * i, 0.1 * (i + 1), 1.0, 1.0) for i in range(20)]
    idle = [(0.1 * i, 0.1 * (i + 1), 0.1, 0.1) for i in range(20)]
    main = NS(role="main", busy=busy, cores_used=1.0, start_s=0.0, end_s=2.0, cpu_s=2.0,
              stacks={"main_kinds": main_kinds, "kinds": dict(main_kinds),
                      "top_code": [["<module> (prog.py:12)", main_kinds.get("code", 0)]]
                      if main_kinds.get("code") else []})
    workers = [NS(role="pool worker", busy=idle, cores_used=0.1, start_s=0.0, end_s=2.0, cpu_s=0.2,
                  idle=0.9, stacks={"kinds": {"code": 3}}, startup_s=0.01, runnable=0.1)
               for _ in range(2)]
    return NS(processes=[main, *workers], cores_available=2, runnable=[], cores_used=1.2, wall_s=2.0)


def test_parent_bound_says_what_the_parent_did_only_from_enough_samples():
    from allcores.gil.verdict import PARENT_MIN_SAMPLES, pool_findings
    found = dict(pool_findings(_parent_bound_report({"code": 18, "pool": 2})))
    assert "its own code 90%, the pool's machinery 10%" in found["parent-bound"]
    assert "the busiest code: <module> (prog.py:12)" in found["parent-bound"]
    # one or two samples can land in the pool's code by chance: they are not a breakdown
    few = dict(pool_findings(_parent_bound_report({"pool": PARENT_MIN_SAMPLES - 1})))
    text = few["parent-bound"]
    assert f"too few ({PARENT_MIN_SAMPLES - 1}) to tell what it was doing" in text
    assert "machinery" not in text.split("Move that work")[0] and "busiest" not in text


def test_tiny_tasks_are_never_read_as_one_long_last_task():
    """With tiny tasks, which worker finished last says nothing about the tasks' sizes (on a
    starved machine one worker often runs alone at the end): no imbalance finding."""
    from types import SimpleNamespace as NS
    from allcores.gil.verdict import pool_findings

    def spans(end):
        return [(0.1 * i, 0.1 * (i + 1), 1.0, 1.0) for i in range(round(end * 10))]
    main = NS(role="main", busy=spans(2.0), cores_used=1.0, start_s=0.0, end_s=2.0, cpu_s=2.0,
              stacks={"main_kinds": {"pool": 20}, "kinds": {"pool": 20}, "top_code": []})
    workers = [NS(role="pool worker", busy=spans(end), cores_used=1.0, start_s=0.0, end_s=end,
                  cpu_s=end, idle=0.0, stacks={"kinds": {"pool": 20}}, startup_s=0.01,
                  runnable=1.0) for end in (2.0, 1.2)]
    report = NS(processes=[main, *workers], cores_available=2, runnable=[], cores_used=2.0,
                wall_s=2.0)
    codes = [code for code, _ in pool_findings(report)]
    assert "tiny-tasks" in codes and "imbalance" not in codes, codes
