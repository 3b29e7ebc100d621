"""Errors from tasks reach the caller as their own type, with their message and arguments, and the
worker's traceback as __cause__; bad input (unpicklable functions, arguments, results and
exceptions, sys.exit in a task, a failing initializer) gives a clear error and the pool goes on.

Tests taking `impl` run against allcores and the standard library; those taking `allcores_impl`
check what allcores does where the standard library fails, hangs or refuses.
"""
import functools
import pickle
import sys
import threading

import pytest

from helpers_tasks import (CannotRebuild, CustomError, fail_on, fail_on_many, ident, init_fail,
                           lock_at, raise_cannot_rebuild, raise_custom, raise_holding_lock,
                           raise_value_error, return_lock, square, call_sys_exit)


@pytest.fixture
def pool(impl):
    p = impl.pool(2)
    yield p
    p.terminate()
    p.join()


@pytest.fixture
def apool(allcores_impl):
    p = allcores_impl.pool(2)
    yield p
    p.terminate()
    p.join()


def _check_remote_traceback(exc, function_name):
    cause = exc.__cause__
    assert cause is not None, "the worker's traceback should be the exception's __cause__"
    text = str(cause)
    assert "Traceback (most recent call last)" in text
    assert function_name in text
    assert "helpers_tasks.py" in text


# -- a task's own exception -----------------------------------------------------------------------

def test_apply_reraises_type_message_and_cause(pool):
    with pytest.raises(ValueError) as info:
        pool.apply(raise_value_error, (5,))
    assert str(info.value) == "bad value 5"
    _check_remote_traceback(info.value, "raise_value_error")


def test_custom_exception_keeps_its_class_and_args(pool):
    with pytest.raises(CustomError) as info:
        pool.apply(raise_custom, ("first", 2, None))
    assert type(info.value) is CustomError
    assert info.value.args == ("first", 2, None)
    _check_remote_traceback(info.value, "raise_custom")


@pytest.mark.parametrize("func, exc_type", [
    (functools.partial(divmod, 1), ZeroDivisionError),
    (functools.partial(int, base=10), ValueError),
    ({}.__getitem__, KeyError),
])
def test_builtin_exceptions(pool, func, exc_type):
    bad = {ZeroDivisionError: 0, ValueError: "x", KeyError: "missing"}[exc_type]
    with pytest.raises(exc_type):
        pool.apply(func, (bad,))


def test_map_raises_the_failing_items_exception(pool):
    with pytest.raises(ValueError, match="item 7 is bad") as info:
        pool.map(functools.partial(fail_on, bad=7), range(20))
    _check_remote_traceback(info.value, "fail_on")
    assert pool.map(square, range(3)) == [0, 1, 4]  # the pool goes on


@pytest.mark.parametrize("chunksize", [1, 4])
def test_imap_raises_at_the_failing_position_and_goes_on(impl, pool, chunksize):
    if chunksize > 1 and impl.name == "stdlib":
        pytest.skip("multiprocessing's chunked imap ends at the first error: the chunk is lost")
    it = pool.imap(functools.partial(fail_on, bad=3), range(8), chunksize)
    got = []
    for _ in range(8):
        try:
            got.append(next(it))
        except ValueError as exc:
            got.append(str(exc))
    assert got == [0, 1, 4, "item 3 is bad", 16, 25, 36, 49]
    with pytest.raises(StopIteration):
        next(it)


def test_imap_unordered_delivers_errors_and_results(pool):
    it = pool.imap_unordered(functools.partial(fail_on_many, bad={2, 5}), range(8), 1)
    values, errors = [], []
    for _ in range(8):
        try:
            values.append(next(it))
        except KeyError as exc:
            errors.append(exc.args[0])
    assert sorted(values) == [0, 1, 3, 4, 6, 7]
    assert sorted(errors) == [2, 5]


def test_starmap_error(pool):
    with pytest.raises(CustomError):
        pool.starmap(raise_custom, [("a",), ("b",)])


def test_executor_reraises_type_message_and_cause(impl):
    with impl.executor(2) as ex:
        fut = ex.submit(raise_custom, "x", 1)
        with pytest.raises(CustomError) as info:
            fut.result(30)
        assert info.value.args == ("x", 1)
        _check_remote_traceback(info.value, "raise_custom")
        assert ex.submit(square, 4).result(30) == 16


# -- what cannot be pickled -----------------------------------------------------------------------

def test_unpicklable_argument_to_apply(pool):
    with pytest.raises(TypeError, match="lock"):
        pool.apply(ident, (threading.Lock(),))
    assert pool.apply(square, (3,)) == 9


def test_unpicklable_argument_in_map(pool):
    with pytest.raises(TypeError, match="lock"):
        pool.map(ident, [1, threading.Lock(), 3], 1)
    assert pool.map(square, [1, 2]) == [1, 4]


def test_unpicklable_argument_to_executor_submit(impl):
    with impl.executor(1) as ex:
        fut = ex.submit(ident, threading.Lock())
        with pytest.raises(TypeError, match="lock"):
            fut.result(30)
        assert ex.submit(square, 5).result(30) == 25


class _ReduceRaises:
    def __reduce__(self):
        raise RuntimeError("cannot pickle me")


def test_what_the_pickler_raised_is_raised(pool):
    """An object whose own pickling code raises (here RuntimeError from __reduce__) fails the
    call with that exception, as the standard library does, not with a pickling error."""
    with pytest.raises(RuntimeError, match="cannot pickle me"):
        pool.map(square, [1, _ReduceRaises(), 3], 1)
    with pytest.raises(RuntimeError, match="cannot pickle me"):
        pool.apply(ident, (_ReduceRaises(),))
    assert pool.map(square, [1, 2]) == [1, 4]


def test_what_the_pickler_raised_is_raised_by_the_executor(impl):
    with impl.executor(1) as ex:
        with pytest.raises(RuntimeError, match="cannot pickle me"):
            ex.submit(ident, _ReduceRaises()).result(30)
        assert ex.submit(square, 5).result(30) == 25


def test_unpicklable_result_names_it(pool):
    with pytest.raises(Exception, match="lock") as info:
        pool.apply(return_lock)
    assert pool.apply(square, (6,)) == 36


def test_unpicklable_result_is_maybe_encoding_error(pool):
    """multiprocessing.Pool raises MaybeEncodingError for a result it cannot send back."""
    from multiprocessing.pool import MaybeEncodingError
    with pytest.raises(MaybeEncodingError, match="lock") as info:
        pool.apply(return_lock)
    assert "lock" in info.value.value.lower() and info.value.exc
    assert pool.apply(square, (6,)) == 36


def test_unpicklable_result_in_executor(impl):
    with impl.executor(1) as ex:
        with pytest.raises(Exception, match="lock"):
            ex.submit(return_lock).result(30)
        assert ex.submit(square, 7).result(30) == 49


def test_unpicklable_result_fails_only_its_item_in_imap(apool):
    it = apool.imap(functools.partial(lock_at, bad=2), [1, 2, 3], 3)
    assert next(it) == 1
    with pytest.raises(Exception, match="lock"):
        next(it)
    assert next(it) == 3


# -- beyond the standard library ------------------------------------------------------------------

def test_exception_that_cannot_be_rebuilt(apool):
    """The stdlib's result thread dies unpickling it and the pool hangs; allcores reports it."""
    with pytest.raises(Exception) as info:
        apool.apply(raise_cannot_rebuild)
    text = str(info.value)
    assert "CannotRebuild" in text and "cannot rebuild me" in text
    assert not isinstance(info.value, CannotRebuild) or info.value.code == 7
    assert apool.apply(square, (8,)) == 64


def test_exception_that_cannot_be_pickled(apool):
    with pytest.raises(Exception, match="exception holding a lock") as info:
        apool.apply(raise_holding_lock)
    assert "RuntimeError" in str(info.value) or isinstance(info.value, RuntimeError)
    assert apool.map(square, [1, 2]) == [1, 4]


def test_unpicklable_exception_in_map(apool):
    it = apool.imap(_maybe_raise_cannot_rebuild, range(4), 1)
    assert next(it) == 0
    with pytest.raises(Exception, match="cannot rebuild me"):
        next(it)
    assert list(it) == [2, 3]


def _maybe_raise_cannot_rebuild(x):
    if x == 1:
        raise CannotRebuild("cannot rebuild me", 1)
    return x


@pytest.mark.parametrize("code", [0, 3, "a message"])
def test_sys_exit_in_a_task(apool, code):
    """multiprocessing's worker dies on SystemExit and the call hangs; allcores reports it and
    the pool goes on."""
    with pytest.raises((Exception, SystemExit)) as info:
        apool.apply(call_sys_exit, (code,))
    assert str(code) in str(info.value) or code in getattr(info.value, "args", ())
    assert apool.apply(square, (9,)) == 81


def test_sys_exit_in_an_executor_task_raises_system_exit(impl):
    """concurrent.futures raises the task's SystemExit from result(), with its code, and the
    executor goes on; an uncaught one ends the program with that code."""
    with impl.executor(1) as ex:
        with pytest.raises(SystemExit) as info:
            ex.submit(call_sys_exit, 3).result(30)
        assert info.value.code == 3
        assert ex.submit(square, 5).result(30) == 25


def test_task_exit_is_the_tasks_system_exit(apool):
    from allcores import TaskExit
    with pytest.raises(TaskExit) as info:
        apool.apply(call_sys_exit, ("bye",))
    assert isinstance(info.value, SystemExit) and info.value.code == "bye"
    assert "call_sys_exit" in str(info.value) and "sys.exit('bye')" in str(info.value)
    assert pickle.loads(pickle.dumps(info.value)).code == "bye"


def test_sys_exit_in_a_submitted_task(apool):
    fut = apool.submit(sys.exit, 4)
    with pytest.raises((Exception, SystemExit)) as info:
        fut.result(30)
    assert "4" in str(info.value)
    assert apool.submit(square, 2).result(30) == 4


def test_unpicklable_function_names_it(apool):
    lock = threading.Lock()
    with pytest.raises(TypeError, match="lock"):
        apool.apply(lambda: lock.locked())
    assert apool.apply(square, (2,)) == 4


def test_failing_pool_initializer_does_not_hang(allcores_impl):
    """multiprocessing.Pool restarts workers whose initializer fails, forever, and every call
    hangs; allcores must fail the call with the initializer's error instead."""
    pool = allcores_impl.pool(2, init_fail, ("no database",))
    try:
        with pytest.raises(Exception, match="no database"):
            pool.apply(square, (1,))
    finally:
        pool.terminate()
        pool.join()


def test_pickling_error_type(apool):
    """allcores' pickling errors are both pickle.PicklingError and TypeError, so code written
    for either the stdlib Pool (TypeError) or pickle (PicklingError) catches them."""
    with pytest.raises(pickle.PicklingError):
        apool.apply(ident, (threading.Lock(),))
