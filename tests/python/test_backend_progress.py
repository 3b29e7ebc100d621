"""progress=True on map, imap and starmap shows a tqdm bar with the count, the rate and the ETA,
on every backend (a dict of tqdm keywords, e.g. file=, customizes it)."""
import functools
import io
import re

import pytest

from backend_impls import any_backend  # noqa: F401 - fixture
from backend_tasks import add, fail_on, square

pytest.importorskip("tqdm")

# tqdm's default bar ends like " 20/20 [00:01<00:00, 17.52it/s]": elapsed<ETA, rate.
BAR_DONE = re.compile(r"(\d+)/(\d+) \[[0-9:]+<[0-9:?]+, +[0-9.?]+ ?(it/s|s/it)\]")


def _final_bar(text, total):
    bars = BAR_DONE.findall(text.replace("\r", "\n"))
    assert bars, f"no tqdm bar in {text!r}"
    done, of, _unit = bars[-1]
    assert (int(done), int(of)) == (total, total)
    return True


@pytest.fixture
def pool(any_backend):
    p = any_backend.pool(2)
    yield p
    p.terminate()
    p.join()


@pytest.mark.parametrize("method", ["map", "imap", "imap_unordered", "starmap"])
def test_progress_bar_shows_count_rate_and_eta(pool, method):
    out = io.StringIO()
    progress = {"file": out, "mininterval": 0, "desc": method}
    n = 40
    if method == "starmap":
        got = pool.starmap(add, [(i, i) for i in range(n)], progress=progress)
        assert got == [2 * i for i in range(n)]
    else:
        got = list(getattr(pool, method)(square, list(range(n)), progress=progress))
        assert sorted(got) == [i * i for i in range(n)]
    text = out.getvalue()
    assert text.startswith(method) or f"\r{method}" in text
    assert _final_bar(text, n)


def test_progress_true_writes_to_stderr(pool, capsys):
    assert pool.map(square, range(10), progress=True) == [i * i for i in range(10)]
    assert list(pool.imap(square, range(5), progress=True)) == [0, 1, 4, 9, 16]
    first, second = capsys.readouterr().err.rstrip("\n").split("\n")[-2:]
    assert _final_bar(first, 10) and _final_bar(second, 5)


def test_imap_of_a_generator_counts_without_a_total(pool):
    """No length, so no ETA: the bar counts and shows the rate."""
    out = io.StringIO()
    got = list(pool.imap(square, (i for i in range(12)), progress={"file": out, "mininterval": 0}))
    assert got == [i * i for i in range(12)]
    text = out.getvalue().replace("\r", "\n")
    assert re.search(r"12it \[[0-9:]+, +[0-9.?]+ ?(it/s|s/it)\]", text), text


def test_the_bar_closes_when_a_map_fails(pool):
    out = io.StringIO()
    with pytest.raises(ValueError, match="item 3 is bad"):
        pool.map(functools.partial(fail_on, bad=3), range(8), 1, progress={"file": out})
    assert out.getvalue().endswith("\n")  # tqdm ends its line when it closes
