"""`allcores doctor`: runs a program as __main__ under the GIL meter, like cProfile, and reports."""
import json
import subprocess
import sys
import textwrap

import pytest
from gil_build import needs_gil

from allcores.gil import doctor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sampler reads Linux /proc")

SPINNERS = textwrap.dedent("""
    import sys, threading, time
    def spin():
        t = time.perf_counter()
        while time.perf_counter() - t < 0.6:
            pass
    if __name__ == "__main__":
        print("argv", sys.argv)
        ts = [threading.Thread(target=spin, name=f"worker-{i}") for i in range(2)]
        for t in ts: t.start()
        for t in ts: t.join()
        sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
""")


def doctor_cmd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "allcores", "doctor", *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@needs_gil
def test_runs_a_script_with_its_arguments_and_reports(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(SPINNERS)
    j, h = tmp_path / "r.json", tmp_path / "r.html"
    p = doctor_cmd("--json", j, "--html", h, script, "3", "--flag")
    assert p.returncode == 3, p.stderr
    assert f"argv [{str(script)!r}, '3', '--flag']" in p.stdout, "sys.argv is the script and its arguments"
    out = p.stdout.split("=== allcores doctor ===", 1)[1]
    assert "worker-0" in out and "worker-1" in out
    d = json.loads(j.read_text())
    assert {t["name"] for t in d["threads"]} >= {"worker-0", "worker-1"} and d["timeline"]
    if not getattr(sys, "_is_gil_enabled", lambda: True)():  # free-threaded, GIL off: no turns to take
        assert d["held"] is None and d["findings"][0] == "free-threaded" and "take turns" not in out
    else:
        assert "take turns on the GIL" in out and "process pool" in out
        assert d["held"] > 0.8 and "gil-contention" in d["findings"]
    page = h.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="timeline"' in page


def test_program_errors_still_report(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("import time\ntime.sleep(0.1)\nraise ValueError('boom')\n")
    p = doctor_cmd(script)
    assert p.returncode == 1
    assert "ValueError: boom" in p.stderr
    assert "=== allcores doctor ===" in p.stdout


def test_module_mode(tmp_path):
    (tmp_path / "spinmod.py").write_text(SPINNERS)
    p = doctor_cmd("--interval", "500", "-m", "spinmod", "0", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    # As with python -m, argv[0] becomes the module's file.
    assert f"argv [{str(tmp_path / 'spinmod.py')!r}, '0']" in p.stdout
    assert "=== allcores doctor ===" in p.stdout


@pytest.mark.parametrize("args, message", [
    ([], "no script given"),
    (["--bogus", "x.py"], "unknown option"),
    (["--interval", "fast", "x.py"], "microseconds"),
    (["--interval", "1", "x.py"], "between"),
    (["no/such/file.py"], "no such file"),
    (["--json"], "needs a value"),
])
def test_usage_errors(args, message, capsys):
    assert doctor.main(args) == 2
    assert message in capsys.readouterr().err


def test_in_process_call_restores_argv_and_path(tmp_path, capsys):
    script = tmp_path / "quick.py"
    script.write_text("import sys\nprint('ran', __name__, sys.argv[1:])\n")
    argv, path = sys.argv[:], sys.path[:]
    assert doctor.main([str(script), "x"]) == 0
    assert sys.argv == argv and sys.path == path
    out = capsys.readouterr().out
    assert "ran __main__ ['x']" in out and "=== allcores doctor ===" in out


def test_help():
    p = doctor_cmd("--help")
    assert p.returncode == 0 and "usage: allcores doctor" in p.stdout
