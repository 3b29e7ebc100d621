"""allcores: make CPU-bound Python use every core.

    import allcores
    with allcores.Pool() as pool:              # drop-in for multiprocessing.Pool
        pool.map(fn, items)
    allcores.ProcessPoolExecutor()             # drop-in for concurrent.futures
    allcores.map(fn, items)                    # the process-wide default pool
"""
from ._default import default_pool, imap, map, starmap, submit  # noqa: A004
from .errors import (BrokenProcessPool, PicklingError, RemoteTraceback, ResultPicklingError,
                     TaskExit, TaskTimeout, UnpicklableTaskError, WorkerLost)
from .executor import ProcessPoolExecutor
from .pool import ApplyResult, AsyncResult, IMapIterator, MapResult, Pool

__version__ = "0.1.0"

__all__ = [
    "Pool", "ProcessPoolExecutor", "map", "imap", "starmap", "submit", "default_pool",
    "WorkerLost", "TaskTimeout", "TaskExit", "PicklingError", "ResultPicklingError",
    "UnpicklableTaskError", "RemoteTraceback", "BrokenProcessPool", "ApplyResult", "AsyncResult",
    "MapResult", "IMapIterator",
]

try:  # shared-memory primitives (issue 4), when built
    from .shared import *  # noqa: F401,F403
    from .shared import __all__ as _shared_all
    __all__ += list(_shared_all)
except ImportError:
    pass


def __getattr__(name):
    if name == "gil":
        import importlib
        return importlib.import_module(".gil", __name__)
    raise AttributeError(f"module 'allcores' has no attribute {name!r}")
