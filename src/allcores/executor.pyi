# Types of allcores.executor (the runtime module is executor.py).
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["ProcessPoolExecutor"]

_R = TypeVar("_R")
_P = ParamSpec("_P")

class ProcessPoolExecutor(Executor):
    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        task_timeout: float | None = None,
        backend: str = "process",
        arena_size: int | str | None = None,
        **backend_options: Any,
    ) -> None: ...
    def submit(self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_R]: ...
    def map(  # type: ignore[override]  # more keywords than Executor.map, and chunksize=None
        self,
        fn: Callable[..., _R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        buffersize: int | None = None,
        task_timeout: float | None = None,
        progress: bool | Mapping[str, Any] = False,
    ) -> Iterator[_R]: ...
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...
    def terminate_workers(self) -> None: ...
    def kill_workers(self) -> None: ...
    def __del__(self) -> None: ...
