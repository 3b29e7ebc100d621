/* shared_sync.h: a counter, a semaphore and an event that live in shared memory and wait on
 * futexes (shared, so waits work across processes).
 *
 * Contract:
 * - ac_scounter: a 64-bit signed integer changed only by atomic instructions (lock-free; wraps
 *   around on overflow). Every operation is sequentially consistent.
 * - ac_ssem: a counting semaphore with an optional bound (release above it: -EOVERFLOW). It has no
 *   owners, like a POSIX semaphore: a unit taken by a process that dies is not given back.
 * - ac_sevent: a flag with set/clear; a waiter returns true when the flag is set or was set at
 *   some moment after the waiter's snapshot (a set() followed at once by clear() still wakes it).
 * Waits take timeout_ns: 0 = do not wait (-EAGAIN when unavailable), < 0 = no limit, else at most
 * that long (-ETIMEDOUT). They may return -EINTR when a signal arrives; callers re-check and retry.
 * The structs must be zero-filled or initialized before use; zero is a valid state for each
 * (counter 0, semaphore 0 without bound, event clear). */
#ifndef ALLCORES_SHARED_SYNC_H
#define ALLCORES_SHARED_SYNC_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct ac_scounter {
  _Atomic int64_t v;
} ac_scounter;

static inline int64_t ac_scounter_add(ac_scounter *c, int64_t n) {
  /* Unsigned arithmetic: signed overflow is undefined in C, wrap-around is what we promise. */
  return (int64_t)((uint64_t)atomic_fetch_add(&c->v, n) + (uint64_t)n);
}
static inline int64_t ac_scounter_load(ac_scounter *c) { return atomic_load(&c->v); }
static inline void ac_scounter_store(ac_scounter *c, int64_t v) { atomic_store(&c->v, v); }
static inline int64_t ac_scounter_exchange(ac_scounter *c, int64_t v) {
  return atomic_exchange(&c->v, v);
}
/* Sets *c to desired if it equals expected. Returns 1 if it did; *seen gets the value found. */
static inline int ac_scounter_cas(ac_scounter *c, int64_t expected, int64_t desired,
                                  int64_t *seen) {
  int ok = atomic_compare_exchange_strong(&c->v, &expected, desired);
  *seen = expected;
  return ok;
}

typedef struct ac_ssem {
  _Atomic uint32_t value;
  _Atomic uint32_t waiters; /* processes asleep on value (a hint: it may overcount after a death) */
  uint32_t bound;           /* 0: unbounded */
} ac_ssem;

#define AC_SSEM_MAX 0x7fffffffu

int ac_ssem_init(ac_ssem *s, uint32_t value, uint32_t bound);
int ac_ssem_acquire(ac_ssem *s, int64_t timeout_ns);
int ac_ssem_release(ac_ssem *s, uint32_t n);
static inline uint32_t ac_ssem_value(ac_ssem *s) { return atomic_load(&s->value); }

typedef struct ac_sevent {
  _Atomic uint32_t word; /* generation << 1 | flag: every set() from clear bumps the generation */
  _Atomic uint32_t waiters;
} ac_sevent;

void ac_sevent_set(ac_sevent *e);
void ac_sevent_clear(ac_sevent *e);
static inline int ac_sevent_is_set(ac_sevent *e) { return atomic_load(&e->word) & 1; }
/* The state a waiter compares against; take it once, before the first ac_sevent_wait. */
static inline uint32_t ac_sevent_snapshot(ac_sevent *e) { return atomic_load(&e->word); }
/* Returns 1 when the event is set or was set since `seen`, 0 when timeout_ns is 0 and it was not,
 * -ETIMEDOUT or -EINTR. */
int ac_sevent_wait(ac_sevent *e, uint32_t seen, int64_t timeout_ns);

#endif
