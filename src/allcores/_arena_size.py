"""How much address space a process pool's shared region reserves, and the error when it cannot.

The region is one memfd mapped by the parent and every worker. Its arena (big arguments and
results in flight) is reserved address space: pages cost memory only once touched. Reserving is
free on most machines, but it counts against RLIMIT_AS (`ulimit -v`, batch schedulers that cap
virtual memory) in every process of the pool, so under such a limit the arena takes a share of
the room left, and the user can choose its size: Pool(arena_size=...) or ALLCORES_ARENA_SIZE.
"""
from __future__ import annotations

import os
import re
import resource

ENV = "ALLCORES_ARENA_SIZE"
# The smallest arena worth having: a few pages of big payloads in flight.
MIN_ARENA = 1 << 20
# Under RLIMIT_AS the arena takes at most this share of the room left: each process of the pool
# maps it, and each still needs room for its own heap, threads and libraries.
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
    ALLCORES_ARENA_SIZE if set, else default, cut to a share of the room RLIMIT_AS leaves."""
    if arena_size is not None:
        return parse_size(arena_size), "arena_size="
    env = os.environ.get(ENV)
    if env:
        return parse_size(env, ENV), ENV
    limit = address_space_limit()
    if limit is None:
        return default, "default"
    room = max(0, limit - address_space_used())
    share = max(MIN_ARENA, room // LIMIT_SHARE)
    if share < default:
        return share, "RLIMIT_AS"
    return default, "default"


def region_error(exc: BaseException, arena_bytes: int, source: str) -> MemoryError:
    """The error for a region that could not be reserved: what was asked, the limit that got in
    the way, and what to set."""
    limit = address_space_limit()
    why = (f"the address space limit (RLIMIT_AS, ulimit -v) is {limit} bytes and this process "
           f"already maps {address_space_used()}" if limit is not None else
           "the kernel refused the mapping although no address space limit is set")
    origin = {"arena_size=": "as asked by arena_size=", ENV: f"as asked by {ENV}"}.get(
        source, "chosen by default")
    return MemoryError(
        f"cannot reserve {arena_bytes} bytes of address space for the pool's shared arena "
        f"({origin}): {why}. Pass a smaller arena_size= to Pool or ProcessPoolExecutor (for "
        f"example arena_size='256M'), or set the environment variable {ENV}=256M; the arena "
        f"bounds the arguments and results in flight at once ({type(exc).__name__}: {exc})")
