"""Pool's synchronous calls: map, starmap, imap, imap_unordered, apply.

Each test runs against allcores.Pool and multiprocessing.Pool (fork): results, ordering and
argument passing must be the same.
"""
import functools
import itertools

import pytest

from helpers_tasks import (Point, add, add3, add_one_in_place, describe, gated_square,
                           ident, kwargs_echo, length, make_bytes, move, open_gate, pid_of,
                           sleep_pid, square, zeros)


@pytest.fixture
def pool(impl):
    p = impl.pool(2)
    yield p
    p.terminate()
    p.join()


@pytest.mark.parametrize("chunksize", [None, 1, 3, 1000])
def test_map_keeps_input_order(pool, chunksize):
    assert pool.map(square, range(50), chunksize) == [x * x for x in range(50)]


def test_map_returns_a_list(pool):
    result = pool.map(ident, (1, 2, 3))
    assert type(result) is list and result == [1, 2, 3]


def test_map_of_empty_input(pool):
    assert pool.map(square, []) == []
    assert pool.starmap(add, []) == []
    assert list(pool.imap(square, [])) == []
    assert list(pool.imap_unordered(square, [])) == []


def test_map_takes_any_iterable(pool):
    assert pool.map(square, (x for x in range(7))) == [x * x for x in range(7)]
    assert pool.map(square, {3: "a", 1: "b"}) == [9, 1]
    assert pool.map(len, ["a", "bb", "ccc"]) == [1, 2, 3]  # a builtin travels too


def test_map_with_partial(pool):
    assert pool.map(functools.partial(add, 10), range(4)) == [10, 11, 12, 13]


def test_ten_thousand_tiny_tasks(pool):
    n = 10_000
    assert pool.map(square, range(n)) == [x * x for x in range(n)]
    assert sum(pool.imap(square, range(n), 50)) == sum(x * x for x in range(n))


def test_starmap_unpacks_each_item(pool):
    assert pool.starmap(add, [(1, 2), (3, 4), ("a", "b")]) == [3, 7, "ab"]
    assert pool.starmap(add3, [(1, 2), (1, 2, 3)]) == [3, 6]
    assert pool.starmap(add, zip(range(5), range(5, 10)), 2) == [5, 7, 9, 11, 13]


def test_starmap_with_wrong_arity_raises_type_error(pool):
    with pytest.raises(TypeError):
        pool.starmap(add, [(1, 2), (1,)])
    assert pool.starmap(add, [(1, 2)]) == [3]


def test_apply_with_args_and_kwds(pool):
    assert pool.apply(add, (2, 3)) == 5
    assert pool.apply(add3, (1, 2), {"c": 10}) == 13
    assert pool.apply(kwargs_echo, (1, "two"), {"k": [3], "v": None}) == \
        ((1, "two"), {"k": [3], "v": None})
    assert pool.apply(int) == 0  # a call with no arguments


def test_apply_runs_in_another_process(pool):
    import os
    assert pool.apply(pid_of) != os.getpid()


def test_imap_yields_in_order(pool):
    it = pool.imap(square, range(20))
    assert iter(it) is it
    assert list(it) == [x * x for x in range(20)]
    assert list(pool.imap(square, range(20), chunksize=4)) == [x * x for x in range(20)]


def test_imap_next_and_stop_iteration(pool):
    it = pool.imap(square, [3, 4])
    assert next(it) == 9
    assert it.next() == 16
    with pytest.raises(StopIteration):
        next(it)


def test_imap_results_arrive_before_the_input_is_done(pool, gate):
    """The first results of imap can be consumed while later items are still blocked."""
    it = pool.imap(functools.partial(gated_square, gate=gate), range(4), 1)
    assert next(it) == 0
    assert next(it) == 1
    open_gate(gate)
    assert list(it) == [4, 9]


def test_imap_unordered_yields_every_result_once(pool):
    n = 300
    got = list(pool.imap_unordered(square, range(n)))
    assert sorted(got) == [x * x for x in range(n)]
    got = list(pool.imap_unordered(square, range(n), chunksize=7))
    assert sorted(got) == [x * x for x in range(n)]


def test_imap_unordered_yields_fast_results_first(pool, gate):
    it = pool.imap_unordered(functools.partial(gated_square, gate=gate), [5, 0, 1], 1)
    first_two = {next(it), next(it)}
    assert first_two == {0, 1}
    open_gate(gate)
    assert next(it) == 25


def test_imap_on_an_infinite_iterator_can_be_abandoned(impl, pool):
    if impl.name == "stdlib":
        pytest.skip("multiprocessing.Pool.imap consumes its whole input first (gh-74028)")
    it = pool.imap(square, itertools.count())
    assert [next(it) for _ in range(10)] == [x * x for x in range(10)]


def test_nested_data_round_trips(pool):
    data = [
        {"a": [1, 2, (3, 4)], "b": {"c": {"d": None}}},
        ([], {}, (), set(), frozenset({1})),
        (1.5, -0, 2**100, 3 + 4j, True, "ünïcode", b"\x00bytes", bytearray(b"ba")),
        Point(1, 2.5, ("t",)),
        [[[[[]]]]],
    ]
    assert pool.map(ident, data) == data
    assert pool.map(describe, data) == [repr(d) for d in data]
    assert pool.apply(move, (Point(1, 0.5), 2)) == Point(3, 0.5, ("moved",))


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 65537, 3 * 2**20 + 1])
def test_results_of_many_sizes(pool, size):
    assert pool.apply(make_bytes, (size,)) == b"\xab" * size
    assert pool.map(make_bytes, [size, 1, size]) == [b"\xab" * size, b"\xab", b"\xab" * size]


def test_large_arguments(pool):
    big = bytes(range(256)) * 8192  # 2 MiB
    assert pool.apply(length, (big,)) == len(big)
    assert pool.map(ident, [big, b"small", big]) == [big, b"small", big]
    text = "x" * (2**20 + 3)
    assert pool.apply(ident, (text,)) == text


def test_long_tasks_are_spread_over_the_workers(pool):
    """With chunksize=None, a few slow tasks are not batched into one worker."""
    pids = pool.map(sleep_pid, [0.3] * 6)
    assert len(set(pids)) == 2


def test_many_tiny_tasks_are_batched(impl):
    """With chunksize=None tiny tasks travel in batches: with maxtasksperchild=1 (a worker per
    task or batch) far fewer workers are used than there are tasks."""
    with impl.pool(2, maxtasksperchild=1) as pool:
        pids = pool.map(pid_of, range(2000))
    assert len(pids) == 2000
    assert len(set(pids)) < 200


@pytest.mark.parametrize("n", [10, 2**20])
def test_numpy_arrays_are_writable_on_both_sides(pool, n):
    """Tasks that modify a numpy argument in place, and callers that modify a numpy result,
    work with multiprocessing whatever the array's size."""
    np = pytest.importorskip("numpy")
    assert pool.apply(add_one_in_place, (np.zeros(n),)) == float(n)
    result = pool.apply(zeros, (n,))
    assert result.flags.writeable
    result += 2
    assert float(result.sum()) == 2.0 * n
    for r in pool.map(zeros, [n, 3]):
        r[0] = 1.0


def test_bytearray_results_stay_mutable(pool):
    big = pool.apply(bytearray, (3 * 2**20,))
    small = pool.apply(bytearray, (b"ab",))
    assert type(big) is bytearray and type(small) is bytearray
    big[0] = 1
    small[0] = 1
    from helpers_tasks import mutate
    for n in (3, 3 * 2**20):
        assert pool.apply(mutate, (bytearray(n),)) == ("bytearray", 7, n)


def test_calls_from_several_threads_at_once(pool):
    """Several threads of the caller share one pool (a common web-server pattern)."""
    import threading
    errors = []

    def work(k):
        try:
            for i in range(15):
                assert pool.map(square, range(k, k + 50)) == [x * x for x in range(k, k + 50)]
                assert pool.apply(add, (k, i)) == k + i
                assert list(pool.imap(square, [k, i], 1)) == [k * k, i * i]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(50)
    assert not any(t.is_alive() for t in threads), "a caller thread hung"
    assert errors == []


def test_imap_with_an_input_that_raises(pool):
    """The input's own exception comes out of imap after the results before it."""
    def gen():
        yield 1
        yield 2
        raise RuntimeError("input broke")

    out = []
    with pytest.raises(RuntimeError, match="input broke"):
        for value in pool.imap(square, gen(), 1):
            out.append(value)
    assert out == [1, 4]
    assert pool.map(square, [3]) == [9]


def test_mixed_payload_sizes_from_several_threads(pool):
    """Small and large arguments and results at once, from four caller threads: every byte
    arrives where it belongs."""
    import random
    import threading
    from helpers_tasks import digest, echo_pattern, pattern
    sizes = [0, 1, 100, 5000, 70_000, 1_200_000]
    errors = []

    def work(k):
        rng = random.Random(k)
        try:
            jobs = []
            for i in range(12):
                n_in, n_out = rng.choice(sizes), rng.choice(sizes)
                data = pattern(n_in, i + k)
                jobs.append((digest(data), n_out, i,
                             pool.apply_async(echo_pattern, (data, n_out, i))))
            for want_digest, n_out, i, r in jobs:
                got_digest, out = r.get(30)
                assert got_digest == want_digest
                assert out == pattern(n_out, i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(50)
    assert errors == []


def _arrays(np):
    big = np.arange(300_000, dtype=np.float64).reshape(600, 500)
    return [
        np.arange(10, dtype=np.int32),
        big,
        big[::2, ::3],                       # not contiguous
        np.asfortranarray(big),              # Fortran order
        big.T,
        np.zeros((0, 7)),
        np.array(3.5),                       # 0-d
        np.ones(2_000_000, dtype=bool),
        np.array([(1, 2.0), (3, 4.0)] * 100_000, dtype=[("a", "i4"), ("b", "f8")]),
        np.array(["x", None, 3] * 10, dtype=object),
        np.arange(1_000_000, dtype=np.complex64),
    ]


def test_numpy_arrays_keep_shape_dtype_order_and_values(pool):
    np = pytest.importorskip("numpy")
    from helpers_tasks import array_roundtrip, describe_array
    arrays = _arrays(np)
    seen = pool.map(describe_array, arrays, 1)
    assert seen == [describe_array(a) for a in arrays]
    back = pool.map(array_roundtrip, arrays, 1)
    for a, b in zip(arrays, back):
        assert describe_array(b) == describe_array(a)
        assert np.array_equal(a, b)
