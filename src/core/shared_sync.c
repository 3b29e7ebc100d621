/* shared_sync.c: the futex-based semaphore and event of shared_sync.h.
 * Lost wake-ups are ruled out by ordering: a waiter announces itself (waiters++) before it sleeps
 * on the word, and the kernel sleeps only if the word is still what the waiter saw; a waker
 * changes the word before it reads waiters. Both use sequentially consistent atomics, so either
 * the waker sees the waiter or the waiter sees the new word. */
#include "allcores/shared_sync.h"

#include <errno.h>
#include <limits.h>

#include "allcores/clock.h"
#include "allcores/futex.h"

/* What is left of a wait that started at `start`; -1 for no limit. */
static int64_t remaining(int64_t timeout_ns, int64_t start) {
  if (timeout_ns < 0) return -1;
  int64_t left = timeout_ns - (ac_now_ns() - start);
  return left > 0 ? left : 0;
}

int ac_ssem_init(ac_ssem *s, uint32_t value, uint32_t bound) {
  if (value > AC_SSEM_MAX || bound > AC_SSEM_MAX || (bound && value > bound)) return -EINVAL;
  atomic_store(&s->value, value);
  atomic_store(&s->waiters, 0);
  s->bound = bound;
  return 0;
}

static int try_take(ac_ssem *s) {
  uint32_t v = atomic_load(&s->value);
  while (v > 0)
    if (atomic_compare_exchange_weak(&s->value, &v, v - 1)) return 1;
  return 0;
}

int ac_ssem_acquire(ac_ssem *s, int64_t timeout_ns) {
  if (try_take(s)) return 0;
  if (timeout_ns == 0) return -EAGAIN;
  int64_t start = ac_now_ns();
  for (;;) {
    int64_t left = remaining(timeout_ns, start);
    if (left == 0) return try_take(s) ? 0 : -ETIMEDOUT;
    atomic_fetch_add(&s->waiters, 1);
    int rc = ac_futex_wait(&s->value, 0, left);
    atomic_fetch_sub(&s->waiters, 1);
    if (try_take(s)) return 0;
    if (rc == -EINTR) return rc;
  }
}

int ac_ssem_release(ac_ssem *s, uint32_t n) {
  uint32_t limit = s->bound ? s->bound : AC_SSEM_MAX;
  uint32_t v = atomic_load(&s->value);
  do {
    if (n > limit || v > limit - n) return -EOVERFLOW;
  } while (!atomic_compare_exchange_weak(&s->value, &v, v + n));
  if (atomic_load(&s->waiters)) ac_futex_wake(&s->value, n > INT_MAX ? INT_MAX : (int)n);
  return 0;
}

void ac_sevent_set(ac_sevent *e) {
  uint32_t w = atomic_load(&e->word);
  do {
    if (w & 1) return;
  } while (!atomic_compare_exchange_weak(&e->word, &w, (w + 2) | 1));
  if (atomic_load(&e->waiters)) ac_futex_wake(&e->word, INT_MAX);
}

void ac_sevent_clear(ac_sevent *e) { atomic_fetch_and(&e->word, ~1u); }

/* Set now, or set at some moment since `seen` (the generation moved on). */
static int fired(uint32_t w, uint32_t seen) { return (w & 1) || (w >> 1) != (seen >> 1); }

int ac_sevent_wait(ac_sevent *e, uint32_t seen, int64_t timeout_ns) {
  uint32_t w = atomic_load(&e->word);
  if (fired(w, seen)) return 1;
  if (timeout_ns == 0) return 0;
  int64_t start = ac_now_ns();
  for (;;) {
    int64_t left = remaining(timeout_ns, start);
    if (left == 0) return -ETIMEDOUT;
    atomic_fetch_add(&e->waiters, 1);
    int rc = ac_futex_wait(&e->word, w, left);
    atomic_fetch_sub(&e->waiters, 1);
    w = atomic_load(&e->word);
    if (fired(w, seen)) return 1;
    if (rc == -EINTR) return rc;
  }
}
