"""allcores: make CPU-bound Python use every core.

    import allcores
    with allcores.Pool() as pool:              # drop-in for multiprocessing.Pool
        pool.map(fn, items)
    allcores.ProcessPoolExecutor()             # drop-in for concurrent.futures
    allcores.map(fn, items)                    # the process-wide default pool
"""
import sys as _sys

if not _sys.platform.startswith("linux"):
    raise ImportError(f"allcores runs only on Linux (its shared-memory transport needs memfd, "
                      f"futexes and pidfds: kernel 5.3 or later), not on {_sys.platform!r}")

from ._default import default_pool, imap, imap_unordered, map, starmap, submit  # noqa: A004
from .errors import (BrokenProcessPool, PicklingError, RemoteTraceback, ResultPicklingError,
                     TaskExit, TaskTimeout, UnpicklableTaskError, WorkerLost)
from .executor import ProcessPoolExecutor
from .pool import ApplyResult, AsyncResult, IMapIterator, MapResult, Pool
from .shared import *  # noqa: F401,F403 - the shared-memory primitives
from .shared import __all__ as _shared_all

__all__ = [
    "Pool", "ProcessPoolExecutor", "map", "imap", "imap_unordered", "starmap", "submit",
    "default_pool",
    "WorkerLost", "TaskTimeout", "TaskExit", "PicklingError", "ResultPicklingError",
    "UnpicklableTaskError", "RemoteTraceback", "BrokenProcessPool", "ApplyResult", "AsyncResult",
    "MapResult", "IMapIterator",
] + list(_shared_all)



def _version():
    """The installed distribution's version: pyproject.toml is its one source."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("allcores")
    except PackageNotFoundError:  # imported from a build tree that was never installed
        return "0+unknown"


def __getattr__(name):
    if name == "__version__":
        global __version__
        __version__ = _version()
        return __version__
    if name == "gil":
        import importlib
        return importlib.import_module(".gil", __name__)
    raise AttributeError(f"module 'allcores' has no attribute {name!r}")
