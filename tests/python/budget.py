"""make test's time budget (30 minutes on 2 cores for every Python): the long suites (a peer's
own test suite run against allcores, and slow tests that check the same thing on every Python) run
on the Pythons named in AC_TEST_LONG_PYTHONS (the Makefile: the oldest and the newest); the others
run the core suite.
The tests of the repository's own tools (the bench, the demo, packaging, mypy on the stubs), which
check the same thing whatever Python runs them, run on the first of those Pythons only.
Unset, everything runs everywhere (a developer's own pytest run).

    from budget import long_suite, tools_suite
    pytestmark = long_suite          # a whole module
    @long_suite                      # or one test
    @tools_suite                     # a test of a repository tool
    why = long_suite_skip_reason()   # or a fixture, a parametrization: None where they run
"""
import os
import sys
import sysconfig

import pytest

#: This Python as the Makefile names it: "3.13", or "3.13t" for a free-threaded build.
PYTHON = "%d.%d" % sys.version_info[:2] + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else "")


def long_suite_skip_reason():
    """None where the long suites run, else why not."""
    wanted = _long_pythons()
    if not wanted or PYTHON in wanted:
        return None
    return (f"make test runs the long suites on Python {' and '.join(wanted)} only "
            f"(AC_TEST_LONG_PYTHONS), to keep within its time budget")


def _long_pythons():
    return os.environ.get("AC_TEST_LONG_PYTHONS", "").replace(",", " ").split()


def tools_suite_skip_reason():
    """None where the tests of the repository's tools run (the first long-suite Python), else why
    not."""
    wanted = _long_pythons()
    if not wanted or PYTHON == wanted[0]:
        return None
    return (f"make test runs the tests of the repository's tools (bench, demo, packaging, mypy) on "
            f"Python {wanted[0]} only: they check the same thing on every Python")


long_suite = pytest.mark.skipif(long_suite_skip_reason() is not None,
                                reason=long_suite_skip_reason() or "")
tools_suite = pytest.mark.skipif(tools_suite_skip_reason() is not None,
                                 reason=tools_suite_skip_reason() or "")
