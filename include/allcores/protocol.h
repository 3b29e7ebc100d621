/* protocol.h: the wire protocol between a pool's parent and its workers, the one owner of its
 * numbers. A message on the task or result ring (ring.h) carries a 32-bit kind word:
 *
 *     bits 0-7   what the payload is: AC_TASK_* on the task ring, AC_RESULT_* on the result ring
 *     bit  8     AC_MSG_TRACK: the worker records the task as its own in the region (region.h),
 *                so that its death fails exactly that task; untracked work is a map's chunk that
 *                the parent accounts for itself
 *     bit  9     AC_MSG_OOB: the payload is an out-of-band frame (oob_frame.h), received as a
 *                zero-copy view of its arena block instead of a copy
 *     bit 10     AC_MSG_SEG: the inline payload is a reference (ac_seg_ref, shared_segment.h) to
 *                a segment of its own that holds the real payload, which the arena had no room
 *                for (ac_region_send); the receiver copies it out and never sees the bit
 *
 * Contract: the binding exports every value here to Python (allcores._core, read by
 * allcores._protocol), so neither side writes a number of its own. The payload formats are the
 * Python layer's (pickles); the C core only moves them. */
#ifndef ALLCORES_PROTOCOL_H
#define ALLCORES_PROTOCOL_H

#define AC_MSG_KIND_MASK 0xffu
#define AC_MSG_TRACK 0x100u
#define AC_MSG_OOB 0x200u
#define AC_MSG_SEG 0x400u

/* Task kinds (parent -> worker). */
enum {
  AC_TASK_CALL = 0,  /* one call: (function, args, kwargs) */
  AC_TASK_CHUNK = 1, /* a map's chunk: (function, items, star) */
};

/* Result kinds (worker -> parent). */
enum {
  AC_RESULT_OK = 0,       /* the call's value */
  AC_RESULT_ERR = 1,      /* the exception the call raised */
  AC_RESULT_CHUNK = 2,    /* a chunk's values and the exceptions of the items that raised */
  AC_RESULT_INIT_ERR = 3, /* the worker's initializer raised; the worker exits */
  /* Never sent: what the parent's binding reports for a result it could not read (aux: the
   * errno; ENOMEM: its arena segment did not fit in this process's address space; ESTALE: it
   * travelled in a segment whose worker exited before the parent opened it). */
  AC_RESULT_UNREADABLE = 4,
};

static inline unsigned ac_msg_base(unsigned kind) { return kind & AC_MSG_KIND_MASK; }

#endif
