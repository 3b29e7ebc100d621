/* arena.c: size-classed lock-free block allocation in the shared region (see arena.h). */
#include "allcores/arena.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "allcores/errors.h"

#define IDX_BITS 44
#define IDX_MASK ((UINT64_C(1) << IDX_BITS) - 1)

int ac_arena_init(ac_arena *a, uint64_t base_off, uint64_t bytes) {
  if (base_off & ((1u << AC_PAGE_SHIFT) - 1)) return -EINVAL;
  a->base_off = base_off;
  a->pages = bytes >> AC_PAGE_SHIFT;
  atomic_store(&a->bump, 0);
  for (int c = 0; c < AC_ARENA_CLASSES; c++) atomic_store(&a->free_head[c], 0);
  atomic_store(&a->allocs, 0);
  atomic_store(&a->frees, 0);
  atomic_store(&a->bytes_in_use, 0);
  atomic_store(&a->gate, 0);
  atomic_store(&a->resets, 0);
  return 0;
}

/* --- the gate: allocs and frees against a reset of the whole arena --- */

#define GATE_RESETTING (UINT64_C(1) << 63)
#define GATE_PID_SHIFT 32
#define GATE_INSIDE_MASK UINT64_C(0xffffffff)

/* Every free list empty and the bump pointer back at the start: the whole arena is one fresh
 * run. Idempotent, so that whoever finds a dead resetter can finish its work. */
static void reset_lists(ac_arena *a) {
  for (int c = 0; c < AC_ARENA_CLASSES; c++) atomic_store(&a->free_head[c], 0);
  atomic_store(&a->bump, 0);
}

/* Counted first, marked after (and unmarked before the count drops): a death between the two
 * leaves the count too high (resets disabled), never too low (a reset racing an allocation). */
static __thread _Atomic uint32_t *gate_mark;

void ac_arena_set_gate_mark(_Atomic uint32_t *mark) { gate_mark = mark; }

void ac_arena_repair_gate(ac_arena *a, _Atomic uint32_t *mark) {
  uint32_t n = atomic_exchange(mark, 0);
  if (n) atomic_fetch_sub(&a->gate, n);
}

static void gate_enter(ac_arena *a) {
  for (unsigned spins = 0;; spins++) {
    uint64_t g = atomic_fetch_add(&a->gate, 1);
    if (!(g & GATE_RESETTING)) {
      if (gate_mark) atomic_fetch_add(gate_mark, 1);
      return;
    }
    atomic_fetch_sub(&a->gate, 1);
    /* A reset takes microseconds; if its process died in it, finish it (once it is seen dead:
     * kill(pid, 0) fails with ESRCH). */
    pid_t owner = (pid_t)((g & ~GATE_RESETTING) >> GATE_PID_SHIFT);
    if (spins > 64 && owner > 0 && kill(owner, 0) < 0 && errno == ESRCH) {
      uint64_t now = atomic_load(&a->gate);
      if ((now & ~GATE_INSIDE_MASK) == (g & ~GATE_INSIDE_MASK)) {
        reset_lists(a);
        uint64_t want = now;
        while ((want & ~GATE_INSIDE_MASK) == (g & ~GATE_INSIDE_MASK) &&
               !atomic_compare_exchange_weak(&a->gate, &want, want & GATE_INSIDE_MASK)) {
        }
      }
    }
    sched_yield();
  }
}

static void gate_leave(ac_arena *a) {
  if (gate_mark) atomic_fetch_sub(gate_mark, 1);
  atomic_fetch_sub(&a->gate, 1);
}

/* Resets the arena if nothing is in use and nobody is inside the gate. Returns 1 if it did. */
static int try_reset(ac_arena *a) {
  if (atomic_load(&a->bytes_in_use) != 0) return 0;
  uint64_t expected = 0;
  uint64_t mine = GATE_RESETTING | ((uint64_t)(uint32_t)getpid() << GATE_PID_SHIFT);
  if (!atomic_compare_exchange_strong(&a->gate, &expected, mine)) return 0;
  /* Nobody is inside and everyone arriving backs off: bytes_in_use cannot change now. */
  int done = 0;
  if (atomic_load(&a->bytes_in_use) == 0) {
    reset_lists(a);
    atomic_fetch_add_explicit(&a->resets, 1, memory_order_relaxed);
    done = 1;
  }
  atomic_fetch_and(&a->gate, GATE_INSIDE_MASK);
  return done;
}

static int class_for(uint64_t total) {
  int c = 0;
  while (c < AC_ARENA_CLASSES && (UINT64_C(1) << (c + AC_PAGE_SHIFT)) < total) c++;
  return c;
}

uint64_t ac_arena_max_payload(const ac_arena *a) {
  uint64_t pages = 1;
  while (pages * 2 <= a->pages && pages * 2 <= (UINT64_C(1) << (AC_ARENA_CLASSES - 1))) pages *= 2;
  return (pages << AC_PAGE_SHIFT) - AC_BLOCK_HEADER;
}

static uint64_t page_off(const ac_arena *a, uint64_t page) {
  return a->base_off + (page << AC_PAGE_SHIFT);
}

static void push_free(ac_arena *a, char *base, uint64_t page, int c) {
  ac_block *b = ac_block_at(base, page_off(a, page));
  b->cls = (uint32_t)c;
  atomic_store_explicit(&b->state, AC_BLOCK_FREE, memory_order_release);
  uint64_t head = atomic_load_explicit(&a->free_head[c], memory_order_acquire);
  uint64_t fresh;
  do {
    atomic_store_explicit(&b->next, head & IDX_MASK, memory_order_relaxed);
    fresh = (((head >> IDX_BITS) + 1) << IDX_BITS) | (page + 1);
  } while (!atomic_compare_exchange_weak_explicit(&a->free_head[c], &head, fresh,
                                                  memory_order_acq_rel, memory_order_acquire));
}

/* Pops a free block of class c; returns its page + 1, or 0 when the class has none. */
static uint64_t pop_free(ac_arena *a, char *base, int c) {
  uint64_t head = atomic_load_explicit(&a->free_head[c], memory_order_acquire);
  for (;;) {
    uint64_t idx = head & IDX_MASK;
    if (idx == 0) return 0;
    ac_block *b = ac_block_at(base, page_off(a, idx - 1));
    /* The block may be re-allocated under us; reading its link is still safe (the memory stays
     * mapped) and the tag makes the CAS fail if the head moved. */
    uint64_t next = atomic_load_explicit(&b->next, memory_order_relaxed);
    uint64_t fresh = (((head >> IDX_BITS) + 1) << IDX_BITS) | (next & IDX_MASK);
    if (atomic_compare_exchange_weak_explicit(&a->free_head[c], &head, fresh,
                                              memory_order_acq_rel, memory_order_acquire))
      return idx;
  }
}

uint64_t ac_arena_block_bytes(const ac_arena *a, uint64_t len) {
  if (len > ac_arena_max_payload(a)) return 0;
  return UINT64_C(1) << (class_for(len + AC_BLOCK_HEADER) + AC_PAGE_SHIFT);
}

static int64_t alloc_inside(ac_arena *a, char *base, uint64_t len, uint64_t owner);

int64_t ac_arena_alloc(ac_arena *a, char *base, uint64_t len, uint64_t owner) {
  if (len > ac_arena_max_payload(a)) return AC_ETOOBIG;
  gate_enter(a);
  int64_t off = alloc_inside(a, base, len, owner);
  gate_leave(a);
  if (off == AC_ENOSPACE && try_reset(a)) {
    gate_enter(a);
    off = alloc_inside(a, base, len, owner);
    gate_leave(a);
  }
  return off;
}

static int64_t alloc_inside(ac_arena *a, char *base, uint64_t len, uint64_t owner) {
  int c = class_for(len + AC_BLOCK_HEADER);
  uint64_t npages = UINT64_C(1) << c;
  uint64_t page;
  uint64_t idx = pop_free(a, base, c);
  if (idx) {
    page = idx - 1;
    goto found;
  }
  uint64_t bump = atomic_load_explicit(&a->bump, memory_order_relaxed);
  while (bump + npages <= a->pages) {
    if (atomic_compare_exchange_weak_explicit(&a->bump, &bump, bump + npages,
                                              memory_order_acq_rel, memory_order_relaxed)) {
      page = bump;
      goto found;
    }
  }
  /* No fresh space: split a larger free block (buddy style, without merging back), keeping the
   * low part and returning the upper halves to the smaller classes. */
  for (int cc = c + 1; cc < AC_ARENA_CLASSES; cc++) {
    idx = pop_free(a, base, cc);
    if (!idx) continue;
    page = idx - 1;
    for (int x = cc - 1; x >= c; x--) push_free(a, base, page + (UINT64_C(1) << x), x);
    goto found;
  }
  return AC_ENOSPACE;
found:;
  uint64_t off = page_off(a, page);
  ac_block *b = ac_block_at(base, off);
  b->cls = (uint32_t)c;
  b->len = len;
  atomic_store_explicit(&b->next, 0, memory_order_relaxed);
  atomic_store_explicit(&b->owner, owner, memory_order_relaxed);
  atomic_store_explicit(&b->refs, 0, memory_order_relaxed);
  atomic_fetch_add_explicit(&a->allocs, 1, memory_order_relaxed);
  /* Counted before it is marked live, as ac_arena_free uncounts after marking free: a process
   * killed between the two leaves bytes_in_use high, never below the live blocks' bytes. */
  atomic_fetch_add_explicit(&a->bytes_in_use, npages << AC_PAGE_SHIFT, memory_order_relaxed);
  atomic_store_explicit(&b->state, AC_BLOCK_PRIVATE, memory_order_release);
  return (int64_t)off;
}

int ac_arena_check(const ac_arena *a, const char *base, uint64_t off, uint64_t len) {
  if (off < a->base_off || ((off - a->base_off) & ((1u << AC_PAGE_SHIFT) - 1))) return AC_ECORRUPT;
  uint64_t page = (off - a->base_off) >> AC_PAGE_SHIFT;
  if (page >= atomic_load_explicit(&((ac_arena *)a)->bump, memory_order_acquire)) return AC_ECORRUPT;
  const ac_block *b = (const ac_block *)(base + off);
  if (b->cls >= AC_ARENA_CLASSES) return AC_ECORRUPT;
  uint64_t npages = UINT64_C(1) << b->cls;
  if (page + npages > a->pages) return AC_ECORRUPT;
  if (len > (npages << AC_PAGE_SHIFT) - AC_BLOCK_HEADER) return AC_ECORRUPT;
  if (atomic_load_explicit(&((ac_block *)b)->state, memory_order_acquire) == AC_BLOCK_FREE)
    return AC_ECORRUPT;
  return 0;
}

int ac_arena_free(ac_arena *a, char *base, uint64_t off) {
  gate_enter(a);
  int rc = ac_arena_check(a, base, off, 0);
  if (rc) {
    gate_leave(a);
    return rc;
  }
  ac_block *b = ac_block_at(base, off);
  uint32_t state = atomic_exchange_explicit(&b->state, AC_BLOCK_FREE, memory_order_acq_rel);
  if (state == AC_BLOCK_FREE) { /* a double free lost the race */
    gate_leave(a);
    return AC_ECORRUPT;
  }
  int c = (int)b->cls;
  atomic_fetch_add_explicit(&a->frees, 1, memory_order_relaxed);
  /* Pushed before it stops counting as in use: a reset (which needs nothing in use) never sees
   * a block on its way to a free list. */
  push_free(a, base, (off - a->base_off) >> AC_PAGE_SHIFT, c);
  atomic_fetch_sub_explicit(&a->bytes_in_use, (UINT64_C(1) << c) << AC_PAGE_SHIFT,
                            memory_order_release);
  gate_leave(a);
  return 0;
}
