"""allcores' types as a user's type checker sees them: the stubs match the runtime
(mypy.stubtest), a script using the API checks under `mypy --strict` with precise types (the
maps' results are list[R], futures and iterators typed), and so do the examples."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

from budget import tools_suite

pytest.importorskip("mypy")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mypy_config")


def _run(args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_stubs_match_the_runtime(tmp_path):
    out = _run(["mypy.stubtest", "--mypy-config-file", os.path.join(CONFIG, "mypy.ini"),
                "--allowlist", os.path.join(CONFIG, "stubtest-allowlist.txt"),
                "--ignore-unused-allowlist", "allcores"], cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


USER_SCRIPT = '''
import asyncio
from concurrent.futures import Future

import allcores
import allcores.aio


def square(x: int) -> int:
    return x * x


def label(x: int, y: str) -> str:
    return f"{y}{x}"


async def main(pool: allcores.Pool) -> None:
    reveal_type(await allcores.aio.map(pool, square, [1, 2]))
    reveal_type(await allcores.aio.apply(pool, label, 1, "a"))
    async for v in allcores.aio.imap(pool, square, range(3), progress=True):
        reveal_type(v)


with allcores.Pool(2, arena_size="64M") as pool:
    reveal_type(pool.map(square, range(10)))
    reveal_type(pool.imap_unordered(square, range(10)))
    reveal_type(pool.starmap(label, [(1, "a")]))
    reveal_type(pool.apply_async(square, (3,)).get(timeout=5))
    reveal_type(pool.submit(label, 1, "b"))
    reveal_type(pool.map_async(square, [1]).get())
    for value in pool.imap(square, [1, 2], progress={"desc": "squares"}):
        reveal_type(value)
    reveal_type(pool.worker_pids())
    asyncio.run(main(pool))

with allcores.ProcessPoolExecutor(2) as ex:
    reveal_type(ex.submit(square, 2))
    reveal_type(ex.map(square, [1, 2], progress=True))

reveal_type(allcores.map(square, [1]))
reveal_type(allcores.imap_unordered(square, [1]))
reveal_type(allcores.submit(square, 1))
counter = allcores.Counter()
counter += 1
reveal_type(counter.add(2))
q: allcores.Queue[str] = allcores.Queue(max_item_bytes=1000)
q.put("x")
reveal_type(q.get(timeout=1))
with allcores.Lock() as held:
    reveal_type(held)
reveal_type(allcores.__version__)
f: Future[int] = pool.submit(square, 3)
'''

EXPECTED = [
    "list[int]",                    # aio.map
    "str",                          # aio.apply
    "int",                          # async for over aio.imap
    "list[int]",                    # map
    "IMapIterator[int]",            # imap_unordered
    "list[str]",                    # starmap
    "int",                          # apply_async().get()
    "Future[str]",                  # submit
    "list[int]",                    # map_async().get()
    "int",                          # for over imap
    "list[int]",                    # worker_pids
    "Future[int]",                  # executor submit
    "Iterator[int]",                # executor map
    "list[int]",                    # allcores.map
    "IMapIterator[int]",            # allcores.imap_unordered
    "Future[int]",                  # allcores.submit
    "int",                          # Counter.add
    "str",                          # Queue[str].get
    "bool",                         # with Lock() as held
    "str",                          # __version__
]


def _short(type_name):
    """mypy's revealed type without module paths (their spelling varies between versions)."""
    return re.sub(r"\b[a-z_][\w]*\.", "", type_name)


@tools_suite
def test_a_user_script_is_precisely_typed(tmp_path):
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    out = _run(["mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(script)],
               cwd=tmp_path)
    revealed = [_short(line.split('Revealed type is "', 1)[1].rstrip('"'))
                for line in out.stdout.splitlines() if "Revealed type is" in line]
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert not errors, out.stdout
    assert revealed == EXPECTED, out.stdout


def test_a_type_error_is_caught(tmp_path):
    script = tmp_path / "wrong.py"
    script.write_text("import allcores\n\n\ndef square(x: int) -> int:\n    return x * x\n\n\n"
                      "with allcores.Pool(1) as pool:\n"
                      "    names: list[str] = pool.map(square, [1, 2])\n")
    out = _run(["mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(script)],
               cwd=tmp_path)
    assert out.returncode == 1 and "wrong.py:9: error:" in out.stdout, out.stdout
    assert '"map" of "Pool"' in out.stdout or 'variable has type "list[str]"' in out.stdout


@tools_suite
def test_examples_pass_mypy_strict(tmp_path):
    out = _run(["mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), "."],
               cwd=os.path.join(ROOT, "examples"))
    assert out.returncode == 0, out.stdout[-6000:]
