"""docs/reference.md names every public name of allcores and of its public modules, so a name
added to an __all__ without its reference entry fails here; and the signatures it states for the
main callables are the ones inspect.signature reads from the code."""
import importlib
import inspect
import pathlib
import re

import pytest

REFERENCE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "reference.md"
MODULES = ["allcores", "allcores.aio", "allcores.shared", "allcores.gil", "allcores.errors",
           "allcores.joblib_backend"]
NEEDS = {"allcores.joblib_backend": "joblib"}


@pytest.mark.parametrize("module", MODULES)
def test_reference_names_every_public_name(module):
    if module in NEEDS:
        pytest.importorskip(NEEDS[module])
    text = REFERENCE.read_text(encoding="utf-8")
    names = importlib.import_module(module).__all__
    # in code: `Name...`, `allcores.Name...`, `await aio.name(...)`
    missing = [name for name in names if not re.search(rf"`(?:[\w ]*\.)?{name}\b", text)]
    assert not missing, f"docs/reference.md lacks {module}: {missing}"


POOL, EXECUTOR = "### `allcores.Pool`", "### `allcores.ProcessPoolExecutor`"
DEFAULT, SHARED, AIO = "## The default pool", "## Shared memory", "## `allcores.aio`"
# (the object, the section of the reference that states its signature, the name written there)
SIGNATURES = [
    ("allcores.Pool", POOL, "Pool"),
    *[(f"allcores.Pool.{m}", POOL, m) for m in (
        "apply", "apply_async", "submit", "map", "map_async", "starmap", "imap", "close",
        "terminate", "join", "worker_pids")],
    ("allcores.ProcessPoolExecutor", EXECUTOR, "ProcessPoolExecutor"),
    *[(f"allcores.ProcessPoolExecutor.{m}", EXECUTOR, m) for m in ("submit", "map", "shutdown")],
    *[(f"allcores.{f}", DEFAULT, f"allcores.{f}") for f in (
        "default_pool", "map", "imap", "starmap", "submit")],
    ("allcores.gil.meter", "### `meter(", "meter"),
    *[(f"allcores.{name}", SHARED, name) for name in (
        "Counter", "Value", "Array", "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event",
        "Queue", "SharedBuffer", "shared_array")],
    *[(f"allcores.Counter.{m}", SHARED, f"c.{m}") for m in ("add", "exchange",
                                                             "compare_exchange")],
    *[(f"allcores.Queue.{m}", SHARED, m) for m in ("put", "get")],
    *[(f"allcores.aio.{f}", AIO, f"aio.{f}") for f in (
        "apply", "map", "starmap", "imap", "imap_unordered")],
]


def _section(text, heading):
    """The reference from the line starting with `heading` to the next heading of its level or
    above."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines))
                if re.match(rf"#{{1,{level}}} ", lines[i])), len(lines))
    return "\n".join(lines[start:end])


def _documented(section, name):
    """Every argument list written after `name(` in the section, whitespace collapsed."""
    out = []
    for m in re.finditer(rf"(?<![\w.]){re.escape(name)}\(", section):
        depth, i = 1, m.end()
        while depth and i < len(section):
            depth += {"(": 1, ")": -1}.get(section[i], 0)
            i += 1
        out.append(_normal(section[m.end() - 1:i]))
    return out


def _normal(text):
    return re.sub(r"\s+", " ", text).replace("'", '"').replace("( ", "(").replace(" )", ")")


class _Shown:
    """A default shown by its name (dtype=float), as the reference writes it."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def _actual(obj):
    """inspect.signature without annotations and without self, as the reference writes it."""
    sig = inspect.signature(obj)
    params = list(sig.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    params = [p.replace(annotation=p.empty,
                        default=_Shown(p.default.__name__) if isinstance(p.default, type)
                        and p.default is not p.empty else p.default) for p in params]
    return _normal(str(sig.replace(parameters=params, return_annotation=sig.empty)))


def _resolve(path):
    """allcores.Pool.map, allcores.gil.meter (the function, not its module): attributes first,
    a submodule where there is no such attribute."""
    obj = importlib.import_module(path.split(".")[0])
    for part in path.split(".")[1:]:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(f"{obj.__name__}.{part}")
    return obj


@pytest.mark.parametrize("path,heading,name", SIGNATURES, ids=[s[0] for s in SIGNATURES])
def test_reference_states_the_real_signature(path, heading, name):
    section = _section(REFERENCE.read_text(encoding="utf-8"), heading)
    actual = _actual(_resolve(path))
    documented = _documented(section, name)
    assert documented, f"docs/reference.md ({heading}) does not write {name}(...)"
    assert actual in documented, (f"docs/reference.md ({heading}) writes {name}"
                                  f"{' or '.join(documented)}; the code says {name}{actual}")


def test_the_joblib_backend_signature():
    pytest.importorskip("joblib")
    from allcores import joblib_backend
    section = _section(REFERENCE.read_text(encoding="utf-8"), "## `allcores.joblib_backend`")
    for name in ("register", "close_pools"):
        assert _actual(getattr(joblib_backend, name)) in _documented(section, name)
