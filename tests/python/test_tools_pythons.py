"""tools/find-python, tools/get-python and `make test`'s handling of a Python the machine lacks.
find-python never takes a free-threaded build for X.Y (nor the reverse); get-python refuses
what it has no recipe for, says which step failed when the archive refuses, and returns at once
with the interpreter it already made; make test names a missing Python and how to get it."""
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
CACHE = pathlib.Path(os.environ.get("ALLCORES_PYTHON_CACHE",
                                    pathlib.Path.home() / ".cache" / "allcores-python"))
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
HERE = "%d.%d" % sys.version_info[:2] + ("t" if FREE_THREADED else "")


def run(cmd, env=None, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})), **kw)


def _is_free_threaded(python):
    out = run([python, "-c", "import sysconfig; print(bool(sysconfig.get_config_var("
                             "'Py_GIL_DISABLED')))"])
    return out.stdout.strip() == "True"


def test_find_python_finds_this_python():
    out = run([TOOLS / "find-python", HERE])
    assert out.returncode == 0
    assert _is_free_threaded(out.stdout.strip()) is FREE_THREADED


def _a_free_threaded_python():
    for c in (CACHE / "3.13t" / "bin" / "python3.13t", shutil.which("python3.13t")):
        if c and os.access(c, os.X_OK):
            return str(c)
    return None


def test_find_python_never_takes_a_free_threaded_build_for_3_13(tmp_path):
    """A 3.13t first on PATH, even under the name python3.13, is not 3.13."""
    ft = _a_free_threaded_python()
    if ft is None:
        pytest.skip("no free-threaded 3.13 here (tools/get-python 3.13t provides one)")
    (tmp_path / "python3.13").symlink_to(ft)
    (tmp_path / "python3.13t").symlink_to(ft)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    plain = run([TOOLS / "find-python", "3.13"], env=env)
    if plain.returncode == 0:
        assert not _is_free_threaded(plain.stdout.strip())
    free = run([TOOLS / "find-python", "3.13t"], env=env)
    assert free.returncode == 0 and _is_free_threaded(free.stdout.strip())


def test_find_python_fails_for_a_python_that_is_nowhere(tmp_path):
    out = run([TOOLS / "find-python", "3.99"], env={"ALLCORES_PYTHON_CACHE": str(tmp_path)})
    assert out.returncode == 1 and out.stdout == ""


def test_get_python_refuses_a_version_it_has_no_recipe_for(tmp_path):
    out = run([TOOLS / "get-python", "3.99"], env={"ALLCORES_PYTHON_CACHE": str(tmp_path)})
    assert out.returncode == 2
    assert "no recipe for Python '3.99'" in out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("patchelf") is None, reason="needs patchelf")
def test_get_python_says_which_step_failed_when_the_archive_refuses(tmp_path):
    """An apt-get that fails (here a stand-in on PATH): the step, the log, and its last lines."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-get").write_text("#!/bin/sh\necho 'E: The repository refused us' >&2\nexit 100\n")
    (fake / "apt-get").chmod(0o755)
    cache = tmp_path / "cache"
    out = run([TOOLS / "get-python", "3.15"],
              env={"ALLCORES_PYTHON_CACHE": str(cache), "PATH": f"{fake}:{os.environ['PATH']}"})
    assert out.returncode == 1
    assert "get-python 3.15: apt-get update of the private trixie/sid sources failed" in out.stderr
    assert "E: The repository refused us" in out.stderr
    assert not (cache / "3.15" / ".done").exists()


@pytest.mark.parametrize("version", ["3.14", "3.15", "3.13t"])
def test_get_python_returns_the_interpreter_it_already_made(version):
    """The second call touches nothing: no log written, no apt, the same path."""
    if not (CACHE / version / ".done").exists():
        pytest.skip(f"tools/get-python {version} has not been run on this machine")
    log = CACHE / f"{version}.log"
    before = log.stat().st_mtime_ns if log.exists() else None
    out = run([TOOLS / "get-python", version])
    assert out.returncode == 0, out.stderr
    python = out.stdout.strip()
    found = run([TOOLS / "find-python", version]).stdout.strip()
    assert os.path.realpath(python) == os.path.realpath(found)
    assert (log.stat().st_mtime_ns if log.exists() else None) == before
    assert _is_free_threaded(python) is version.endswith("t")


def test_make_test_names_a_missing_python_and_how_to_get_it():
    out = run(["make", "-s", "--no-print-directory", "pythons", "PYTHONS=3.99 " + HERE], cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "make test: skipping Python 3.99, not on this machine (tools/get-python 3.99 provides it)"]
