/* ring.h: a bounded multi-producer multi-consumer queue of fixed-size message slots that lives in
 * memory shared between processes, with futex waits and a short spin.
 *
 * Contract:
 * - The queue is Vyukov's bounded MPMC array: each slot carries a sequence number, producers and
 *   consumers claim positions with one compare-and-swap and publish with one release store.
 * - Each participant may pass a `claim` word (in shared memory) where the position it is working on
 *   is recorded before the claim and cleared after the publish. If the participant dies in between,
 *   ac_ring_repair_push()/ac_ring_repair_pop() use that record to unblock the slot, so a process
 *   killed at any instruction never wedges the queue.
 * - Waiting: a consumer spins for at most spin_ns (only max_spinners consumers spin at once), then
 *   sleeps on a futex. A producer wakes a sleeper only when no spinner is there to take the item.
 * - A payload that fits AC_SLOT_INLINE bytes travels inside the slot; larger ones travel in an
 *   arena block whose offset is in ac_msg.block (see region.h), the ring itself only moves headers.
 * Return values: 0 on success, -EAGAIN (full/empty, try variants), -ETIMEDOUT, -EINTR (a signal),
 * AC_ECLOSED (closed and, for consumers, drained), AC_EEVENT (the watched word changed). */
#ifndef ALLCORES_RING_H
#define ALLCORES_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "allcores/errors.h"

#define AC_SLOT_BYTES 512
#define AC_SLOT_INLINE (AC_SLOT_BYTES - 40)
#define AC_KIND_TOMBSTONE 0xffffffffu /* a slot left by a dead producer; consumers skip it */
#define AC_LAZY_DEPTH 8 /* with lazy waking, items one busy consumer is trusted to absorb */

typedef struct ac_msg {
  uint64_t id;    /* chosen by the ring's user (a task id) */
  uint64_t block; /* arena offset of an out-of-line payload; 0 when the payload is inline */
  uint32_t len;   /* payload length in bytes */
  uint32_t kind;  /* meaning belongs to the ring's user; AC_KIND_TOMBSTONE is reserved */
  uint32_t aux;   /* free for the ring's user */
  uint32_t aux2;
} ac_msg;

typedef struct ac_slot {
  _Atomic uint64_t seq;
  ac_msg msg;
  uint8_t data[AC_SLOT_INLINE];
} ac_slot;

typedef struct ac_ring {
  uint64_t capacity; /* a power of two */
  uint64_t mask;
  _Atomic uint32_t closed;
  uint32_t max_spinners;
  _Alignas(64) _Atomic uint64_t enqueue_pos;
  _Alignas(64) _Atomic uint64_t dequeue_pos;
  _Alignas(64) _Atomic uint32_t items_word; /* futex: bumped when an item is pushed to sleepers */
  _Atomic uint32_t consumers_sleeping;
  _Atomic uint32_t consumers_spinning;
  _Atomic uint32_t consumers_busy; /* consumers handling an item they took (see ac_ring_set_busy) */
  _Atomic uint32_t lazy_wake;      /* 1: items are short; see after_push() in ring.c */
  _Alignas(64) _Atomic uint32_t space_word; /* futex: bumped when a slot frees for sleepers */
  _Atomic uint32_t producers_sleeping;
  _Alignas(64) _Atomic uint64_t consumer_wakes; /* statistics: futex wake-ups issued ... */
  _Atomic uint64_t consumer_sleeps;             /* ... and futex sleeps of consumers */
  _Alignas(64) ac_slot slots[];
} ac_ring;

/* A consumer's record of what it is taking, in shared memory: pos is the claimed position + 1
 * (set before the claim, cleared after the slot is released); id and block are copied from the
 * message before the slot is released, so at every instant either the slot or this record holds
 * the message's identity. The consumer clears id/block itself when it is done with the message.
 * waiting says whether pop_wait counts this consumer among the ring's spinners and sleepers
 * (AC_WAIT_* bits), so that ac_ring_repair_wait() can take a dead consumer out of the counts. */
typedef struct ac_claim {
  _Atomic uint64_t pos;
  _Atomic uint64_t id;
  _Atomic uint64_t block;
  _Atomic uint32_t waiting;
  uint32_t reserved;
} ac_claim;

#define AC_WAIT_SPINNING 1u
#define AC_WAIT_SLEEPING 2u

/* What a waiting call may watch besides the ring: it returns AC_EEVENT once *word != seen, or
 * *word2 != seen2 (word2 may be NULL; a second word lets a process-local poke end the wait). */
typedef struct ac_watch {
  _Atomic uint32_t *word;
  uint32_t seen;
  _Atomic uint32_t *word2;
  uint32_t seen2;
} ac_watch;

static inline int ac_watch_fired(const ac_watch *w) {
  if (!w) return 0;
  if (w->word && atomic_load_explicit(w->word, memory_order_acquire) != w->seen) return 1;
  return w->word2 && atomic_load_explicit(w->word2, memory_order_acquire) != w->seen2;
}

/* Bytes needed for a ring of `capacity` slots (a power of two >= 2). */
size_t ac_ring_bytes(uint64_t capacity);
/* Initializes a ring in ZEROED memory of ac_ring_bytes(capacity) bytes (fresh mmap/memfd pages
 * are); the slots themselves are not written. Returns 0 or -EINVAL. */
int ac_ring_init(ac_ring *r, uint64_t capacity, uint32_t max_spinners);

/* Publishes one message without waiting. `data` (msg->len bytes, only when msg->block == 0) must
 * fit AC_SLOT_INLINE. Returns 0, -EAGAIN when full, AC_ECLOSED when closed. */
int ac_ring_try_push(ac_ring *r, const ac_msg *msg, const void *data, _Atomic uint64_t *claim);
/* Takes one message without waiting; inline payload bytes are copied to data (AC_SLOT_INLINE
 * bytes of room). Tombstones are skipped. Returns 0, -EAGAIN when empty. */
int ac_ring_try_pop(ac_ring *r, ac_msg *msg, void *data, ac_claim *claim);

/* Waiting forms: timeout_ns < 0 waits without limit. watch may be NULL. */
int ac_ring_push_wait(ac_ring *r, const ac_msg *msg, const void *data, _Atomic uint64_t *claim,
                      int64_t timeout_ns, const ac_watch *watch);
int ac_ring_pop_wait(ac_ring *r, ac_msg *msg, void *data, ac_claim *claim,
                     int64_t timeout_ns, int64_t spin_ns, const ac_watch *watch);

/* A consumer tells the ring it is busy with an item (1) or back for more (0); lazy waking relies
 * on it. Every "1" must be matched by a "0", also on behalf of a consumer that died. */
void ac_ring_set_busy(ac_ring *r, int busy);
/* lazy = 1: items take microseconds, so a push does not wake a sleeping consumer while another
 * one is busy and will be back at once; it wakes one when items queue up (more than one waits). */
void ac_ring_set_lazy_wake(ac_ring *r, int lazy);

/* Wakes a sleeping consumer if items are queued and nobody spins for them: a periodic safety net
 * for lazy waking (a consumer killed while counted busy). Returns 1 when it woke one. */
int ac_ring_kick(ac_ring *r);

/* Marks the ring closed and wakes every sleeper. Consumers still drain what is queued. */
void ac_ring_close(ac_ring *r);
/* Wakes every sleeping consumer (used when a watched word changed). */
void ac_ring_wake_consumers(ac_ring *r);
/* Number of published-or-claimed items (a snapshot). */
uint64_t ac_ring_len(const ac_ring *r);

/* Whether a published, not yet taken message of the ring carries arena block `block` (a scan of
 * the queued slots; for the rare repairs after a death, not for a fast path). */
int ac_ring_holds_block(ac_ring *r, uint64_t block);

/* Repairs after a participant died. `claim` is the value of its claim word (position + 1).
 * repair_push publishes a tombstone in a slot a dead producer claimed but never published and
 * returns 1; repair_pop releases a slot a dead consumer claimed but never released, copying the
 * message it still holds to msg/data, and returns 1. Both return 0 when there was nothing to do.
 * The caller must make sure no live participant holds the same claim. */
int ac_ring_repair_push(ac_ring *r, uint64_t claim);
int ac_ring_repair_pop(ac_ring *r, uint64_t claim, ac_msg *msg, void *data);
/* Takes a dead consumer out of the ring's spinner and sleeper counts, as its claim->waiting
 * says, and clears that word. Without it, a consumer killed while spinning would leave
 * consumers_spinning raised forever: producers would then never wake a sleeper. */
void ac_ring_repair_wait(ac_ring *r, ac_claim *claim);

#endif
