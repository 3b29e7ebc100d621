"""What runs inside a backend="interpreter" worker's subinterpreter (the parent's side is
_backend_interpreter.py): _core.InterpWorker imports this module in the new interpreter and calls
sub_main(), which runs _worker.main on a view of the pool's shared region. Kept apart so that
each subinterpreter imports the worker loop only, not the parent's engine.
"""
from __future__ import annotations

import re

from . import _serialize as ser
from . import _worker as W
from ._protocol import RESULT_INIT_ERR

# What CPython says when an extension without per-interpreter GIL support is imported.
_REFUSED = re.compile(r"module (\S+) does not support loading in subinterpreters")


class SubinterpreterImportError(ImportError):
    """A module a task needs cannot be loaded in a subinterpreter (its C extension does not
    support a per-interpreter GIL); run such tasks with backend="process"."""


def sub_main(region, k, payload):
    """Runs worker slot k in the subinterpreter (called by InterpWorker.run); returns its exit
    code."""
    _explain_refused_imports()
    W.name_this_worker(k)
    try:
        initializer, initargs, maxtasks = ser.loads(payload)
    except BaseException as exc:  # noqa: B902 - the parent reports it as the initializer's failure
        region.send_result(k, 0, RESULT_INIT_ERR, k, ser.dumps_exception(exc, "initializer"))
        return W.EXIT_INIT_FAILED
    try:
        return W.main(region, k, initializer, initargs, maxtasks)
    except KeyboardInterrupt:
        # interrupt() meant for a task that had just finished: this worker ends (and is
        # replaced if the pool goes on); its task, if it had taken one, is accounted for.
        return 0


def _explain(exc):
    """exc, or a SubinterpreterImportError naming the module when exc (or what caused it) is
    CPython refusing an extension module in a subinterpreter."""
    seen = exc
    for _ in range(8):
        if seen is None:
            break
        m = _REFUSED.search(str(seen)) if isinstance(seen, ImportError) else None
        if m:
            module = m.group(1)
            top = module.split(".")[0]
            new = SubinterpreterImportError(
                f"{top} cannot be used in a subinterpreter: its extension module {module} does "
                f"not support loading in subinterpreters (a per-interpreter GIL needs every C "
                f"extension to declare support). Run tasks that need {top} with "
                f"backend='process'.", name=module)
            new.__cause__ = exc
            return new
        seen = seen.__cause__ or seen.__context__
    return exc


def _explain_refused_imports():
    # Patched in this interpreter's own copy of the module: the parent's is untouched.
    dumps_exception = ser.dumps_exception
    if getattr(dumps_exception, "_explains", False):
        return

    def explaining(exc, what):
        return dumps_exception(_explain(exc), what)

    explaining._explains = True
    ser.dumps_exception = explaining
