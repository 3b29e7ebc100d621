/* fuzz_arena_ops.c: the arena's alloc/free state machine driven by fuzz input, against a model
 * that predicts every answer: which offset an allocation returns (free stacks are LIFO, then a
 * split of the smallest larger free block, then the bump pointer, then a reset of the whole
 * arena when nothing is in use; in an arena cut into segments, the bump pointer skips to the next
 * segment rather than straddle two, and the pages it skips go to the free lists), AC_ETOOBIG and
 * AC_ENOSPACE
 * exactly when they are due, that live blocks never overlap and keep their bytes, that
 * ac_arena_check accepts exactly the live blocks, and that frees of anything else (twice, an
 * interior or unaligned offset, past the end) are refused. The arena sits in a heap buffer of
 * its exact size, so ASan sees any access outside it. */
#include <stdlib.h>

#include "allcores/arena.h"
#include "allcores/errors.h"
#include "fuzz.h"

#define PAGE 4096u
#define MAX_PAGES 256
#define MAX_LIVE 512

typedef struct model {
  uint64_t pages, bump, seg_pages, last_start;
  uint64_t stack[AC_ARENA_CLASSES][MAX_PAGES]; /* free blocks per class, top last (page idx) */
  int depth[AC_ARENA_CLASSES];
  uint64_t live_page[MAX_LIVE], live_len[MAX_LIVE];
  int live_cls[MAX_LIVE];
  uint8_t live_fill[MAX_LIVE];
  int nlive;
  uint8_t ever_start[MAX_PAGES]; /* pages that ever began a block */
  uint64_t in_use;
} model;

static int class_for(uint64_t total) {
  int c = 0;
  while (c < AC_ARENA_CLASSES && ((uint64_t)PAGE << c) < total) c++;
  return c;
}

static void push_free(model *m, uint64_t page, int c) {
  m->stack[c][m->depth[c]++] = page;
  m->ever_start[page] = 1;
}

/* The end of the segment holding page p: segment 0 is [0, seg_pages), segment k >= 1 is
 * [seg_pages << (k-1), seg_pages << k), and the last, from last_start, runs to the end. */
static uint64_t segment_end(const model *m, uint64_t p) {
  if (m->seg_pages == 0 || p >= m->last_start) return m->pages;
  uint64_t end = m->seg_pages;
  while (end <= p) end *= 2;
  return end;
}

/* What one block can carry: the largest power of two of pages that fits in a segment. */
static uint64_t model_max_payload(const model *m) {
  uint64_t best = 0;
  for (uint64_t p = 0; p < m->pages; p = segment_end(m, p))
    if (segment_end(m, p) - p > best) best = segment_end(m, p) - p;
  uint64_t pages = 1;
  while (pages * 2 <= best) pages *= 2;
  return pages * PAGE - AC_BLOCK_HEADER;
}

/* The page the arena must hand out for len bytes, or a negative code. */
static int64_t predict_alloc(model *m, uint64_t len, uint64_t max_payload, int *cls) {
  if (len > max_payload) return AC_ETOOBIG;
  int c = class_for(len + AC_BLOCK_HEADER);
  *cls = c;
  if (m->depth[c]) return (int64_t)m->stack[c][--m->depth[c]];
  for (int cc = c + 1; cc < AC_ARENA_CLASSES; cc++) {
    if (!m->depth[cc]) continue;
    uint64_t page = m->stack[cc][--m->depth[cc]];
    for (int x = cc - 1; x >= c; x--) push_free(m, page + (UINT64_C(1) << x), x);
    return (int64_t)page;
  }
  uint64_t npages = UINT64_C(1) << c;
  uint64_t page = m->bump;
  while (page < m->pages && page + npages > segment_end(m, page)) page = segment_end(m, page);
  if (page + npages <= m->pages) {
    /* The skipped pages, segment by segment from the top, each cut from its end into the
     * largest blocks that fit: the lowest block is pushed last, on top of its stack. */
    for (uint64_t to = page; to > m->bump;) {
      uint64_t start = m->bump;
      while (segment_end(m, start) < to) start = segment_end(m, start);
      for (uint64_t end = to; end > start;) {
        int x = 0;
        while ((UINT64_C(2) << x) <= end - start) x++;
        end -= UINT64_C(1) << x;
        push_free(m, end, x);
      }
      to = start;
    }
    m->bump = page + npages;
    return (int64_t)page;
  }
  if (m->in_use == 0 && m->bump != 0) {
    /* Nothing in use: the arena resets to one fresh run and tries once more (which the bump
     * pointer, back at 0, satisfies: len fits the arena). */
    for (int cc = 0; cc < AC_ARENA_CLASSES; cc++) m->depth[cc] = 0;
    m->bump = 0;
    return predict_alloc(m, len, max_payload, cls);
  }
  return AC_ENOSPACE;
}

static int live_index(const model *m, uint64_t page) {
  for (int i = 0; i < m->nlive; i++)
    if (m->live_page[i] == page) return i;
  return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  static model m;
  memset(&m, 0, sizeof m);
  m.pages = 1 + fz_below(&f, MAX_PAGES);
  /* One segment, or segments from a first one of 1 to 16 pages. */
  uint32_t seg_choice = fz_below(&f, 18);
  m.seg_pages = seg_choice >= 17 ? 0 : seg_choice;
  /* The control block lives apart; the region is [0, base_off + pages): base_off = one page. */
  size_t bytes = (size_t)(m.pages + 1) * PAGE;
  char *base = aligned_alloc(PAGE, bytes);
  ac_arena *a = malloc(sizeof *a);
  FUZZ_CHECK(base && a);
  memset(base, 0, bytes); /* fresh region pages are zero */
  FUZZ_CHECK(ac_arena_init(a, PAGE, m.pages * PAGE, m.seg_pages * PAGE) == 0);
  if (m.seg_pages * 2 > m.pages) m.seg_pages = 0; /* no room for two: one segment */
  /* The last segment starts at the highest first-segment-times-a-power-of-two in the lower half
   * of the arena. */
  for (m.last_start = m.seg_pages; m.seg_pages && m.last_start * 2 <= m.pages / 2;)
    m.last_start *= 2;
  ac_arena_map map;
  ac_arena_map_flat(&map, base);
  uint64_t max_payload = ac_arena_max_payload(a);
  FUZZ_CHECK(max_payload == model_max_payload(&m));
  uint64_t allocs = 0, frees = 0;

  for (int step = 0; step < 2000 && !fz_done(&f); step++) {
    switch (fz_u8(&f) % 6) {
    case 0:
    case 1: { /* allocate */
      uint64_t len;
      switch (fz_u8(&f) % 4) {
      case 0: len = fz_below(&f, 200); break;
      case 1: len = fz_below(&f, 5 * PAGE); break;
      case 2: len = fz_u32(&f) % (max_payload + 2); break;
      default: len = fz_u64(&f); break;
      }
      if (m.nlive == MAX_LIVE) break;
      int cls = -1;
      int64_t want = predict_alloc(&m, len, max_payload, &cls);
      int64_t got = ac_arena_alloc(a, &map, len, 7);
      if (want < 0) {
        FUZZ_CHECK(got == want);
        break;
      }
      FUZZ_CHECK(got == (int64_t)(PAGE + (uint64_t)want * PAGE));
      ac_block *b = ac_block_at(&map, (uint64_t)got);
      FUZZ_CHECK(b->cls == (uint32_t)cls && b->len == len && b->owner == 7);
      FUZZ_CHECK(atomic_load(&b->state) == AC_BLOCK_PRIVATE);
      FUZZ_CHECK((uint64_t)want + (UINT64_C(1) << cls) <= segment_end(&m, (uint64_t)want));
      for (int i = 0; i < m.nlive; i++) /* never overlaps a live block */
        FUZZ_CHECK((uint64_t)want + (UINT64_C(1) << cls) <= m.live_page[i] ||
                   m.live_page[i] + (UINT64_C(1) << m.live_cls[i]) <= (uint64_t)want);
      /* Payload bytes with the high bit set: never a plausible header (class < 32) inside. */
      uint8_t fill = (uint8_t)(0x80 | (allocs & 0x7f));
      memset(ac_block_data(&map, (uint64_t)got), fill, len);
      int i = m.nlive++;
      m.live_page[i] = (uint64_t)want;
      m.live_len[i] = len;
      m.live_cls[i] = cls;
      m.live_fill[i] = fill;
      m.ever_start[want] = 1;
      m.in_use += (uint64_t)PAGE << cls;
      allocs++;
      break;
    }
    case 2: { /* free a live block, after checking its bytes survived */
      if (!m.nlive) break;
      int i = (int)fz_below(&f, (uint32_t)m.nlive);
      uint64_t off = PAGE + m.live_page[i] * PAGE;
      const uint8_t *d = ac_block_data(&map, off);
      for (uint64_t j = 0; j < m.live_len[i]; j++) FUZZ_CHECK(d[j] == m.live_fill[i]);
      FUZZ_CHECK(ac_arena_check(a, &map, off, m.live_len[i]) == 0);
      FUZZ_CHECK(ac_arena_free(a, &map, off) == 0);
      push_free(&m, m.live_page[i], m.live_cls[i]);
      m.in_use -= (uint64_t)PAGE << m.live_cls[i];
      m.nlive--;
      m.live_page[i] = m.live_page[m.nlive];
      m.live_len[i] = m.live_len[m.nlive];
      m.live_cls[i] = m.live_cls[m.nlive];
      m.live_fill[i] = m.live_fill[m.nlive];
      frees++;
      break;
    }
    case 3: { /* free or check an offset that is not a live block: always refused */
      uint64_t off;
      switch (fz_u8(&f) % 4) {
      case 0: off = PAGE + fz_below(&f, (uint32_t)m.pages) * PAGE; break; /* a page */
      case 1: off = fz_below(&f, (uint32_t)bytes); break;                 /* any byte */
      case 2: off = fz_u64(&f); break;                                   /* anything */
      default: off = PAGE + (m.pages + fz_below(&f, 4)) * PAGE; break;     /* past the end */
      }
      uint64_t page = (off - PAGE) / PAGE;
      int aligned = off >= PAGE && (off - PAGE) % PAGE == 0 && page < m.pages;
      if (aligned && live_index(&m, page) >= 0) break; /* a live block: case 2's business */
      FUZZ_CHECK(ac_arena_check(a, &map, off, 0) == AC_ECORRUPT);
      /* Interior pages of live blocks hold payload, whose bytes never form a header; pages
       * that began a block and are free now carry a FREE header. */
      FUZZ_CHECK(ac_arena_free(a, &map, off) == AC_ECORRUPT);
      break;
    }
    case 4: { /* check a live block with a length around its room */
      if (!m.nlive) break;
      int i = (int)fz_below(&f, (uint32_t)m.nlive);
      uint64_t off = PAGE + m.live_page[i] * PAGE;
      uint64_t room = ((uint64_t)PAGE << m.live_cls[i]) - AC_BLOCK_HEADER;
      uint64_t len = room - 2 + fz_below(&f, 4);
      FUZZ_CHECK(ac_arena_check(a, &map, off, len) == (len <= room ? 0 : AC_ECORRUPT));
      break;
    }
    default: /* the arena's own counters agree with the model */
      FUZZ_CHECK(atomic_load(&a->bytes_in_use) == m.in_use);
      FUZZ_CHECK(atomic_load(&a->allocs) == allocs && atomic_load(&a->frees) == frees);
      FUZZ_CHECK(atomic_load(&a->bump) == m.bump);
      break;
    }
  }
  FUZZ_CHECK(atomic_load(&a->bytes_in_use) == m.in_use);
  free(a);
  free(base);
  return 0;
}
