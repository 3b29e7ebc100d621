"""How functions, arguments, results and exceptions cross to and from workers.

Functions importable by name travel by reference (plain pickle, a few dozen bytes); lambdas,
closures and functions of ``__main__`` travel by value through cloudpickle. A function's pickle is
cached per function object, so repeated tasks pay for it once. Errors name the object that failed.
"""
from __future__ import annotations

import pickle
import traceback
from typing import Any

from .errors import PicklingError, RemoteTraceback, TaskExit, UnpicklableTaskError

PROTOCOL = 5
_dumps = pickle.dumps
_loads = pickle.loads

# Function pickles, keyed by id(fn) with the function kept alive beside its pickle so the id
# cannot be reused while cached. Bounded: a program calling many distinct closures evicts old ones.
_FN_CACHE: dict[int, tuple[Any, bytes]] = {}
_FN_CACHE_MAX = 512


def describe(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__qualname__ + " instance"
    return repr(name) if isinstance(name, str) else repr(fn)


def _cloudpickle():
    import cloudpickle
    return cloudpickle


def _by_value_needed(fn: Any) -> bool:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "") or ""
    return module == "__main__" or module is None or "<" in qualname


def _resolve_main(qualname: str, by_value: bytes):
    """In a worker: the function __main__.<qualname> when the worker's __main__ has it (it was
    defined before the pool forked its template), so it shares __main__'s globals with the
    initializer and other tasks, as with multiprocessing; else the copy sent by value."""
    import sys
    obj = sys.modules.get("__main__")
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
        if callable(obj):
            return obj
    except AttributeError:
        pass
    return _loads(by_value)


class _MainFunction:
    __slots__ = ("qualname", "by_value")

    def __init__(self, qualname, by_value):
        self.qualname = qualname
        self.by_value = by_value

    def __reduce__(self):
        return (_resolve_main, (self.qualname, self.by_value))


def dumps_callable(fn: Any) -> bytes:
    """Pickles fn (cached). Raises PicklingError naming the function when it cannot travel."""
    hit = _FN_CACHE.get(id(fn))
    if hit is not None and hit[0] is fn:
        return hit[1]
    if not callable(fn):
        raise TypeError(f"{fn!r} is not callable")
    blob = None
    if not _by_value_needed(fn):
        try:
            blob = _dumps(fn, PROTOCOL)
        except Exception:
            blob = None
    if blob is None:
        try:
            blob = _cloudpickle().dumps(fn, PROTOCOL)
        except Exception as exc:
            raise PicklingError(f"cannot send function {describe(fn)} to a worker: {exc}") from exc
        qualname = getattr(fn, "__qualname__", "") or ""
        if getattr(fn, "__module__", None) == "__main__" and "<" not in qualname:
            blob = _dumps(_MainFunction(qualname, blob), PROTOCOL)
    if len(_FN_CACHE) >= _FN_CACHE_MAX:
        _FN_CACHE.clear()
    _FN_CACHE[id(fn)] = (fn, blob)
    return blob


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
            _cloudpickle().dumps(a, PROTOCOL)
        except Exception as e:
            return _pickling_error(
                f"cannot send argument {i} ({type(a).__qualname__} object {_short_repr(a)}) of task "
                f"{describe(fn)} to a worker: {e}", e)
    for k, v in (kwargs or {}).items():
        try:
            _cloudpickle().dumps(v, PROTOCOL)
        except Exception as e:
            return _pickling_error(
                f"cannot send keyword argument {k!r} ({type(v).__qualname__} object "
                f"{_short_repr(v)}) of task {describe(fn)} to a worker: {e}", e)
    return PicklingError(f"cannot send the arguments of task {describe(fn)} to a worker: {exc}")


def _short_repr(obj: Any, limit: int = 80) -> str:
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
            return _cloudpickle().dumps((fn_blob, args, kwargs), PROTOCOL)
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
            return _cloudpickle().dumps((fn_blob, items, star), PROTOCOL)
        except Exception:
            for i, item in enumerate(items):
                try:
                    _cloudpickle().dumps(item, PROTOCOL)
                except Exception as e:
                    err = _pickling_error(
                        f"cannot send item {_short_repr(item)} ({type(item).__qualname__}) of a map "
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
        _loads(blob)  # an exception that pickles but cannot be rebuilt is caught here, in the worker
        return _dumps((blob, tb, None), PROTOCOL)
    except Exception as why:
        text = f"{type(exc).__module__}.{type(exc).__qualname__}: {_short_repr(exc, 500)}"
        reason = f"{type(why).__name__}: {why}"
        return _dumps((None, tb, (text, reason)), PROTOCOL)


def loads_exception(payload: bytes) -> BaseException:
    blob, tb, fallback = _loads(payload)
    exc = None
    if blob is not None:
        try:
            exc = _loads(blob)
        except Exception as why:
            fallback = (f"(exception of {len(blob)} bytes)", f"{type(why).__name__}: {why}")
    if exc is None:
        text, reason = fallback
        exc = UnpicklableTaskError(f"task raised {text}, which could not be sent back ({reason})")
    exc.__cause__ = RemoteTraceback('\n"""\n' + tb + '"""')
    return exc


from . import _oob  # noqa: E402  (imports this module: keep it last)
