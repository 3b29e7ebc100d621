/* arena.c: size-classed lock-free block allocation in the shared region (see arena.h). */
#include "allcores/arena.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "allcores/errors.h"

#define IDX_BITS 44
#define IDX_MASK ((UINT64_C(1) << IDX_BITS) - 1)

static uint64_t compute_max_payload(const ac_arena *a);

int ac_arena_init(ac_arena *a, uint64_t base_off, uint64_t bytes, uint64_t first_segment_bytes) {
  if ((base_off | first_segment_bytes) & ((1u << AC_PAGE_SHIFT) - 1)) return -EINVAL;
  a->base_off = base_off;
  a->pages = bytes >> AC_PAGE_SHIFT;
  a->seg_pages = first_segment_bytes >> AC_PAGE_SHIFT;
  if (a->seg_pages * 2 > a->pages) a->seg_pages = 0; /* no room for a second segment */
  a->last_start = ac_arena_last_start(a->seg_pages, a->pages);
  a->max_payload = compute_max_payload(a);
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


static uint64_t compute_max_payload(const ac_arena *a) {
  /* The most a block can span: the largest segment, which is the last (it holds at least half
   * the arena, and every other one lies below its start). */
  uint64_t room = a->seg_pages ? a->pages - a->last_start : a->pages;
  uint64_t pages = 1;
  while (pages * 2 <= room && pages * 2 <= (UINT64_C(1) << (AC_ARENA_CLASSES - 1))) pages *= 2;
  return (pages << AC_PAGE_SHIFT) - AC_BLOCK_HEADER;
}

uint64_t ac_arena_max_payload(const ac_arena *a) { return a->max_payload; }

static uint64_t page_off(const ac_arena *a, uint64_t page) {
  return a->base_off + (page << AC_PAGE_SHIFT);
}

/* b is the header of the block at page, in this process (its segment, or a page mapped for it). */
static void push_free(ac_arena *a, ac_block *b, uint64_t page, int c) {
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
static uint64_t pop_free(ac_arena *a, ac_arena_map *m, int c) {
  uint64_t head = atomic_load_explicit(&a->free_head[c], memory_order_acquire);
  for (;;) {
    uint64_t idx = head & IDX_MASK;
    if (idx == 0) return 0;
    ac_block *b = ac_block_at(m, page_off(a, idx - 1));
    if (!b) return 0; /* its segment cannot be mapped here: as good as empty for this process */
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

static int64_t alloc_inside(ac_arena *a, ac_arena_map *m, uint64_t len, uint64_t owner);

int64_t ac_arena_alloc(ac_arena *a, ac_arena_map *m, uint64_t len, uint64_t owner) {
  if (len > ac_arena_max_payload(a)) return AC_ETOOBIG;
  gate_enter(a);
  int64_t off = alloc_inside(a, m, len, owner);
  gate_leave(a);
  if ((off == AC_ENOSPACE || off == -ENOMEM) && try_reset(a)) {
    gate_enter(a);
    off = alloc_inside(a, m, len, owner);
    gate_leave(a);
  }
  return off;
}

/* Pushes the free block at page, writing its header through a page mapped for that alone
 * when its segment lies past what this process maps up front: skipping a segment must not cost
 * the address space of all of it. Returns 0, or -1 when even that page cannot be mapped. */
static int push_skipped(ac_arena *a, ac_arena_map *m, uint64_t page, int c) {
  uint64_t off = page_off(a, page);
  if (off < m->mapped) {
    push_free(a, ac_block_at(m, off), page, c);
    return 0;
  }
  ac_block *b = ac_arena_map_page(m, off);
  if (!b) return -1;
  push_free(a, b, page, c);
  ac_arena_map_unpage(b);
  return 0;
}

/* Pages [from, to) skipped by the bump pointer at a segment's end go to the free lists, as
 * power-of-two blocks that each stay inside one segment. They are pushed from the top down, so
 * that the lowest, in the segments every process has mapped already, are used first. Pages whose
 * header cannot be mapped here stay unused until the next reset. */
static void give_back_pages(ac_arena *a, ac_arena_map *m, uint64_t from, uint64_t to) {
  while (to > from) {
    /* The segment holding page to - 1, cut at from. */
    uint64_t start = ac_arena_segment_start(
        a->seg_pages, ac_arena_segment_of(a->seg_pages, a->last_start, to - 1));
    if (start < from) start = from;
    for (uint64_t end = to; end > start;) {
      int c = 63 - __builtin_clzll(end - start);
      if (c >= AC_ARENA_CLASSES) c = AC_ARENA_CLASSES - 1;
      end -= UINT64_C(1) << c;
      if (push_skipped(a, m, end, c)) break;
    }
    to = start;
  }
}

static int64_t alloc_inside(ac_arena *a, ac_arena_map *m, uint64_t len, uint64_t owner) {
  int c = class_for(len + AC_BLOCK_HEADER);
  uint64_t npages = UINT64_C(1) << c;
  uint64_t page;
  int unmappable = 0;
  uint64_t idx = pop_free(a, m, c);
  if (idx) {
    page = idx - 1;
    goto found;
  }
  /* Then split a larger free block (buddy style, without merging back), keeping the low part
   * and returning the upper halves to the smaller classes: space already carved is used before
   * the bump pointer carves more, so that the arena grows into a new segment (more address
   * space in every process that meets it) only when its carved part cannot serve. */
  for (int cc = c + 1; cc < AC_ARENA_CLASSES; cc++) {
    idx = pop_free(a, m, cc);
    if (!idx) continue;
    page = idx - 1;
    for (int x = cc - 1; x >= c; x--) {
      uint64_t half = page + (UINT64_C(1) << x);
      push_free(a, ac_block_at(m, page_off(a, half)), half, x);
    }
    goto found;
  }
  uint64_t bump = atomic_load_explicit(&a->bump, memory_order_relaxed);
  for (;;) {
    /* Then fresh space. A block never straddles two segments: past the end of this one, it
     * starts the next. */
    page = bump;
    while (page < a->pages && page + npages > ac_arena_segment_end(a->seg_pages, a->last_start, a->pages, page))
      page = ac_arena_segment_end(a->seg_pages, a->last_start, a->pages, page);
    if (page + npages > a->pages) break;
    if (!ac_arena_addr(m, page_off(a, page))) { /* its segment first: nothing claimed yet */
      unmappable = 1;
      break;
    }
    if (atomic_compare_exchange_weak_explicit(&a->bump, &bump, page + npages,
                                              memory_order_acq_rel, memory_order_relaxed)) {
      give_back_pages(a, m, bump, page);
      goto found;
    }
  }
  return unmappable ? -ENOMEM : AC_ENOSPACE;
found:;
  uint64_t off = page_off(a, page);
  ac_block *b = ac_block_at(m, off);
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

/* Whether off may designate a block at all, before its header is read. */
static int check_offset(const ac_arena *a, uint64_t off) {
  if (off < a->base_off || ((off - a->base_off) & ((1u << AC_PAGE_SHIFT) - 1))) return AC_ECORRUPT;
  uint64_t page = (off - a->base_off) >> AC_PAGE_SHIFT;
  if (page >= atomic_load_explicit(&((ac_arena *)a)->bump, memory_order_acquire)) return AC_ECORRUPT;
  return 0;
}

/* The rest of ac_arena_check, on the header b of the block at off. */
static int check_header(const ac_arena *a, const ac_block *b, uint64_t off, uint64_t len) {
  uint64_t page = (off - a->base_off) >> AC_PAGE_SHIFT;
  if (b->cls >= AC_ARENA_CLASSES) return AC_ECORRUPT;
  uint64_t npages = UINT64_C(1) << b->cls;
  if (page + npages > ac_arena_segment_end(a->seg_pages, a->last_start, a->pages, page)) return AC_ECORRUPT;
  if (len > (npages << AC_PAGE_SHIFT) - AC_BLOCK_HEADER) return AC_ECORRUPT;
  if (atomic_load_explicit(&((ac_block *)b)->state, memory_order_acquire) == AC_BLOCK_FREE)
    return AC_ECORRUPT;
  return 0;
}

int ac_arena_check(const ac_arena *a, ac_arena_map *m, uint64_t off, uint64_t len) {
  int rc = check_offset(a, off);
  if (rc) return rc;
  const ac_block *b = ac_block_at(m, off);
  return b ? check_header(a, b, off, len) : -ENOMEM;
}

/* Frees the checked block whose header is b. */
static int free_block(ac_arena *a, ac_block *b, uint64_t off) {
  uint32_t state = atomic_exchange_explicit(&b->state, AC_BLOCK_FREE, memory_order_acq_rel);
  if (state == AC_BLOCK_FREE) return AC_ECORRUPT; /* a double free lost the race */
  int c = (int)b->cls;
  atomic_fetch_add_explicit(&a->frees, 1, memory_order_relaxed);
  /* Pushed before it stops counting as in use: a reset (which needs nothing in use) never sees
   * a block on its way to a free list. */
  push_free(a, b, (off - a->base_off) >> AC_PAGE_SHIFT, c);
  atomic_fetch_sub_explicit(&a->bytes_in_use, (UINT64_C(1) << c) << AC_PAGE_SHIFT,
                            memory_order_release);
  return 0;
}

int ac_arena_free(ac_arena *a, ac_arena_map *m, uint64_t off) {
  gate_enter(a);
  int rc = check_offset(a, off);
  if (rc == 0) {
    /* Freeing touches only the header: a process that cannot map the block's segment (its
     * address space is full) maps that one page for the time of the free, so that no block is
     * ever left in use for want of room. */
    void *page = NULL;
    ac_block *b = ac_block_at(m, off);
    if (!b) b = page = ac_arena_map_page(m, off);
    rc = !b ? -ENOMEM : check_header(a, b, off, 0);
    if (rc == 0) rc = free_block(a, b, off);
    if (page) ac_arena_map_unpage(page);
  }
  gate_leave(a);
  return rc;
}
