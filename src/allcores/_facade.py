"""What the two facades (Pool and ProcessPoolExecutor) share: starting a map job, the progress
bar of a map, the warning for a start method allcores does not use."""
from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

from . import _core


def start_job(job, engine, stopped=lambda: ValueError("Pool not running")):
    """Starts a map job; a pool that broke or stopped meanwhile says so in the public terms."""
    try:
        job.start()
    except _core.ClosedError:
        broken = engine.broken
        if broken is not None:
            raise BrokenProcessPool(str(broken)) from broken
        raise stopped() from None


def warn_start_method(context, stacklevel):
    """Warns when a program asks for spawn or forkserver workers, which allcores does not make."""
    try:
        method = context.get_start_method()
    except Exception:  # not a multiprocessing context: nothing was asked for
        return
    if method in ("spawn", "forkserver"):
        import warnings
        warnings.warn(
            f"allcores forks its workers from a template process made when the pool starts; the "
            f"{method!r} start method is not used: workers do not re-import __main__ and start "
            f"with the parent's modules and globals as they were when the pool was created",
            RuntimeWarning, stacklevel=stacklevel + 1)


def progress_bar(progress, total):
    """A tqdm bar for a map of `total` items when progress asks for one (True, or a dict of tqdm
    keywords), else None."""
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:  # pragma: no cover
        raise ImportError("progress=True needs tqdm: pip install tqdm") from exc
    kwargs = progress if isinstance(progress, dict) else {}
    return tqdm(total=total, **kwargs)
