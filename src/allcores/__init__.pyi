# Types of the allcores package (the runtime module is __init__.py).
from . import gil as gil
from ._default import (default_pool as default_pool, imap as imap,
                       imap_unordered as imap_unordered, map as map, starmap as starmap,
                       submit as submit)
from .errors import (BrokenProcessPool as BrokenProcessPool, PicklingError as PicklingError,
                     RemoteTraceback as RemoteTraceback,
                     ResultPicklingError as ResultPicklingError, TaskExit as TaskExit,
                     TaskTimeout as TaskTimeout, UnpicklableTaskError as UnpicklableTaskError,
                     WorkerLost as WorkerLost)
from .executor import ProcessPoolExecutor as ProcessPoolExecutor
from .pool import (ApplyResult as ApplyResult, AsyncResult as AsyncResult,
                   IMapIterator as IMapIterator, MapResult as MapResult, Pool as Pool)
from .shared import (Array as Array, BoundedSemaphore as BoundedSemaphore, Counter as Counter,
                     Event as Event, Lock as Lock, OwnerDiedWarning as OwnerDiedWarning,
                     Queue as Queue, RLock as RLock, Semaphore as Semaphore,
                     SharedBuffer as SharedBuffer, Value as Value, shared_array as shared_array)

__version__: str
__all__ = [
    "Pool", "ProcessPoolExecutor", "map", "imap", "imap_unordered", "starmap", "submit",
    "default_pool",
    "WorkerLost", "TaskTimeout", "TaskExit", "PicklingError", "ResultPicklingError",
    "UnpicklableTaskError", "RemoteTraceback", "BrokenProcessPool", "ApplyResult", "AsyncResult",
    "MapResult", "IMapIterator",
    "Counter", "Value", "Array", "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event",
    "Queue", "SharedBuffer", "shared_array", "OwnerDiedWarning",
]
