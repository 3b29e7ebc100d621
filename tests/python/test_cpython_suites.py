"""CPython's own process-pool tests, run against allcores.

The interpreter's standard-library test package provides test_concurrent_futures (its
process-pool classes) and _test_multiprocessing (its Pool classes); cpython_suites.py loads them,
substitutes allcores.ProcessPoolExecutor and allcores.Pool for the standard library's, and runs
them in a child interpreter. Each of their tests is one test here. A test that fails is allowed
only when cpython_suites.EXPECTED lists it with its reason.

The child runs each test under a watchdog (cpython_suites.PER_TEST_S) and the whole suite under
SUITE_S; a test that hangs is reported as a failure and the rest of the suite goes on in a new
child.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

import cpython_suites
from budget import long_suite_skip_reason

HERE = pathlib.Path(__file__).parent
RUNNER = str(HERE / "cpython_suites.py")
SUITE_S = 900  # a whole suite, restarts included: it takes 1-3 minutes on 2 busy cores
FIXTURES = "fixtures"


def _list(suite):
    why = long_suite_skip_reason() or cpython_suites.unavailable(suite)
    if why:
        return [pytest.param(None, marks=pytest.mark.skip(reason=why), id="unavailable")]
    out = subprocess.run([sys.executable, RUNNER, "list", suite], capture_output=True,
                         text=True, timeout=120, cwd=HERE)
    if out.returncode != 0:  # reported by the one test this gives
        return [pytest.param(f"!list: {out.stderr[-4000:]}", id="list")]
    # one more: what ran outside the tests (module and class set-up and clean-up)
    return [pytest.param(t, id=".".join(t.split(".")[-2:])) for t in out.stdout.split()] + \
        [pytest.param(FIXTURES, id="fixtures")]


def _run_suite(suite, workdir):
    """Runs SUITE in child interpreters until every test has an outcome; returns {id: record}."""
    out = workdir / "results.jsonl"
    skip = workdir / "skip.txt"
    deadline = time.monotonic() + SUITE_S
    records = {}
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        env = dict(os.environ, PYTHONFAULTHANDLER="1")
        with open(workdir / "child.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, RUNNER, "run", suite, str(out), str(skip)],
                                    cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env)
            try:
                rc = proc.wait(left)
            except subprocess.TimeoutExpired:
                rc = None
            # what the child's tests started (and a killed child's workers) must not outlive it
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        before = len(records)
        if out.exists():
            for line in out.read_text().splitlines():
                rec = json.loads(line)
                records[rec["id"]] = rec
        skip.write_text("\n".join(records))
        if rc == 0 or rc is None or len(records) == before:
            break  # finished, out of time, or a child that makes no progress
    records["__log__"] = (workdir / "child.log").read_text(errors="replace")[-8000:]
    return records


_results = {}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    def get(suite):
        if suite not in _results:
            d = tmp_path_factory.mktemp(f"cpython-{suite}")
            _results[suite] = _run_suite(suite, d)
        return _results[suite]
    return get


def _check(results, suite, test_id):
    if test_id.startswith("!list: "):
        pytest.fail("could not list the suite:\n" + test_id[7:])
    recs = results(suite)
    if test_id == FIXTURES:
        bad = [r for k, r in recs.items() if k.startswith(cpython_suites.FIXTURE)
               and r["outcome"] in ("error", "timeout")]
        if bad:
            pytest.fail("\n".join(f"{r['id']}: {r['outcome']}\n{r['detail']}" for r in bad),
                        pytrace=False)
        return
    rec = recs.get(test_id)
    reason = cpython_suites.expected_reason(test_id)
    if rec is None:
        pytest.fail(f"{test_id} never ran (the suite ran past {SUITE_S} s or its child died); "
                    f"the child's output ends:\n{recs['__log__']}")
    outcome, detail = rec["outcome"], rec["detail"]
    if outcome == "skipped":
        pytest.skip(detail)
    if outcome == "passed":
        if reason and not cpython_suites.may_pass(test_id):
            pytest.fail(f"{test_id} passes now: remove it from cpython_suites.EXPECTED")
        return
    if reason:
        pytest.xfail(reason)
    pytest.fail(f"{outcome}:\n{detail}", pytrace=False)


@pytest.mark.timeout(SUITE_S + 120)
@pytest.mark.parametrize("test_id", _list("futures"))
def test_concurrent_futures(results, test_id):
    _check(results, "futures", test_id)


@pytest.mark.timeout(SUITE_S + 120)
@pytest.mark.parametrize("test_id", _list("mp"))
def test_multiprocessing_pool(results, test_id):
    _check(results, "mp", test_id)
