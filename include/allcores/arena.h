/* arena.h: a lock-free block allocator inside the shared region, for payloads too big for a slot.
 *
 * Contract:
 * - Blocks are power-of-two runs of 4 KiB pages (class c holds 2^(c+12) bytes including a 64-byte
 *   header). Free blocks of each class sit on a Treiber stack whose head carries a 20-bit tag
 *   against ABA; fresh space is carved from a bump pointer. Memory is never returned to the kernel
 *   while the region lives, so a block's pages, once touched, stay mapped and warm for reuse.
 * - Every operation is one compare-and-swap, so a process killed at any point can at worst leak
 *   the block it was handling; the owner tag in each header lets the parent reclaim it.
 * - Offsets, never pointers, cross processes: each process maps the region at its own address.
 * - Segments: an arena may be cut into segments that each process maps only once it meets an
 *   offset inside them (ac_arena_map), so that address space grows with the payloads in flight
 *   instead of being reserved up front: the first segment holds seg_pages pages, segment k >= 1
 *   holds pages [seg_pages << (k-1), seg_pages << k), and the last one, the latest to start in
 *   the arena's lower half (never the first segment), runs to the arena's end. A block never
 *   straddles two segments (the bump pointer skips to the next segment, and the skipped pages go
 *   to the free lists), so one mapping holds all of it. The last segment holds at least half the
 *   arena, so the largest block (a power-of-two run inside it) is more than a quarter of it. An
 *   arena with seg_pages 0, or too small for two segments, is one segment.
 * - Free blocks are not merged one by one; instead, when an allocation finds no room while no
 *   block at all is in use, the arena resets itself to one fresh run (so a large block is always
 *   available again once everything is free). Every alloc and free passes a gate word (a count
 *   of processes inside, and the pid of a reset in progress) so that a reset never races with
 *   them; a reset whose process died is finished by the next allocator that finds it. A process
 *   that marks its entries (ac_arena_set_gate_mark: the pool's workers, in their slot record) and
 *   is killed inside an alloc or free is taken out of the gate by whoever reaps it
 *   (ac_arena_repair_gate); one killed in the few instructions between the count and its mark,
 *   or one that keeps no mark, stays counted, which only disables resets.
 * Errors: ac_arena_alloc returns AC_ETOOBIG when no class can hold len, AC_ENOSPACE when the arena
 * is exhausted right now (retry after frees), -ENOMEM when this process cannot map the segment a
 * block lies in (its address space is exhausted: RLIMIT_AS); ac_arena_check returns -ENOMEM for
 * that too, while ac_arena_free still frees such a block (it maps just the header's page). */
#ifndef ALLCORES_ARENA_H
#define ALLCORES_ARENA_H

#include <stdatomic.h>
#include <stdint.h>

#define AC_PAGE_SHIFT 12
#define AC_ARENA_CLASSES 32
#define AC_BLOCK_HEADER 64

enum { AC_BLOCK_FREE = 0, AC_BLOCK_PRIVATE = 1, AC_BLOCK_PUBLISHED = 2, AC_BLOCK_SHARED = 3 };

#define AC_ARENA_SEGMENTS 48 /* enough for 2^44 pages of first segments of one page */

typedef struct ac_arena {
  uint64_t base_off;  /* offset of the first page from the region's start */
  uint64_t pages;     /* size of the arena in pages */
  uint64_t seg_pages; /* pages of the first segment; 0: the arena is one segment */
  uint64_t last_start; /* page where the last segment starts (it runs to the end) */
  uint64_t max_payload; /* what the largest block carries */
  _Atomic uint64_t bump;
  _Atomic uint64_t free_head[AC_ARENA_CLASSES]; /* tag << 44 | (page index + 1) */
  _Atomic uint64_t allocs, frees, bytes_in_use;
  _Atomic uint64_t gate;  /* bit 63: a reset is running, by pid (bits 32-62); bits 0-31: inside */
  _Atomic uint64_t resets;
} ac_arena;

typedef struct ac_block {
  _Atomic uint64_t next; /* free-stack link: page index + 1; 0 ends the stack */
  _Atomic uint32_t state;
  uint32_t cls;
  _Atomic uint64_t owner; /* who allocated it (a tag chosen by the caller) */
  _Atomic int64_t refs;   /* holders of a block shared by reference (region.h); 0 otherwise */
  uint64_t len;           /* payload bytes in use */
  uint64_t user[3];
} ac_block;

/* How one process reaches an arena's pages (process-local). Offsets below `mapped` are at
 * base + off; a segment past it is mapped from fd, at its own address, the first time an offset
 * inside it is translated, and stays mapped (views of its blocks stay valid) until
 * ac_arena_map_release. Translations may run in any thread. A forked child inherits the
 * mappings and the table with its memory. */
typedef struct ac_arena_map {
  char *base;      /* offset 0 of the shared object in this process */
  uint64_t mapped; /* bytes mapped at base (UINT64_MAX: all of them) */
  int fd;          /* the shared object, to map further segments from; -1: none */
  uint64_t base_off, pages, seg_pages, last_start; /* the arena's geometry (fixed once set) */
  _Atomic(char *) seg[AC_ARENA_SEGMENTS];
} ac_arena_map;

/* Prepares an arena covering [base_off, base_off + bytes) of the region, cut into segments from a
 * first one of first_segment_bytes (a multiple of the page size; 0 or >= bytes: one segment). */
int ac_arena_init(ac_arena *a, uint64_t base_off, uint64_t bytes, uint64_t first_segment_bytes);
/* A map under which the whole object is mapped at base (no segment is ever mapped). */
void ac_arena_map_flat(ac_arena_map *m, char *base);
/* A map of arena a: [0, mapped) of fd is at base; its segments past that are mapped on demand. */
void ac_arena_map_init(ac_arena_map *m, const ac_arena *a, char *base, uint64_t mapped, int fd);
/* Unmaps the segments this map mapped (the caller unmaps base itself). */
void ac_arena_map_release(ac_arena_map *m);
/* This process's address of offset off, mapping its segment first if needed; NULL (errno set)
 * when the segment cannot be mapped. */
char *ac_arena_map_slow(ac_arena_map *m, uint64_t off);
static inline char *ac_arena_addr(ac_arena_map *m, uint64_t off) {
  return off < m->mapped ? m->base + off : ac_arena_map_slow(m, off);
}
/* The one page at off (a page-aligned offset) mapped on its own, for a process that cannot map
 * its whole segment; NULL (errno set) when even that fails. ac_arena_map_unpage unmaps it. */
void *ac_arena_map_page(ac_arena_map *m, uint64_t off);
void ac_arena_map_unpage(void *page);
/* The reverse, for an address inside base's mapping or a segment: sets *off, and *room to the
 * bytes from `at` to the end of that mapping, *back to those from its start to `at`.
 * Returns 0, or -EINVAL when `at` is in none of them. */
int ac_arena_map_find(const ac_arena_map *m, const char *at, uint64_t *off, uint64_t *back,
                      uint64_t *room);

/* Segment geometry, in pages from the arena's start: where the last segment of an arena of
 * `pages` pages starts (0 for one segment), the segment holding page p, and where that segment
 * starts and ends. */
uint64_t ac_arena_last_start(uint64_t seg_pages, uint64_t pages);
int ac_arena_segment_of(uint64_t seg_pages, uint64_t last_start, uint64_t p);
uint64_t ac_arena_segment_start(uint64_t seg_pages, int k);
uint64_t ac_arena_segment_end(uint64_t seg_pages, uint64_t last_start, uint64_t pages, uint64_t p);

/* Largest payload a single block can carry. */
uint64_t ac_arena_max_payload(const ac_arena *a);
/* Bytes of arena a payload of len bytes occupies (its class's block size), 0 if none holds it. */
uint64_t ac_arena_block_bytes(const ac_arena *a, uint64_t len);
/* Allocates a block for len payload bytes, state PRIVATE, tagged with owner. Returns the block's
 * offset from the region's start (> 0) or a negative code. */
int64_t ac_arena_alloc(ac_arena *a, ac_arena_map *m, uint64_t len, uint64_t owner);
/* Returns a block to its class. Returns 0, or AC_ECORRUPT for an offset that is not a block. */
int ac_arena_free(ac_arena *a, ac_arena_map *m, uint64_t off);
/* This thread's allocs and frees from now on count themselves in *mark while inside the gate
 * (NULL: no mark). Process-local: a forked child inherits it with its memory. */
void ac_arena_set_gate_mark(_Atomic uint32_t *mark);
/* For a process known to be dead whose mark this is: takes its entries out of the gate. */
void ac_arena_repair_gate(ac_arena *a, _Atomic uint32_t *mark);
/* Checks that off designates an allocated block of this arena able to hold len bytes (mapping
 * its segment in this process). */
int ac_arena_check(const ac_arena *a, ac_arena_map *m, uint64_t off, uint64_t len);

/* A block's header and payload. Only for an offset already checked or allocated in this process
 * (its segment is mapped): anything else goes through ac_arena_check first. */
static inline ac_block *ac_block_at(ac_arena_map *m, uint64_t off) {
  return (ac_block *)ac_arena_addr(m, off);
}
static inline void *ac_block_data(ac_arena_map *m, uint64_t off) {
  return ac_arena_addr(m, off) + AC_BLOCK_HEADER;
}

#endif
