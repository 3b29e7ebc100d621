# Types of allcores.aio (the runtime module is aio.py).
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from typing import Any, ParamSpec, Self, TypeVar


from .pool import IMapIterator, Pool

__all__ = ["apply", "map", "starmap", "imap", "imap_unordered"]

_T = TypeVar("_T")
_R = TypeVar("_R")
_P = ParamSpec("_P")
_Progress = bool | Mapping[str, Any]

async def apply(pool: Pool | Executor, fn: Callable[_P, _R], /, *args: _P.args,
                **kwargs: _P.kwargs) -> _R: ...
async def map(pool: Pool, fn: Callable[[_T], _R], iterable: Iterable[_T],
              chunksize: int | None = None, progress: _Progress = False) -> list[_R]: ...
async def starmap(pool: Pool, fn: Callable[..., _R], iterable: Iterable[Iterable[Any]],
                  chunksize: int | None = None, progress: _Progress = False) -> list[_R]: ...

class AsyncIMapIterator(IMapIterator[_R]):
    def __init__(self, engine: Any, ordered: bool, progress: Any = None) -> None: ...
    def __aiter__(self) -> Self: ...
    async def __anext__(self) -> _R: ...
    async def aclose(self) -> None: ...

def imap(pool: Pool, fn: Callable[[_T], _R], iterable: Iterable[_T], chunksize: int | None = None,
         progress: _Progress = False) -> AsyncIMapIterator[_R]: ...
def imap_unordered(pool: Pool, fn: Callable[[_T], _R], iterable: Iterable[_T],
                   chunksize: int | None = None,
                   progress: _Progress = False) -> AsyncIMapIterator[_R]: ...
