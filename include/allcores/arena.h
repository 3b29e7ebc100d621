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
 * is exhausted right now (retry after frees). */
#ifndef ALLCORES_ARENA_H
#define ALLCORES_ARENA_H

#include <stdatomic.h>
#include <stdint.h>

#define AC_PAGE_SHIFT 12
#define AC_ARENA_CLASSES 32
#define AC_BLOCK_HEADER 64

enum { AC_BLOCK_FREE = 0, AC_BLOCK_PRIVATE = 1, AC_BLOCK_PUBLISHED = 2, AC_BLOCK_SHARED = 3 };

typedef struct ac_arena {
  uint64_t base_off; /* offset of the first page from the region's start */
  uint64_t pages;    /* size of the arena in pages */
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

/* Prepares an arena covering [base_off, base_off + bytes) of the region. */
int ac_arena_init(ac_arena *a, uint64_t base_off, uint64_t bytes);
/* Largest payload a single block can carry. */
uint64_t ac_arena_max_payload(const ac_arena *a);
/* Bytes of arena a payload of len bytes occupies (its class's block size), 0 if none holds it. */
uint64_t ac_arena_block_bytes(const ac_arena *a, uint64_t len);
/* Allocates a block for len payload bytes, state PRIVATE, tagged with owner. Returns the block's
 * offset from the region's start (> 0) or a negative code. */
int64_t ac_arena_alloc(ac_arena *a, char *base, uint64_t len, uint64_t owner);
/* Returns a block to its class. Returns 0, or AC_ECORRUPT for an offset that is not a block. */
int ac_arena_free(ac_arena *a, char *base, uint64_t off);
/* This thread's allocs and frees from now on count themselves in *mark while inside the gate
 * (NULL: no mark). Process-local: a forked child inherits it with its memory. */
void ac_arena_set_gate_mark(_Atomic uint32_t *mark);
/* For a process known to be dead whose mark this is: takes its entries out of the gate. */
void ac_arena_repair_gate(ac_arena *a, _Atomic uint32_t *mark);
/* Checks that off designates an allocated block of this arena able to hold len bytes. */
int ac_arena_check(const ac_arena *a, const char *base, uint64_t off, uint64_t len);

static inline ac_block *ac_block_at(char *base, uint64_t off) { return (ac_block *)(base + off); }
static inline void *ac_block_data(char *base, uint64_t off) { return base + off + AC_BLOCK_HEADER; }

#endif
