"""The allcores command: --version, each command's --help, doctor's output paths checked before
the program runs and its exit status kept, bench and demo found from a checkout, and user-facing
text in the user's words."""
import importlib.metadata
import os
import re
import subprocess
import sys

import pytest

import allcores

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _allcores(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "allcores", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    out = _allcores(flag)
    assert out.returncode == 0 and out.stdout == f"allcores {allcores.__version__}\n"
    assert allcores.__version__ == importlib.metadata.version("allcores")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", allcores.__version__)


def test_help_lists_the_commands_and_version():
    out = _allcores("--help")
    assert out.returncode == 0
    for word in ("demo", "bench", "doctor", "info", "--version"):
        assert word in out.stdout


@pytest.mark.parametrize("cmd", ["bench", "demo"])
def test_checkout_tools_run_from_anywhere_in_a_checkout(cmd):
    out = _allcores(cmd, "--help", cwd=os.path.join(ROOT, "docs"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: allcores {cmd}")


@pytest.mark.parametrize("cmd", ["bench", "demo"])
def test_checkout_tools_elsewhere_say_they_need_a_checkout(cmd, tmp_path):
    out = _allcores(cmd, "--quick", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert f"allcores {cmd}: this command runs from a checkout" in out.stderr
    assert f"make {cmd}" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_info_help_prints_help_not_the_info():
    out = _allcores("info", "--help")
    assert out.returncode == 0
    assert out.stdout.startswith("usage: allcores info") and "backends process" not in out.stdout
    bad = _allcores("info", "--bogus")
    assert bad.returncode == 2 and "usage: allcores info" in bad.stderr


def test_info_shows_the_default_worker_count_and_its_source():
    from allcores._cpus import usable_cpus
    n, source = usable_cpus()
    out = _allcores("info").stdout
    assert f"cores    {n} usable, from {source}" in out
    assert f"workers  {n} by default" in out



def test_info_shows_how_far_the_arena_may_grow_and_the_largest_payload():
    out = _allcores("info").stdout
    assert re.search(r"^arena    up to [\d.]+ [GM]iB per pool \(half the RAM, at most 64 GiB\), "
                     r"mapped as payloads need it; one payload up to [\d.]+ [GM]iB$", out, re.M), out
    env = dict(os.environ, ALLCORES_ARENA_SIZE="256M")
    out = subprocess.run([sys.executable, "-m", "allcores", "info"], capture_output=True,
                         text=True, timeout=120, env=env).stdout
    assert ("arena    up to 256.0 MiB per pool (from ALLCORES_ARENA_SIZE), mapped as payloads "
            "need it; one payload up to 128.0 MiB") in out, out
    env["ALLCORES_ARENA_SIZE"] = "not-a-size"
    out = subprocess.run([sys.executable, "-m", "allcores", "info"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0 and "arena    a pool would not start here: " in out.stdout
    assert "ALLCORES_ARENA_SIZE" in out.stdout

def _program(tmp_path, status):
    script = tmp_path / "prog.py"
    marker = tmp_path / "ran"
    script.write_text(f"import pathlib, sys\npathlib.Path({str(marker)!r}).touch()\n"
                      f"sys.exit({status})\n")
    return str(script), marker


@pytest.mark.parametrize("option", ["--html", "--json", "--html=", "--json="])
def test_doctor_refuses_an_unwritable_report_before_running(tmp_path, option):
    script, marker = _program(tmp_path, 0)
    target = str(tmp_path / "no-such-folder" / "report.out")
    args = [option + target] if option.endswith("=") else [option, target]
    out = _allcores("doctor", *args, script)
    assert out.returncode == 2
    assert not marker.exists(), "the program ran although its report could not be written"
    assert "does not exist" in out.stderr and "no-such-folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_doctor_refuses_a_folder_as_report(tmp_path):
    script, marker = _program(tmp_path, 0)
    out = _allcores("doctor", "--json", str(tmp_path), script)
    assert out.returncode == 2 and not marker.exists() and "is a folder" in out.stderr


@pytest.mark.parametrize("status", [0, 3])
def test_doctor_exits_with_the_programs_status(tmp_path, status):
    script, marker = _program(tmp_path, status)
    report = tmp_path / "r.json"
    out = _allcores("doctor", "--json", str(report), script)
    assert marker.exists() and report.exists()
    assert out.returncode == status, out.stderr


FORBIDDEN = re.compile(r"seeds?'|issues?'s? bars?|\bissue \d|\bissue's\b|the brief\b",
                       re.IGNORECASE)


def _user_facing_files():
    yield os.path.join(ROOT, "README.md")
    for top in ("src", "docs", "examples"):
        for folder, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith((".py", ".pyi", ".md", ".c", ".h", ".html", ".txt")):
                    yield os.path.join(folder, name)


def test_user_facing_text_speaks_the_users_language():
    found = []
    for path in _user_facing_files():
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if FORBIDDEN.search(line):
                    found.append(f"{os.path.relpath(path, ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
