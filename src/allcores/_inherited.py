"""What a pool's template process must not keep of the parent it was forked from.

Workers are forked from the template, itself forked from the parent at the pool's start, so
they inherit the parent's objects. Two kinds would hang or corrupt a task:
- multiprocessing's fork-aware objects (Manager proxies and their connections, ForkAwareLocal,
  queues): multiprocessing resets them in every child it forks (its after-fork hooks); without
  that, two workers talk to a Manager over the parent's one socket.
- loky's reusable executor (joblib's default backend), when the parent had one: its threads and
  processes are the parent's, so a task using joblib's loky backend waited for ever on it. The
  workers forget it, as a freshly started process has none, and start their own when asked.
"""
from __future__ import annotations

import sys
import threading

_LOKY_MODULES = ("loky.reusable_executor", "joblib.externals.loky.reusable_executor")


def forget_parent_state():
    """Called once in the template process, before it forks any worker."""
    import multiprocessing.util
    multiprocessing.util._run_after_forkers()
    for name in _LOKY_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            module._executor = None
            module._executor_kwargs = None
            module._executor_lock = threading.RLock()  # a parent thread may have held it
