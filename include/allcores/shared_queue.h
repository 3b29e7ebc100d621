/* shared_queue.h: a FIFO queue of byte strings in shared memory, for any number of producer and
 * consumer processes.
 *
 * Contract:
 * - Small items are copied into a byte ring; items bigger than a quarter of the ring go into an
 *   arena block of the same segment (arena.h) and the ring carries the block's offset, so an item
 *   never depends on its producer staying alive, and big copies run outside the queue's mutex.
 * - The queue's state (head, tail, count) changes under one robust mutex (shared_mutex.h), and only
 *   at the end of a put or a get: a process killed in the middle leaves the queue consistent (at
 *   worst an arena block of the item it was moving is leaked until the queue is freed).
 * - ac_squeue_put/get take timeout_ns: 0 = do not wait for space/items (-EAGAIN), < 0 = no limit,
 *   else at most that long (-ETIMEDOUT); -EINTR when a signal interrupts a wait. With AC_SQ_TRY
 *   they also refuse (-EBUSY) to wait for the mutex or to copy more than AC_SQ_TRY_BYTES, so a
 *   caller holding an interpreter lock can try first and block only without it.
 * - An item larger than the arena can ever hold: AC_ETOOBIG. Lengths are limited to 2^32 - 1. */
#ifndef ALLCORES_SHARED_QUEUE_H
#define ALLCORES_SHARED_QUEUE_H

#include <stdatomic.h>
#include <stdint.h>

#include "allcores/arena.h"
#include "allcores/shared_mutex.h"

#define AC_SQ_TRY 1u
#define AC_SQ_TRY_BYTES (256u * 1024u)

typedef struct ac_squeue {
  ac_smutex mu;             /* guards head, tail and count */
  uint64_t ring_bytes;      /* a power of two */
  uint64_t ring_off;        /* from the queue's start */
  uint64_t maxsize;         /* most items at once; 0: as many as fit */
  uint64_t head, tail;      /* byte positions in the ring; only ever grow */
  _Atomic uint64_t count;   /* items queued */
  _Atomic uint32_t put_seq; /* bumped by every put: getters sleep on it */
  _Atomic uint32_t get_seq; /* bumped by every get, after its block is freed: putters sleep on it */
  _Atomic uint32_t getters, putters; /* asleep (hints: they may overcount after a death) */
  _Alignas(64) ac_arena arena;       /* offsets from the queue's start */
} ac_squeue;

/* Bytes a queue with this ring and arena occupies from its start (8-byte aligned). */
uint64_t ac_squeue_footprint(uint64_t ring_bytes, uint64_t arena_bytes);
int ac_squeue_init(ac_squeue *q, uint64_t ring_bytes, uint64_t arena_bytes, uint64_t maxsize);
/* Largest item the queue can carry. */
uint64_t ac_squeue_max_item(ac_squeue *q);

/* Appends an item with a tag below 2^24 (-EINVAL otherwise); AC_ETOOBIG when len is above
 * ac_squeue_max_item. */
int ac_squeue_put(ac_squeue *q, const void *data, uint64_t len, uint32_t tag, int64_t timeout_ns,
                  unsigned flags);

/* Where a got item is copied: alloc(ctx, len) returns len writable bytes, or NULL (then the item
 * stays queued and the call returns -ENOMEM). It runs under the queue's mutex: keep it short. */
typedef void *(*ac_squeue_alloc)(void *ctx, uint64_t len);
int ac_squeue_get(ac_squeue *q, ac_squeue_alloc alloc, void *ctx, uint32_t *tag,
                  int64_t timeout_ns, unsigned flags);

static inline uint64_t ac_squeue_count(ac_squeue *q) { return atomic_load(&q->count); }

#endif
