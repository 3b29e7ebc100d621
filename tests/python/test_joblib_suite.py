"""joblib's own tests of Parallel (joblib/test/test_parallel.py of the installed joblib) on the
"allcores" backend.

The test module is loaded at run time, in a pytest run of its own (joblib's tests change
joblib's global state and start loky executors): from the installed joblib's test package, or
else from the source distribution of the same joblib version, fetched from PyPI once into
~/.cache/allcores-joblib-tests. Nothing of it is copied here. joblib_suite_plugin.py adds
"allcores" to every backend parametrization that admits a process backend, and the run keeps
the tests whose id names it. Each test has a time limit (a hang fails that test, the run goes
on). Interpreters the suite starts afresh (its `python -c` scripts, loky's workers) register
the backend as a program using it does, by importing allcores.joblib_backend (a sitecustomize
on their PYTHONPATH).

Every such test passes except EXPECTED_FAILURES. A long suite (budget.py): make test runs it on
the Pythons of AC_TEST_LONG_PYTHONS.
"""
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET

import pytest

from budget import long_suite

pytest.importorskip("joblib")

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.expanduser("~/.cache/allcores-joblib-tests")
PER_TEST_S = 60
RUN_LIMIT_S = 600

EXPECTED_FAILURES = {
    # A RecursionError raised that deep cannot be pickled back by the worker; it arrives as
    # UnpicklableTaskError (loky's worker crashes on it: joblib xfails the loky case).
    "test_thread_bomb_mitigation[allcores-parallel_config]":
        "the worker cannot pickle a RecursionError raised at the recursion limit",
    "test_thread_bomb_mitigation[allcores-parallel_backend]":
        "the worker cannot pickle a RecursionError raised at the recursion limit",
}


def _suite_path():
    """(PYTHONPATH entry or None, what to give pytest): joblib's test_parallel module."""
    if importlib.util.find_spec("joblib.test") is not None and \
            importlib.util.find_spec("joblib.test.test_parallel") is not None:
        return None, ["--pyargs", "joblib.test.test_parallel"]
    version = importlib.metadata.version("joblib")
    root = os.path.join(CACHE, f"joblib-{version}")
    if not os.path.isdir(os.path.join(root, "joblib", "test")):
        os.makedirs(CACHE, exist_ok=True)
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"joblib=={version}", "-d", CACHE], capture_output=True, text=True, timeout=300)
        archive = os.path.join(CACHE, f"joblib-{version}.tar.gz")
        if fetched.returncode != 0 or not os.path.exists(archive):
            pytest.skip(f"joblib {version}'s tests are not installed and its sdist could not be "
                        f"fetched: {fetched.stderr.strip()[-200:]}")
        with tarfile.open(archive) as tar:
            tar.extractall(CACHE, filter="data")
    return root, [os.path.join(root, "joblib", "test", "test_parallel.py")]


def _outcomes(junit):
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name")
        kinds = {child.tag for child in case}
        outcomes[name] = ("failed" if kinds & {"failure", "error"} else
                          "skipped" if "skipped" in kinds else "passed")
    return outcomes


@long_suite
@pytest.mark.timeout(RUN_LIMIT_S + 60)
def test_joblib_test_parallel_on_the_allcores_backend(tmp_path):
    root, target = _suite_path()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "try:\n    import allcores.joblib_backend\nexcept ImportError:\n    pass\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), HERE, root, env.get("PYTHONPATH")) if p)
    junit = tmp_path / "joblib.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-p", "joblib_suite_plugin", *target, "-k", "allcores",
           f"--timeout={PER_TEST_S}", "--timeout-method=signal", f"--junitxml={junit}"]
    try:
        run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"joblib's suite did not finish in {RUN_LIMIT_S} s:\n{exc.stdout}")
    assert junit.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    outcomes = _outcomes(junit)
    counts = {k: sum(1 for v in outcomes.values() if v == k) for k in ("passed", "failed",
                                                                        "skipped")}
    print(f"joblib {importlib.metadata.version('joblib')} test_parallel on allcores: {counts}")
    assert counts["passed"] > 100, run.stdout[-3000:]
    unexpected = sorted(n for n, v in outcomes.items() if v == "failed" and
                        n not in EXPECTED_FAILURES)
    assert not unexpected, "\n".join(unexpected) + "\n" + run.stdout[-6000:]
