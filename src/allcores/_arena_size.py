"""How big a pool's shared arena may grow, and the error when it cannot fit.

The region is one memfd mapped by the parent and every worker. Its arena (big arguments and
results in flight) is mapped in segments as payloads need them: each process maps the first
16 MiB up front and further segments the first time it meets a block in them, so its address
space grows with the payloads in flight, up to the arena's size. Pages cost memory only once
touched. The mappings count against RLIMIT_AS (`ulimit -v`, batch schedulers that cap virtual
memory) in every process of the pool, so under such a limit the arena may grow to a share of
the room left by default, never past the room itself, and the user can choose its size:
Pool(arena_size=...) or ALLCORES_ARENA_SIZE.
"""
from __future__ import annotations

import os
import re
import resource

ENV = "ALLCORES_ARENA_SIZE"
# The smallest arena worth having: a few pages of big payloads in flight.
MIN_ARENA = 1 << 20
# Under RLIMIT_AS the arena grows by default to at most this share of the room left: each process
# of the pool may map all of it, and each still needs room for its own heap, threads and
# libraries.
LIMIT_SHARE = 4

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: int | str, what: str = "arena_size") -> int:
    """Bytes from an int or a string such as "512M", "2G", "65536" (K, M, G, T: powers of 1024;
    a trailing B or iB is allowed)."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a number of bytes or a size such as '512M', not {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", value, re.IGNORECASE)
        if m is None:
            raise ValueError(f"{what} must be a number of bytes or a size such as '512M', "
                             f"not {value!r}")
        n = int(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        raise TypeError(f"{what} must be a number of bytes or a size such as '512M', not {value!r}")
    if n < MIN_ARENA:
        raise ValueError(f"{what} must be at least {MIN_ARENA} bytes (1M), not {value!r}")
    return n


def address_space_limit() -> int | None:
    """The soft RLIMIT_AS in bytes, or None when there is none."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def address_space_used() -> int:
    """This process's mapped address space (VSZ) in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def choose(arena_size: int | str | None, default: int) -> tuple[int, str]:
    """(bytes, where the figure came from) for a new pool's arena: arena_size if given, else
    ALLCORES_ARENA_SIZE if set, else default, cut to a share of the room RLIMIT_AS leaves.
    Raises MemoryError, saying what to set, for a size chosen by the user that the room left
    under RLIMIT_AS cannot hold: its payloads could never all be mapped."""
    if arena_size is not None or os.environ.get(ENV):
        if arena_size is not None:
            chosen, source = parse_size(arena_size), "arena_size="
        else:
            chosen, source = parse_size(os.environ[ENV], ENV), ENV
        limit = address_space_limit()
        if limit is not None and chosen > limit - address_space_used():
            raise region_error(None, chosen, source)
        return chosen, source
    limit = address_space_limit()
    if limit is None:
        return default, "default"
    room = max(0, limit - address_space_used())
    share = max(MIN_ARENA, room // LIMIT_SHARE)
    if share < default:
        return share, "RLIMIT_AS"
    return default, "default"


def _human(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def describe(default: int) -> str:
    """What `allcores info` says of the arena a pool started here would have: how far it may
    grow, where that figure comes from, and the largest single payload it carries."""
    from . import _core
    try:
        size, source = choose(None, default)
    except (ValueError, MemoryError) as exc:
        return f"a pool would not start here: {exc}"
    why = {"default": "half the RAM, at most 64 GiB", "RLIMIT_AS": "a quarter of the room left "
           "under the address space limit", ENV: f"from {ENV}"}[source]
    region = _core.Region(1, 2, 2, size)
    try:
        largest = region.max_payload
    finally:
        region.destroy()
    return (f"up to {_human(size)} per pool ({why}), mapped as payloads need it; one payload "
            f"up to {_human(largest)}")


def region_error(exc: BaseException | None, arena_bytes: int, source: str) -> MemoryError:
    """The error for an arena that does not fit in the address space: what was asked, the limit
    that got in the way, and what to set (exc: the failure of the mapping, if one failed)."""
    limit = address_space_limit()
    why = (f"the address space limit (RLIMIT_AS, ulimit -v) is {limit} bytes and this process "
           f"already maps {address_space_used()}" if limit is not None else
           "the kernel refused the mapping although no address space limit is set")
    origin = {"arena_size=": "as asked by arena_size=", ENV: f"as asked by {ENV}"}.get(
        source, "chosen by default")
    cause = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return MemoryError(
        f"the pool's shared arena of {arena_bytes} bytes ({origin}) does not fit in this "
        f"process's address space: {why}. Pass a smaller arena_size= to Pool or "
        f"ProcessPoolExecutor (for example arena_size='256M'), or set the environment variable "
        f"{ENV}=256M; the arena bounds the arguments and results in flight at once{cause}")


def unmappable_error(pid: int | None, what: str) -> MemoryError:
    """The error of a task whose payload a process could not map: the segment of the arena
    holding it did not fit in that process's address space (pid: the worker that could not map
    the arguments; None: this process could not map the result)."""
    limit = address_space_limit()
    where = (f"worker {pid} could not map the part of the pool's shared arena holding the "
             f"arguments of {what}" if pid is not None else
             f"this process could not map the part of the pool's shared arena holding the "
             f"result of {what}")
    tail = "; the worker was replaced" if pid is not None else ""
    return MemoryError(
        f"{where}: its address space is full (RLIMIT_AS, ulimit -v: "
        f"{'no limit here' if limit is None else f'{limit} bytes here'}). A smaller "
        f"arena_size= or {ENV} keeps the pool's payloads within it{tail}")
