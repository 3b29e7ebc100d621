"""Slow checks that do not depend on the Python version run on one Python under make test."""
import os
import sys

import pytest


def one_python_only():
    """Skips a slow check that does not depend on the Python version except on the one Python
    make test runs it on (AC_TEST_PACKAGING_PYTHON; unset, it runs everywhere)."""
    wanted = os.environ.get("AC_TEST_PACKAGING_PYTHON")
    here = "%d.%d" % sys.version_info[:2]
    if wanted and wanted != here:
        pytest.skip(f"make test runs this on Python {wanted} only (AC_TEST_PACKAGING_PYTHON)")
