"""How functions, arguments, results and exceptions cross to and from workers.

A function importable by name travels by reference: its pickle is its module and qualified name,
which nothing can make stale, so it is made once per function and cached (and the worker caches
the function it names). Everything else travels by value and is pickled anew at every call:
callable objects, partials and bound methods (plain pickle), lambdas, closures and functions of
``__main__`` (cloudpickle); a change made to one between two calls is seen by the second, as with
the standard library. A function of ``__main__`` goes by name when the workers' own ``__main__``
holds that very function (see main_functions). Errors name the object that failed.
"""
from __future__ import annotations

import io
import pickle
import sys
import traceback
from types import BuiltinFunctionType, FunctionType, ModuleType
from typing import Any

from . import _oob
from ._protocol import PICKLE_PROTOCOL as PROTOCOL
from .errors import PicklingError, RemoteTraceback, TaskExit, UnpicklableTaskError

_dumps = pickle.dumps
loads = pickle.loads

# Pickles of functions sent by reference, keyed by id(fn) with the function kept alive beside its
# pickle so the id cannot be reused while cached. Only functions whose pickle is their name are
# here: nothing a program changes in them can make the pickle stale, and nothing big is held.
_FN_CACHE: dict[int, tuple[Any, bytes]] = {}
_FN_CACHE_MAX = 512
# Pickles naming a function of the workers' __main__, by qualified name (they hold only it).
_MAIN_REFS: dict[str, bytes] = {}


def describe(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__qualname__ + " instance"
    return repr(name) if isinstance(name, str) else repr(fn)


def cloudpickle():
    """The cloudpickle module (imported on first use: most programs never need it)."""
    import cloudpickle as module
    return module


def _by_value_needed(fn: Any) -> bool:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "") or ""
    return module == "__main__" or module is None or "<" in qualname


def _pickled_by_name(fn: Any) -> bool:
    """Whether plain pickle writes fn as a reference (module and qualified name) and nothing else:
    plain functions and classes, and builtins that are not methods bound to an object."""
    t = type(fn)
    if t is FunctionType or t is type:
        return True
    if t is BuiltinFunctionType:
        owner = fn.__self__
        return owner is None or isinstance(owner, ModuleType)
    return False


def main_functions() -> dict:
    """The functions and classes bound at the top level of __main__ now, by name. A process forked
    next finds each of them in its own __main__ under that name (a copy of this very object), so
    an engine that keeps this, taken just before it forks the process its workers come from, can
    send those by name."""
    main = sys.modules.get("__main__")
    if main is None:
        return {}
    return {name: obj for name, obj in list(vars(main).items())
            if type(obj) is FunctionType or type(obj) is type}


def _resolve_main(qualname: str):
    """In a worker: the function __main__.<qualname> (sent by name: see dumps_callable)."""
    obj = sys.modules.get("__main__")
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise AttributeError(
            f"function {qualname!r} of __main__ is no longer in the worker's __main__") from None
    return obj


class _MainFunction:
    __slots__ = ("qualname",)

    def __init__(self, qualname):
        self.qualname = qualname

    def __reduce__(self):
        return (_resolve_main, (self.qualname,))


class _NotInWorkers(Exception):
    pass


class _CheckedPickler(pickle.Pickler):
    """Plain pickle, refusing a function or class of __main__ that the workers do not hold under
    its name (defined or rebound after they were forked): pickle would write a name the worker
    cannot resolve, or resolves to another object."""

    def __init__(self, file, main_names):
        super().__init__(file, PROTOCOL)
        self.main_names = main_names

    def reducer_override(self, obj):
        if (type(obj) is FunctionType or isinstance(obj, type)) and \
                getattr(obj, "__module__", None) == "__main__" and \
                self.main_names.get(getattr(obj, "__qualname__", None)) is not obj:
            raise _NotInWorkers
        return NotImplemented


def _by_value_plain(fn: Any, main_names: dict) -> bytes | None:
    """fn's plain pickle when the workers can rebuild it, else None (cloudpickle is needed)."""
    buf = io.BytesIO()
    try:
        _CheckedPickler(buf, main_names).dump(fn)
    except Exception:
        return None
    return buf.getvalue()


def _by_value(fn: Any) -> bytes:
    try:
        return cloudpickle().dumps(fn, PROTOCOL)
    except Exception as exc:
        raise PicklingError(f"cannot send function {describe(fn)} to a worker: {exc}") from exc


def dumps_callable(fn: Any, main_names: dict | None = None):
    """What a task carries of fn: bytes when fn travels by reference (a worker may keep the
    function they name), or a 1-tuple holding its by-value pickle (unpickled afresh for every
    task, as the standard library does). main_names: functions of __main__ the workers hold under
    these names (main_functions()), or None. Raises PicklingError naming the function when it
    cannot travel."""
    hit = _FN_CACHE.get(id(fn))
    if hit is not None and hit[0] is fn:
        return hit[1]
    if not callable(fn):
        raise TypeError(f"{fn!r} is not callable")
    if _by_value_needed(fn):
        qualname = getattr(fn, "__qualname__", "") or ""
        if main_names is not None and main_names.get(qualname) is fn and \
                getattr(fn, "__module__", None) == "__main__":
            blob = _MAIN_REFS.get(qualname)
            if blob is None:
                if len(_MAIN_REFS) >= _FN_CACHE_MAX:
                    _MAIN_REFS.clear()
                blob = _MAIN_REFS[qualname] = _dumps(_MainFunction(qualname), PROTOCOL)
            return blob
    elif _pickled_by_name(fn):
        try:
            blob = _dumps(fn, PROTOCOL)
        except Exception:
            return (_by_value(fn),)
        if len(_FN_CACHE) >= _FN_CACHE_MAX:
            _FN_CACHE.clear()
        _FN_CACHE[id(fn)] = (fn, blob)
        return blob
    # Its state is in its pickle, and may change before the next call. Plain pickle is much
    # cheaper than cloudpickle (which writes classes of __main__ out whole) where it will do.
    if type(fn) is not FunctionType:
        try:
            blob = _dumps(fn, PROTOCOL)
        except Exception:
            blob = None
        if blob is not None and b"__main__" in blob:  # it names something of __main__
            blob = _by_value_plain(fn, _NO_NAMES if main_names is None else main_names)
        if blob is not None:
            return (blob,)
    return (_by_value(fn),)


_NO_NAMES: dict = {}


def _pickling_error(message: str, cause: BaseException) -> BaseException:
    """PicklingError(message) when pickle refused the object (TypeError, PicklingError); when
    the object's own __reduce__ or __getstate__ raised something else, that exception itself with
    message as a note: code written for the standard library catches what the pickler raised."""
    if isinstance(cause, (TypeError, pickle.PicklingError)):
        return PicklingError(message)
    cause.add_note(message)
    return cause


def _name_culprit(fn: Any, args: tuple, kwargs: dict | None, exc: BaseException) -> PicklingError:
    for i, a in enumerate(args):
        try:
            cloudpickle().dumps(a, PROTOCOL)
        except Exception as e:
            return _pickling_error(
                f"cannot send argument {i} ({type(a).__qualname__} object {short_repr(a)}) of task "
                f"{describe(fn)} to a worker: {e}", e)
    for k, v in (kwargs or {}).items():
        try:
            cloudpickle().dumps(v, PROTOCOL)
        except Exception as e:
            return _pickling_error(
                f"cannot send keyword argument {k!r} ({type(v).__qualname__} object "
                f"{short_repr(v)}) of task {describe(fn)} to a worker: {e}", e)
    return PicklingError(f"cannot send the arguments of task {describe(fn)} to a worker: {exc}")


def short_repr(obj: Any, limit: int = 80) -> str:
    """repr(obj), cut to limit characters, for error messages."""
    try:
        r = repr(obj)
    except Exception:
        r = object.__repr__(obj)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def dumps_call(fn_blob: bytes, fn: Any, args: tuple, kwargs: dict | None):
    """The payload of one call: (function pickle, args, kwargs); bytes, or a list of parts with
    big buffers out of band (see _oob)."""
    if _oob.wants_oob(args, kwargs):
        try:
            return _oob.dumps((fn_blob, args, kwargs))
        except Exception as exc:
            raise _name_culprit(fn, args, kwargs, exc) from exc
    try:
        return _dumps((fn_blob, args, kwargs), PROTOCOL)
    except Exception as exc:
        try:
            return cloudpickle().dumps((fn_blob, args, kwargs), PROTOCOL)
        except Exception:
            raise _name_culprit(fn, args, kwargs, exc) from exc


def dumps_chunk(fn_blob: bytes, fn: Any, items: list, star: bool):
    """The payload of a chunk of items to map fn over (big buffers out of band when its first
    item has one: a full scan would cost more than tiny items do)."""
    if items and _oob.wants_oob(items[0]):
        return _oob.dumps((fn_blob, items, star))
    try:
        return _dumps((fn_blob, items, star), PROTOCOL)
    except Exception as exc:
        try:
            return cloudpickle().dumps((fn_blob, items, star), PROTOCOL)
        except Exception:
            for i, item in enumerate(items):
                try:
                    cloudpickle().dumps(item, PROTOCOL)
                except Exception as e:
                    err = _pickling_error(
                        f"cannot send item {short_repr(item)} ({type(item).__qualname__}) of a map "
                        f"over {describe(fn)} to a worker: {e}", e)
                    raise err from (None if err is e else e)
            raise PicklingError(f"cannot send a chunk of a map over {describe(fn)}: {exc}") from exc


# --- exceptions -------------------------------------------------------------------------------

def dumps_exception(exc: BaseException, what: str) -> bytes:
    """A task's exception with the worker's traceback, in a form that always unpickles."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, SystemExit):
        exc = TaskExit(exc.code, what)
    try:
        blob = _dumps(exc, PROTOCOL)
        loads(blob)  # an exception that pickles but cannot be rebuilt is caught here, in the worker
        return _dumps((blob, tb, None), PROTOCOL)
    except Exception as why:
        reason = f"{type(why).__name__}: {why}"
        if isinstance(why, _TOO_BIG_OR_DEEP):
            # Its content is too deep or too big to pickle, not of a kind that cannot travel:
            # send its type with its message instead, saying what was left behind.
            blob = _rebuilt(exc, reason)
            if blob is not None:
                return _dumps((blob, tb, None), PROTOCOL)
            reason += f"; {type(exc).__qualname__} cannot be rebuilt from its message either"
        text = f"{type(exc).__module__}.{type(exc).__qualname__}: {short_repr(exc, 500)}"
        return _dumps((None, tb, (text, reason)), PROTOCOL)


# Pickling failures that come from an object's size or nesting depth, not its kind.
_TOO_BIG_OR_DEEP = (RecursionError, MemoryError, OverflowError)
_MESSAGE_MAX = 10_000


def _rebuilt(exc: BaseException, reason: str) -> bytes | None:
    """The pickle of type(exc)(its message), noting that the rest could not be sent; None when
    that type cannot be rebuilt from a message."""
    try:
        message = str(exc)
    except Exception:
        message = short_repr(exc, _MESSAGE_MAX)
    if len(message) > _MESSAGE_MAX:
        message = message[:_MESSAGE_MAX - 3] + "..."
    try:
        new = type(exc)(message)
        if hasattr(new, "add_note"):
            new.add_note(f"(sent back from the worker as its type and message only: the "
                         f"exception itself could not be pickled: {reason})")
        blob = _dumps(new, PROTOCOL)
        loads(blob)
        return blob
    except Exception:
        return None


def loads_exception(payload: bytes) -> BaseException:
    blob, tb, fallback = loads(payload)
    exc = None
    if blob is not None:
        try:
            exc = loads(blob)
        except Exception as why:
            fallback = (f"(exception of {len(blob)} bytes)", f"{type(why).__name__}: {why}")
    if exc is None:
        text, reason = fallback
        exc = UnpicklableTaskError(f"task raised {text}, which could not be sent back ({reason})")
    exc.__cause__ = RemoteTraceback('\n"""\n' + tb + '"""')
    return exc
