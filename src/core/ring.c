/* ring.c: the bounded MPMC slot queue in shared memory (Vyukov's algorithm), its futex waits and
 * the repairs that keep it moving when a participant dies mid-operation.
 *
 * Memory order: a slot's payload is written before its sequence number is stored with release and
 * read after the sequence number is loaded with acquire. The sleeper counters and the item/space
 * words follow the Dekker pattern: a producer publishes, then (after a seq_cst fence) reads
 * consumers_sleeping; a consumer increments consumers_sleeping, then re-checks the ring. One of the
 * two always sees the other, so no wake-up is lost. */
#include "allcores/ring.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "allcores/clock.h"
#include "allcores/errors.h"
#include "allcores/futex.h"

#define RELAXED memory_order_relaxed
#define ACQUIRE memory_order_acquire
#define RELEASE memory_order_release
#define SEQ_CST memory_order_seq_cst

/* A slot stores its sequence number minus its index, so that zeroed memory is a ring whose slot i
 * holds sequence i: creating a ring touches none of its pages, which cost 13-23 us each on first
 * touch on small VMs, and a pool that runs few tasks never faults most of them in. */
static inline uint64_t seq_load(const ac_ring *r, ac_slot *s, memory_order mo) {
  return atomic_load_explicit(&s->seq, mo) + (uint64_t)(s - r->slots);
}

static inline void seq_store(const ac_ring *r, ac_slot *s, uint64_t seq, memory_order mo) {
  atomic_store_explicit(&s->seq, seq - (uint64_t)(s - r->slots), mo);
}

size_t ac_ring_bytes(uint64_t capacity) { return sizeof(ac_ring) + capacity * sizeof(ac_slot); }

int ac_ring_init(ac_ring *r, uint64_t capacity, uint32_t max_spinners) {
  if (capacity < 2 || (capacity & (capacity - 1)) != 0) return -EINVAL;
  r->capacity = capacity;
  r->mask = capacity - 1;
  r->max_spinners = max_spinners;
  atomic_store_explicit(&r->closed, 0, RELAXED);
  atomic_store_explicit(&r->enqueue_pos, 0, RELAXED);
  atomic_store_explicit(&r->dequeue_pos, 0, RELAXED);
  atomic_thread_fence(RELEASE); /* the slots are zero: slot i holds sequence i (see seq_load) */
  return 0;
}

static void wake_one_consumer(ac_ring *r) {
  atomic_fetch_add_explicit(&r->consumer_wakes, 1, RELAXED);
  atomic_fetch_add_explicit(&r->items_word, 1, SEQ_CST);
  ac_futex_wake(&r->items_word, 1);
}

static void after_push(ac_ring *r) {
  atomic_thread_fence(SEQ_CST);
  /* A spinning consumer will take the item; waking a sleeper too would cost a context switch for
   * nothing. A spinner that gives up marks itself sleeping before it stops spinning (see
   * pop_wait), so this test cannot strand an item. With lazy waking (short items), a consumer
   * busy with an item is as good as a spinner unless items queue up: the wake-up syscall would
   * cost the producer more than the item costs the busy consumer. A busy consumer that pops and
   * sees more queued wakes a sleeper itself (pop_wait), so a queue never waits on one consumer. */
  if (atomic_load_explicit(&r->consumers_sleeping, SEQ_CST) == 0 ||
      atomic_load_explicit(&r->consumers_spinning, SEQ_CST) != 0)
    return;
  if (atomic_load_explicit(&r->lazy_wake, RELAXED) &&
      atomic_load_explicit(&r->consumers_busy, SEQ_CST) != 0 && ac_ring_len(r) <= AC_LAZY_DEPTH)
    return;
  wake_one_consumer(r);
}

/* After a consumer took an item: if more are queued than it will get through at once, wake
 * another consumer so a burst spreads over them. With lazy waking, "at once" means
 * AC_LAZY_DEPTH short items: on few cores, a second consumer woken for them would only take CPU
 * from the producer, which is then the bottleneck. */
static void wake_for_backlog(ac_ring *r) {
  uint64_t len = ac_ring_len(r);
  if (len == 0) return;
  if (atomic_load_explicit(&r->lazy_wake, RELAXED) && len <= AC_LAZY_DEPTH) return;
  if (atomic_load_explicit(&r->consumers_sleeping, SEQ_CST) != 0 &&
      atomic_load_explicit(&r->consumers_spinning, SEQ_CST) == 0)
    wake_one_consumer(r);
}

void ac_ring_set_busy(ac_ring *r, int busy) {
  if (busy) {
    atomic_fetch_add_explicit(&r->consumers_busy, 1, SEQ_CST);
    return;
  }
  /* Never below zero: a count too low only costs wake-ups, one too high could strand an item. */
  uint32_t n = atomic_load_explicit(&r->consumers_busy, SEQ_CST);
  while (n != 0 &&
         !atomic_compare_exchange_weak_explicit(&r->consumers_busy, &n, n - 1, SEQ_CST, SEQ_CST)) {
  }
}

int ac_ring_kick(ac_ring *r) {
  if (ac_ring_len(r) == 0 || atomic_load_explicit(&r->consumers_sleeping, SEQ_CST) == 0 ||
      atomic_load_explicit(&r->consumers_spinning, SEQ_CST) != 0)
    return 0;
  wake_one_consumer(r);
  return 1;
}

void ac_ring_set_lazy_wake(ac_ring *r, int lazy) {
  atomic_store_explicit(&r->lazy_wake, lazy ? 1 : 0, RELAXED);
}

static void after_pop(ac_ring *r) {
  atomic_thread_fence(SEQ_CST);
  if (atomic_load_explicit(&r->producers_sleeping, SEQ_CST) != 0) {
    atomic_fetch_add_explicit(&r->space_word, 1, SEQ_CST);
    ac_futex_wake(&r->space_word, 1);
  }
}

int ac_ring_try_push(ac_ring *r, const ac_msg *msg, const void *data, _Atomic uint64_t *claim) {
  if (msg->block == 0 && msg->len > AC_SLOT_INLINE) return -EINVAL;
  if (atomic_load_explicit(&r->closed, ACQUIRE)) return AC_ECLOSED;
  uint64_t pos = atomic_load_explicit(&r->enqueue_pos, RELAXED);
  ac_slot *s;
  for (;;) {
    s = &r->slots[pos & r->mask];
    uint64_t seq = seq_load(r, s, ACQUIRE);
    int64_t dif = (int64_t)(seq - pos);
    if (dif == 0) {
      if (claim) atomic_store_explicit(claim, pos + 1, SEQ_CST);
      if (atomic_compare_exchange_weak_explicit(&r->enqueue_pos, &pos, pos + 1, SEQ_CST, RELAXED))
        break;
    } else if (dif < 0) {
      if (claim) atomic_store_explicit(claim, 0, RELAXED);
      return -EAGAIN;
    } else {
      pos = atomic_load_explicit(&r->enqueue_pos, RELAXED);
    }
  }
  s->msg = *msg;
  if (msg->block == 0 && msg->len) memcpy(s->data, data, msg->len);
  seq_store(r, s, pos + 1, RELEASE);
  if (claim) atomic_store_explicit(claim, 0, RELEASE);
  after_push(r);
  return 0;
}

static int try_pop_once(ac_ring *r, ac_msg *msg, void *data, ac_claim *claim) {
  uint64_t pos = atomic_load_explicit(&r->dequeue_pos, RELAXED);
  ac_slot *s;
  for (;;) {
    s = &r->slots[pos & r->mask];
    uint64_t seq = seq_load(r, s, ACQUIRE);
    int64_t dif = (int64_t)(seq - (pos + 1));
    if (dif == 0) {
      if (claim) atomic_store_explicit(&claim->pos, pos + 1, SEQ_CST);
      if (atomic_compare_exchange_weak_explicit(&r->dequeue_pos, &pos, pos + 1, SEQ_CST, RELAXED))
        break;
    } else if (dif < 0) {
      if (claim) atomic_store_explicit(&claim->pos, 0, RELAXED);
      return -EAGAIN;
    } else {
      pos = atomic_load_explicit(&r->dequeue_pos, RELAXED);
    }
  }
  *msg = s->msg;
  if (msg->kind != AC_KIND_TOMBSTONE && msg->block == 0 && msg->len) {
    if (msg->len > AC_SLOT_INLINE) msg->len = AC_SLOT_INLINE; /* never trust a length blindly */
    memcpy(data, s->data, msg->len);
  }
  if (claim && msg->kind != AC_KIND_TOMBSTONE) {
    atomic_store_explicit(&claim->id, msg->id, SEQ_CST);
    atomic_store_explicit(&claim->block, msg->block, SEQ_CST);
  }
  seq_store(r, s, pos + r->mask + 1, RELEASE);
  if (claim) atomic_store_explicit(&claim->pos, 0, RELEASE);
  after_pop(r);
  return 0;
}

int ac_ring_try_pop(ac_ring *r, ac_msg *msg, void *data, ac_claim *claim) {
  for (;;) {
    int rc = try_pop_once(r, msg, data, claim);
    if (rc != 0 || msg->kind != AC_KIND_TOMBSTONE) return rc;
  }
}

uint64_t ac_ring_len(const ac_ring *r) {
  uint64_t head = atomic_load_explicit(&((ac_ring *)r)->dequeue_pos, ACQUIRE);
  uint64_t tail = atomic_load_explicit(&((ac_ring *)r)->enqueue_pos, ACQUIRE);
  return tail > head ? tail - head : 0;
}

static int watched(const ac_watch *w) { return ac_watch_fired(w); }

static int64_t remaining(int64_t deadline) {
  if (deadline == INT64_MAX) return -1;
  int64_t left = deadline - ac_now_ns();
  return left > 0 ? left : 0;
}

/* A consumer's claim->waiting word follows its place in the counts so that a dead consumer can
 * be taken out of them (ac_ring_repair_wait). The order of mark and count is chosen so that a
 * death between the two errs on the harmless side: the spinner count may end too low (a
 * producer then wakes a sleeper for nothing), never too high (a producer would trust a spinner
 * that is gone and wake nobody); the sleeper count may end too high (a wake-up for nothing),
 * never too low (a lost wake-up). Spinner decrements therefore stop at zero. */
static void mark_waiting(ac_claim *claim, uint32_t bits) {
  if (claim) atomic_store_explicit(&claim->waiting, bits, SEQ_CST);
}

static void dec_to_zero(_Atomic uint32_t *count) {
  uint32_t n = atomic_load_explicit(count, SEQ_CST);
  while (n != 0 && !atomic_compare_exchange_weak_explicit(count, &n, n - 1, SEQ_CST, SEQ_CST)) {
  }
}

int ac_ring_pop_wait(ac_ring *r, ac_msg *msg, void *data, ac_claim *claim,
                     int64_t timeout_ns, int64_t spin_ns, const ac_watch *watch) {
  int rc = ac_ring_try_pop(r, msg, data, claim);
  if (rc == 0) {
    wake_for_backlog(r);
    return 0;
  }
  int64_t start = ac_now_ns();
  int64_t deadline = timeout_ns < 0 ? INT64_MAX : start + timeout_ns;
  int sleeping = 0;

  if (spin_ns > 0) {
    mark_waiting(claim, AC_WAIT_SPINNING);
    uint32_t was = atomic_fetch_add_explicit(&r->consumers_spinning, 1, SEQ_CST);
    if (was < r->max_spinners) {
      int64_t spin_end = start + spin_ns;
      for (unsigned i = 1;; i++) {
        if (ac_ring_try_pop(r, msg, data, claim) == 0) {
          dec_to_zero(&r->consumers_spinning);
          mark_waiting(claim, 0);
          wake_for_backlog(r);
          return 0;
        }
        ac_cpu_relax();
        if ((i & 63) == 0) {
          if (watched(watch)) {
            dec_to_zero(&r->consumers_spinning);
            mark_waiting(claim, 0);
            return AC_EEVENT;
          }
          int64_t now = ac_now_ns();
          if (now >= spin_end || now >= deadline) break;
        }
      }
      /* Become a sleeper before giving up the spinner's role: see after_push(). */
      atomic_fetch_add_explicit(&r->consumers_sleeping, 1, SEQ_CST);
      mark_waiting(claim, AC_WAIT_SPINNING | AC_WAIT_SLEEPING);
      sleeping = 1;
    }
    dec_to_zero(&r->consumers_spinning);
    mark_waiting(claim, sleeping ? AC_WAIT_SLEEPING : 0);
  }
  if (!sleeping) {
    atomic_fetch_add_explicit(&r->consumers_sleeping, 1, SEQ_CST);
    mark_waiting(claim, AC_WAIT_SLEEPING);
  }

  for (;;) {
    uint32_t word = atomic_load_explicit(&r->items_word, SEQ_CST);
    if (ac_ring_try_pop(r, msg, data, claim) == 0) { rc = 0; break; }
    if (atomic_load_explicit(&r->closed, ACQUIRE)) { rc = AC_ECLOSED; break; }
    if (watched(watch)) { rc = AC_EEVENT; break; }
    int64_t left = remaining(deadline);
    if (left == 0) { rc = -ETIMEDOUT; break; }
    atomic_fetch_add_explicit(&r->consumer_sleeps, 1, RELAXED);
    rc = ac_futex_wait(&r->items_word, word, left);
    if (rc == -EINTR) break;
  }
  mark_waiting(claim, 0);
  atomic_fetch_sub_explicit(&r->consumers_sleeping, 1, SEQ_CST);
  if (rc == 0) wake_for_backlog(r);
  return rc;
}

int ac_ring_push_wait(ac_ring *r, const ac_msg *msg, const void *data, _Atomic uint64_t *claim,
                      int64_t timeout_ns, const ac_watch *watch) {
  int rc = ac_ring_try_push(r, msg, data, claim);
  if (rc != -EAGAIN) return rc;
  int64_t deadline = timeout_ns < 0 ? INT64_MAX : ac_now_ns() + timeout_ns;
  atomic_fetch_add_explicit(&r->producers_sleeping, 1, SEQ_CST);
  for (;;) {
    uint32_t word = atomic_load_explicit(&r->space_word, SEQ_CST);
    rc = ac_ring_try_push(r, msg, data, claim);
    if (rc != -EAGAIN) break;
    if (watched(watch)) { rc = AC_EEVENT; break; }
    int64_t left = remaining(deadline);
    if (left == 0) { rc = -ETIMEDOUT; break; }
    rc = ac_futex_wait(&r->space_word, word, left);
    if (rc == -EINTR) break;
  }
  atomic_fetch_sub_explicit(&r->producers_sleeping, 1, SEQ_CST);
  return rc;
}

void ac_ring_wake_consumers(ac_ring *r) {
  atomic_fetch_add_explicit(&r->items_word, 1, SEQ_CST);
  ac_futex_wake(&r->items_word, INT_MAX);
}

void ac_ring_close(ac_ring *r) {
  atomic_store_explicit(&r->closed, 1, SEQ_CST);
  ac_ring_wake_consumers(r);
  atomic_fetch_add_explicit(&r->space_word, 1, SEQ_CST);
  ac_futex_wake(&r->space_word, INT_MAX);
}

int ac_ring_holds_block(ac_ring *r, uint64_t block) {
  uint64_t end = atomic_load_explicit(&r->enqueue_pos, ACQUIRE);
  for (uint64_t pos = atomic_load_explicit(&r->dequeue_pos, ACQUIRE); pos < end; pos++) {
    ac_slot *s = &r->slots[pos & r->mask];
    if (seq_load(r, s, ACQUIRE) == pos + 1 && s->msg.kind != AC_KIND_TOMBSTONE &&
        s->msg.block == block)
      return 1;
  }
  return 0;
}

int ac_ring_repair_push(ac_ring *r, uint64_t claim) {
  if (claim == 0) return 0;
  uint64_t pos = claim - 1;
  ac_slot *s = &r->slots[pos & r->mask];
  if (atomic_load_explicit(&r->enqueue_pos, ACQUIRE) <= pos) return 0;      /* claim never taken */
  if (seq_load(r, s, ACQUIRE) != pos) return 0;               /* already published */
  memset(&s->msg, 0, sizeof s->msg);
  s->msg.kind = AC_KIND_TOMBSTONE;
  seq_store(r, s, pos + 1, RELEASE);
  after_push(r);
  return 1;
}

int ac_ring_repair_pop(ac_ring *r, uint64_t claim, ac_msg *msg, void *data) {
  if (claim == 0) return 0;
  uint64_t pos = claim - 1;
  ac_slot *s = &r->slots[pos & r->mask];
  if (atomic_load_explicit(&r->dequeue_pos, ACQUIRE) <= pos) return 0;      /* claim never taken */
  if (seq_load(r, s, ACQUIRE) != pos + 1) return 0;           /* already released */
  *msg = s->msg;
  if (msg->kind != AC_KIND_TOMBSTONE && msg->block == 0 && msg->len) {
    if (msg->len > AC_SLOT_INLINE) msg->len = AC_SLOT_INLINE;
    memcpy(data, s->data, msg->len);
  }
  seq_store(r, s, pos + r->mask + 1, RELEASE);
  after_pop(r);
  return msg->kind == AC_KIND_TOMBSTONE ? 0 : 1;
}

void ac_ring_repair_wait(ac_ring *r, ac_claim *claim) {
  uint32_t bits = atomic_exchange_explicit(&claim->waiting, 0, SEQ_CST);
  if (bits & AC_WAIT_SPINNING) dec_to_zero(&r->consumers_spinning);
  if (bits & AC_WAIT_SLEEPING) dec_to_zero(&r->consumers_sleeping);
}
