/* shared_segment.h: the memory of one shared object (counter, lock, queue, buffer...): a sealed
 * memfd segment that any process of the same user can map from a small reference.
 *
 * Contract:
 * - ac_seg_create() makes a zero-filled segment of `size` payload bytes: a memfd, so no name in
 *   /dev/shm and nothing left behind after any exit. The payload starts AC_SEG_HEADER bytes into a
 *   page-aligned mapping, so it is 64-byte aligned.
 * - A reference (ac_seg_ref) names the segment by a random token and two "doors": the fd of the
 *   process that sent it and the fd of its creator. ac_seg_open() maps the segment through
 *   /proc/<pid>/fd/<fd> and checks the token, so a reused pid or fd never maps the wrong memory.
 * - Lifetime: the kernel keeps the memory while any process maps it or holds its fd. What the
 *   kernel cannot see are references in flight (pickled, not yet opened): ac_seg_ref() counts one
 *   "pin" in the segment, and the receiver's ac_seg_open() or ac_seg_unpin() consumes it. A process
 *   that closes a segment while pins remain keeps its fd and mapping on a lingering list (its door
 *   must stay open for the receivers) and closes them on a later sweep, once pins reach 0. A pin
 *   never consumed (its receiver died first) keeps the doors open until those processes exit.
 * - Every function is safe to call from any thread; the lingering list survives fork.
 * Functions return 0 or a negative code (errors.h); -ESTALE: no door leads to the segment any more
 * (every process that could open it closed it or exited). */
#ifndef ALLCORES_SHARED_SEGMENT_H
#define ALLCORES_SHARED_SEGMENT_H

#include <stdatomic.h>
#include <stdint.h>

#define AC_SEG_MAGIC UINT64_C(0x3167657363616c61) /* "alacseg1" */
#define AC_SEG_HEADER 64
#define AC_SEG_MAX ((UINT64_C(1) << 46) - AC_SEG_HEADER)

typedef struct ac_seg_header {
  uint64_t magic;
  uint64_t token;       /* random: names the segment, with creator_pid */
  uint64_t size;        /* payload bytes */
  int32_t creator_pid;
  int32_t creator_fd;
  _Atomic int64_t pins; /* references sent and not yet opened */
  uint8_t reserved[AC_SEG_HEADER - 40];
} ac_seg_header;

/* A process's handle on a mapped segment. */
typedef struct ac_seg {
  ac_seg_header *hdr; /* NULL once closed */
  char *data;         /* the payload */
  uint64_t size;      /* payload bytes */
  uint64_t map_len;
  int fd;             /* this process's door */
} ac_seg;

typedef struct ac_seg_ref {
  uint64_t token;
  int32_t creator_pid, creator_fd;
  int32_t sender_pid, sender_fd;
} ac_seg_ref;

int ac_seg_create(ac_seg *s, uint64_t size);
/* Fills *ref with a reference to s and pins it (one receiver may consume the pin). */
void ac_seg_ref_of(ac_seg *s, ac_seg_ref *ref);
/* Maps the segment ref names, consuming one pin. Tries a segment this process still lingers on,
 * then the sender's door, then the creator's. */
int ac_seg_open(ac_seg *s, const ac_seg_ref *ref);
/* Consumes one pin without opening (the receiver already had the segment open). */
void ac_seg_unpin(ac_seg *s);
/* Drops this process's handle (lingering while pins remain); s becomes closed. */
void ac_seg_close(ac_seg *s);
/* Closes lingering segments whose pins reached 0. Returns how many still linger. */
int ac_seg_sweep(void);

static inline int64_t ac_seg_pins(const ac_seg *s) {
  return atomic_load_explicit(&s->hdr->pins, memory_order_acquire);
}

#endif
