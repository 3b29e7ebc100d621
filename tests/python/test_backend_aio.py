"""asyncio on every backend: pool results are awaitable and waiting for them never blocks the
event loop (the proof: the coroutine that opens the gate a task waits for runs while the task's
result is awaited)."""
import asyncio
import functools
import os
import time

import pytest

import allcores.aio
from backend_impls import any_backend  # noqa: F401 - fixture
from backend_tasks import square, started_then_nap
from helpers_tasks import add, gated_square, open_gate, raise_value_error, wait_for_file


def _needs_helpers(backend):
    from backend_impls import _helpers_unusable
    why = _helpers_unusable(backend.name)
    if why:
        pytest.skip(why)


@pytest.fixture
def pool(any_backend):
    _needs_helpers(any_backend)
    p = any_backend.pool(2)
    yield p
    p.terminate()
    p.join()


async def _open_later(gate, ticks):
    """Opens the gate after `ticks` turns of the event loop: only if the loop keeps running."""
    for _ in range(ticks):
        await asyncio.sleep(0.01)
    open_gate(gate)
    return ticks


def test_await_async_results(pool):
    async def main():
        a = await pool.apply_async(add, (2, 3))
        m = await pool.map_async(square, range(5))
        s = await pool.starmap_async(add, [(1, 2), (3, 4)])
        return a, m, s

    assert asyncio.run(main()) == (5, [0, 1, 4, 9, 16], [3, 7])


def test_await_wrapped_futures(pool):
    async def main():
        futs = [asyncio.wrap_future(pool.submit(square, i)) for i in range(10)]
        return await asyncio.gather(*futs)

    assert asyncio.run(main()) == [i * i for i in range(10)]


def test_waiting_never_blocks_the_loop(pool, gate):
    async def main():
        blocked = pool.apply_async(wait_for_file, (gate,))
        mapped = pool.map_async(functools.partial(gated_square, gate=gate), range(4), 1)
        opened = asyncio.ensure_future(_open_later(gate, 5))
        return await blocked, await mapped, await opened

    assert asyncio.run(main()) == (gate, [0, 1, 4, 9], 5)


def test_errors_propagate_through_await(pool):
    async def main():
        with pytest.raises(ValueError, match="bad value 1"):
            await pool.apply_async(raise_value_error, (1,))
        with pytest.raises(ValueError, match="bad value 2"):
            await asyncio.wrap_future(pool.submit(raise_value_error, 2))
        with pytest.raises(ValueError, match="bad value"):
            await pool.map_async(raise_value_error, [3])
        return True

    assert asyncio.run(main())


def test_aio_helpers(pool):
    async def main():
        a = await allcores.aio.apply(pool, add, 1, b=2)
        m = await allcores.aio.map(pool, square, range(4))
        s = await allcores.aio.starmap(pool, add, [(1, 1)])
        ordered = [x async for x in allcores.aio.imap(pool, square, range(50))]
        unordered = [x async for x in allcores.aio.imap_unordered(pool, square, range(50))]
        return a, m, s, ordered, sorted(unordered)

    squares = [x * x for x in range(50)]
    assert asyncio.run(main()) == (3, [0, 1, 4, 9], [2], squares, squares)


def test_async_imap_never_blocks_the_loop(pool, gate):
    async def main():
        opened = asyncio.ensure_future(_open_later(gate, 5))
        got = [x async for x in allcores.aio.imap(
            pool, functools.partial(gated_square, gate=gate), range(6), 1)]
        return got, await opened

    assert asyncio.run(main()) == ([x * x for x in range(6)], 5)


def test_async_imap_raises_at_the_failing_position(pool):
    from helpers_tasks import fail_on

    async def main():
        got = []
        it = allcores.aio.imap(pool, functools.partial(fail_on, bad=3), range(6), 1)
        with pytest.raises(ValueError, match="item 3 is bad"):
            async for x in it:
                got.append(x)
        return got

    assert asyncio.run(main()) == [0, 1, 4]


def test_async_imap_of_an_endless_input_can_be_abandoned(pool):
    import itertools

    async def main():
        it = allcores.aio.imap(pool, square, itertools.count())
        got = []
        async for x in it:
            got.append(x)
            if len(got) == 20:
                break
        await it.aclose()
        return got

    assert asyncio.run(main()) == [x * x for x in range(20)]
    assert pool.apply(square, (3,)) == 9


@pytest.mark.timeout(60)
def test_cancelling_an_awaited_map_stops_it(any_backend, tmp_path):
    """asyncio.wait_for(pool.map_async(...), t) that runs out cancels the map: no more of its
    items are sent, and dask takes back those it had queued. (A process, thread or interpreter
    pool still runs the chunks already on its task ring: at most a window of them, 64 here.)"""
    started = tmp_path / "started"
    started.mkdir()
    n = 2000  # 0.05 s each on 2 workers: 50 s if the map were not stopped
    task = functools.partial(started_then_nap, str(started), secs=0.05)

    async def main(pool):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.map_async(task, range(n), 1), 0.3)
        t0 = time.monotonic()
        assert await allcores.aio.apply(pool, square, 3) == 9
        return time.monotonic() - t0

    with any_backend.pool(2) as pool:
        waited = asyncio.run(main(pool))
        ran = len(os.listdir(started))
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
    assert len(os.listdir(started)) == ran  # nothing of the map ran after the next call
    if any_backend.name == "dask":
        assert waited < 1.0 and ran < 20, (waited, ran)
    else:
        assert waited < 10 and ran < 200, (waited, ran)


def test_run_in_executor(any_backend):
    _needs_helpers(any_backend)

    async def main(ex):
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(ex, square, i) for i in range(5)))

    with any_backend.executor(2) as ex:
        assert asyncio.run(main(ex)) == [0, 1, 4, 9, 16]
