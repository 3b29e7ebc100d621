"""Whether this Python has a GIL to measure. A free-threaded build whose GIL is off has none:
the tests that check GIL figures (held, waiting, switches, the timeline's GIL lane) skip there."""
import sys

import pytest

GIL_OFF = not getattr(sys, "_is_gil_enabled", lambda: True)()

needs_gil = pytest.mark.skipif(GIL_OFF, reason="checks GIL figures: this free-threaded build "
                                               "runs without a GIL")
