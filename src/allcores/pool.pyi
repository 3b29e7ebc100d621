# Types of allcores.pool (the runtime module is pool.py).
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent.futures import Future
from typing import Any, Generic, NoReturn, ParamSpec, Self, TypeVar


__all__ = ["Pool", "ApplyResult", "AsyncResult", "MapResult", "IMapIterator"]

_T = TypeVar("_T")
_R = TypeVar("_R")
_P = ParamSpec("_P")

# progress=: True for a tqdm bar on stderr, or a dict of tqdm's keywords (file=, desc=...).
_Progress = bool | Mapping[str, Any]

RUN: str
CLOSE: str
TERMINATE: str

class ApplyResult(Generic[_R]):
    def __init__(
        self,
        future: Future[_R],
        callback: Callable[[_R], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> None: ...
    @property
    def future(self) -> Future[_R]: ...
    def ready(self) -> bool: ...
    def successful(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> None: ...
    def get(self, timeout: float | None = None) -> _R: ...
    def __await__(self) -> Generator[Any, None, _R]: ...

AsyncResult = ApplyResult

class MapResult(ApplyResult[list[_R]]):
    def __init__(
        self,
        engine: Any,
        callback: Callable[[list[_R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        progress: Any = None,
    ) -> None: ...

class IMapIterator(Generic[_R]):
    def __init__(self, engine: Any, ordered: bool, progress: Any = None) -> None: ...
    def __iter__(self) -> Self: ...
    def next(self, timeout: float | None = None) -> _R: ...
    def __next__(self, timeout: float | None = None) -> _R: ...

class Pool:
    _state: str
    _engine: Any
    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        *,
        backend: str = "process",
        task_timeout: float | None = None,
        arena_size: int | str | None = None,
        **backend_options: Any,
    ) -> None: ...
    def apply(
        self,
        func: Callable[..., _R],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = ...,
        *,
        task_timeout: float | None = None,
    ) -> _R: ...
    def apply_async(
        self,
        func: Callable[..., _R],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = ...,
        callback: Callable[[_R], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        task_timeout: float | None = None,
    ) -> ApplyResult[_R]: ...
    def submit(self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_R]: ...
    def map(
        self,
        func: Callable[[_T], _R],
        iterable: Iterable[_T],
        chunksize: int | None = None,
        progress: _Progress = False,
        *,
        task_timeout: float | None = None,
    ) -> list[_R]: ...
    def map_async(
        self,
        func: Callable[[_T], _R],
        iterable: Iterable[_T],
        chunksize: int | None = None,
        callback: Callable[[list[_R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        progress: _Progress = False,
        *,
        task_timeout: float | None = None,
    ) -> MapResult[_R]: ...
    def starmap(
        self,
        func: Callable[..., _R],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        progress: _Progress = False,
        *,
        task_timeout: float | None = None,
    ) -> list[_R]: ...
    def starmap_async(
        self,
        func: Callable[..., _R],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[list[_R]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        progress: _Progress = False,
        *,
        task_timeout: float | None = None,
    ) -> MapResult[_R]: ...
    def imap(
        self,
        func: Callable[[_T], _R],
        iterable: Iterable[_T],
        chunksize: int | None = None,
        progress: _Progress = False,
        *,
        task_timeout: float | None = None,
    ) -> IMapIterator[_R]: ...
    def imap_unordered(
        self,
        func: Callable[[_T], _R],
        iterable: Iterable[_T],
        chunksize: int | None = None,
        progress: _Progress = False,
        *,
        task_timeout: float | None = None,
    ) -> IMapIterator[_R]: ...
    def close(self) -> None: ...
    def terminate(self) -> None: ...
    def join(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
    def __reduce__(self) -> NoReturn: ...
    def __del__(self) -> None: ...
    @property
    def processes(self) -> int: ...
    def worker_pids(self) -> list[int]: ...

def running(pool: Pool) -> bool: ...
def usable(pool: Pool) -> bool: ...
def lazy_map(pool: Pool, fn: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None,
             ordered: bool, star: bool, progress: bool | Mapping[str, Any],
             iterator: type[IMapIterator[Any]]) -> IMapIterator[Any]: ...
