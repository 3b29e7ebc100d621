/* arena_map.c: how a process reaches an arena's pages: the segment geometry, and segments mapped
 * the first time this process meets an offset inside them (see arena.h). */
#include "allcores/arena.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

/* The index of the segment holding page p, were there no last segment. */
static int plain_segment_of(uint64_t seg_pages, uint64_t p) {
  return p < seg_pages ? 0 : 64 - __builtin_clzll(p / seg_pages);
}

uint64_t ac_arena_segment_start(uint64_t seg_pages, int k) {
  return k == 0 ? 0 : seg_pages << (k - 1);
}

uint64_t ac_arena_last_start(uint64_t seg_pages, uint64_t pages) {
  if (seg_pages == 0) return 0;
  uint64_t start = seg_pages; /* segment 1 at least: segment 0 is the part mapped up front */
  while (start * 2 <= pages / 2) start *= 2;
  return start;
}

int ac_arena_segment_of(uint64_t seg_pages, uint64_t last_start, uint64_t p) {
  if (seg_pages == 0) return 0;
  if (p >= last_start) return plain_segment_of(seg_pages, last_start);
  return plain_segment_of(seg_pages, p);
}

uint64_t ac_arena_segment_end(uint64_t seg_pages, uint64_t last_start, uint64_t pages,
                              uint64_t p) {
  if (seg_pages == 0 || p >= last_start) return pages;
  return seg_pages << plain_segment_of(seg_pages, p);
}

void ac_arena_map_flat(ac_arena_map *m, char *base) {
  m->base = base;
  m->mapped = UINT64_MAX;
  m->fd = -1;
  m->base_off = m->pages = m->seg_pages = m->last_start = 0;
}

void ac_arena_map_init(ac_arena_map *m, const ac_arena *a, char *base, uint64_t mapped, int fd) {
  memset(m, 0, sizeof *m);
  m->base = base;
  m->mapped = mapped;
  m->fd = fd;
  m->base_off = a->base_off;
  m->pages = a->pages;
  m->seg_pages = a->seg_pages;
  m->last_start = a->last_start;
}

/* Segment k's place in the shared object: file offset and length in bytes. */
static void segment_bytes(const ac_arena_map *m, int k, uint64_t *file_off, uint64_t *len) {
  uint64_t first = ac_arena_segment_start(m->seg_pages, k);
  uint64_t end = ac_arena_segment_end(m->seg_pages, m->last_start, m->pages, first);
  *file_off = m->base_off + (first << AC_PAGE_SHIFT);
  *len = (end - first) << AC_PAGE_SHIFT;
}

char *ac_arena_map_slow(ac_arena_map *m, uint64_t off) {
  if (m->fd < 0 || off < m->base_off || ((off - m->base_off) >> AC_PAGE_SHIFT) >= m->pages) {
    errno = EINVAL;
    return NULL;
  }
  int k = ac_arena_segment_of(m->seg_pages, m->last_start, (off - m->base_off) >> AC_PAGE_SHIFT);
  uint64_t file_off, len;
  segment_bytes(m, k, &file_off, &len);
  char *at = atomic_load_explicit(&m->seg[k], memory_order_acquire);
  if (!at) {
    /* Another thread may map it at the same time: the first to publish wins, the other unmaps. */
    void *fresh = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->fd,
                       (off_t)file_off);
    if (fresh == MAP_FAILED) return NULL;
    char *expected = NULL;
    if (atomic_compare_exchange_strong(&m->seg[k], &expected, (char *)fresh)) {
      at = fresh;
    } else {
      munmap(fresh, len);
      at = expected;
    }
  }
  return at + (off - file_off);
}

void ac_arena_map_release(ac_arena_map *m) {
  for (int k = 0; k < AC_ARENA_SEGMENTS; k++) {
    char *at = atomic_exchange(&m->seg[k], NULL);
    if (!at) continue;
    uint64_t file_off, len;
    segment_bytes(m, k, &file_off, &len);
    munmap(at, len);
  }
}

void *ac_arena_map_page(ac_arena_map *m, uint64_t off) {
  if (m->fd < 0) {
    errno = EINVAL;
    return NULL;
  }
  void *page = mmap(NULL, UINT64_C(1) << AC_PAGE_SHIFT, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd,
                    (off_t)off);
  return page == MAP_FAILED ? NULL : page;
}

void ac_arena_map_unpage(void *page) { munmap(page, UINT64_C(1) << AC_PAGE_SHIFT); }

int ac_arena_map_find(const ac_arena_map *m, const char *at, uint64_t *off, uint64_t *back,
                      uint64_t *room) {
  if (at >= m->base && (uint64_t)(at - m->base) < m->mapped) {
    *off = *back = (uint64_t)(at - m->base);
    *room = m->mapped - *off;
    return 0;
  }
  for (int k = 0; k < AC_ARENA_SEGMENTS; k++) {
    char *seg = atomic_load_explicit(&((ac_arena_map *)m)->seg[k], memory_order_acquire);
    if (!seg) continue;
    uint64_t file_off, len;
    segment_bytes(m, k, &file_off, &len);
    if (at >= seg && (uint64_t)(at - seg) < len) {
      *back = (uint64_t)(at - seg);
      *off = file_off + *back;
      *room = len - *back;
      return 0;
    }
  }
  return -EINVAL;
}
