"""The wire protocol between a pool's parent and its workers: the kind word of every message.

The numbers belong to the C core (include/allcores/protocol.h and region.h) and come from
allcores._core; this module names them for the Python side and is the only place that builds or
takes apart a kind word::

    kind = task_kind(TASK_CHUNK, track=True, oob=False)
    base, tracked, oob = base_of(kind), is_tracked(kind), is_oob(kind)
"""
from __future__ import annotations

import enum
from typing import NamedTuple

from . import _core

# Every payload is a pickle of this protocol: 5 carries buffers out of band (see _oob).
PICKLE_PROTOCOL = 5

KIND_MASK: int = _core.MSG_KIND_MASK
TRACK: int = _core.MSG_TRACK   # the worker records the task as its own (its death fails it)
OOB: int = _core.MSG_OOB       # the payload is an out-of-band frame, received without a copy

# A worker's exit status when it cannot map the arena segment holding its next task's payload
# (its address space is full): the parent fails that task with MemoryError, not WorkerLost.
EXIT_CANNOT_MAP = 71  # EX_OSERR

# Task kinds (parent -> worker).
TASK_CALL: int = _core.TASK_CALL      # payload: (fn pickle, args, kwargs)
TASK_CHUNK: int = _core.TASK_CHUNK    # payload: (fn pickle, items, star)

# Result kinds (worker -> parent).
RESULT_OK: int = _core.RESULT_OK              # payload: the pickled value
RESULT_ERR: int = _core.RESULT_ERR            # payload: dumps_exception(...)
RESULT_CHUNK: int = _core.RESULT_CHUNK        # payload: (values, {index: error}, elapsed_ns)
RESULT_INIT_ERR: int = _core.RESULT_INIT_ERR  # the initializer raised; payload as RESULT_ERR
# Never sent: a result this process could not read (aux: the errno, payload: None).
RESULT_UNREADABLE: int = _core.RESULT_UNREADABLE


class WorkerState(enum.IntEnum):
    """A worker slot's state in the shared region."""
    EMPTY = _core.WORKER_EMPTY        # no process
    SPAWN = _core.WORKER_SPAWN        # the parent asked the template for a process
    STARTING = _core.WORKER_STARTING  # forked; running its initializer
    IDLE = _core.WORKER_IDLE          # in its task loop (busy when it holds a task id)
    EXITED = _core.WORKER_EXITED      # reaped by the template; its wait status is valid


class WorkerSlot(NamedTuple):
    """A worker slot as the region holds it (Region.worker_state): read through worker_slot()."""
    state: WorkerState
    pid: int        # > 0 once forked (a process); 0 before, or for a thread
    gen: int        # incremented each time the slot gets a new worker
    tid: int        # the task it holds (taken, result not yet published); 0 for none
    started: int    # _core.now_ns() when it took that task
    done: int       # tasks it completed
    item: int       # the item of a tracked chunk it runs


def worker_slot(region, k: int) -> WorkerSlot:
    """Worker slot k of region, its state as a WorkerState."""
    s = region.worker_state(k)
    return WorkerSlot(WorkerState(s[0]), s[1], s[2], s[3], s[4], s[5], s[6])


def task_kind(base: int, *, track: bool = False, oob: bool = False) -> int:
    """The kind word of a message whose payload is `base` (TASK_* or RESULT_*)."""
    return base | (TRACK if track else 0) | (OOB if oob else 0)


def base_of(kind: int) -> int:
    return kind & KIND_MASK


def is_tracked(kind: int) -> bool:
    return bool(kind & TRACK)


def is_oob(kind: int) -> bool:
    return bool(kind & OOB)
