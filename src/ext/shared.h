/* shared.h: what the binding files of the shared-memory primitives (src/ext/shared_*.c) share.
 * Contract: a Segment object owns one process's mapping of a segment (shared_segment.h); every
 * primitive is a view at an offset of a Segment and keeps it alive. Their waits are acx_wait's
 * (binding.h), their errors ac_py_raise's. The acx__register_* functions add each file's types
 * to the module. */
#ifndef ALLCORES_EXT_SHARED_H
#define ALLCORES_EXT_SHARED_H

#include "binding.h"

#include <structmember.h>

#include "allcores/shared_segment.h"

typedef struct {
  PyObject_HEAD
  ac_seg seg;
  Py_ssize_t exports;  /* buffer views handed out */
  Py_ssize_t holds;    /* mutexes in it held by threads of this process */
  PyObject *weakrefs;
} SegmentObject;

/* The fields every view starts with. */
#define ACX_VIEW_HEAD \
  PyObject_HEAD       \
  SegmentObject *segment; \
  Py_ssize_t offset;

typedef struct {
  ACX_VIEW_HEAD
} ViewObject;

/* 1 when obj is a Segment (or an instance of a subclass), 0 otherwise. */
int acx__is_segment(PyObject *obj);

/* Parses (segment, offset) for a view of `size` bytes aligned to `align`; returns the address of
 * the view's memory, or NULL with an exception. */
char *acx__view_at(PyObject *segment, Py_ssize_t offset, size_t size, size_t align);
/* tp_new helper: allocates a view of type tp over (segment, offset). */
PyObject *acx__view_new(PyTypeObject *tp, PyObject *segment, Py_ssize_t offset);
void acx__view_dealloc(PyObject *op);
extern PyMemberDef acx__view_members[];

/* A mutex in the segment was locked (+1) or unlocked (-1) by this process: the segment stays
 * mapped while any is held, since glibc links held robust mutexes into the owner's list. */
void acx__segment_hold(SegmentObject *seg, int delta);

/* Converts a Python timeout to nanoseconds (-1: no limit). None means no limit; a negative number
 * means no limit too for acquire (threading's timeout=-1) and 0 for waits (threading.Event).
 * Returns -2 with an exception set when it is not a number. */
enum { ACX_NEGATIVE_FOREVER = 1, ACX_NEGATIVE_ZERO = 0 };
int64_t acx__timeout_ns(PyObject *timeout, int negative);

/* Parses acquire(block=True, timeout=None) (METH_FASTCALL | METH_KEYWORDS; `blocking` is
 * accepted for block, as in threading). Returns 0, or -1 with an exception set. */
int acx__parse_acquire(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int *block,
                       int64_t *timeout_ns);

int acx__register_segment(PyObject *m);
int acx__register_counter(PyObject *m);
int acx__register_mutex(PyObject *m);
int acx__register_semaphore(PyObject *m);
int acx__register_event(PyObject *m);
int acx__register_queue(PyObject *m);

#endif
