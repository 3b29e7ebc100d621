/* region.h: the pool's one shared memory region and the protocol its processes follow in it.
 *
 * Contract:
 * - One memfd (no name in /dev/shm, nothing to leak) is sized, mapped MAP_SHARED and inherited by
 *   fork; every process of a pool sees: a header, one record per worker slot, the task ring
 *   (parent -> workers), the result ring (workers -> parent) and the arena for big payloads.
 *   Pages are touched lazily and reused, never re-mapped per task. The arena's first segment
 *   (AC_REGION_FIRST_SEGMENT) is mapped with the rest; each process maps its further segments
 *   the first time it meets a block in them (arena.h), so a pool's address space grows with
 *   the payloads it carries, up to the arena's size, instead of being reserved up front.
 * - A worker record says what that worker is doing (state, task id, claims on the rings, blocks it
 *   holds), written by the worker before each step, so that when it dies the parent can tell
 *   exactly which task was running and repair the rings (ac_region_reap).
 * - Payloads: ac_region_send copies the given parts inline into a slot when they fit, else into an
 *   arena block; the receiver gets the block offset and frees it with ac_region_release, or,
 *   for an out-of-band payload (ac_region_keep_in_block), keeps it as zero-copy views that the
 *   last of its holders frees (ac_region_share).
 * - The memfd stays open with the mapping, so that a receiver can also map part of a block
 *   privately (ac_region_map_private): a copy-on-write view of the pages, with no copy made.
 * Functions return 0 or a negative code (errors.h, ring.h). */
#ifndef ALLCORES_REGION_H
#define ALLCORES_REGION_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>

#include "allcores/arena.h"
#include "allcores/ring.h"

#define AC_REGION_MAGIC UINT64_C(0x65726f636c6c61) /* "allcore" */
#define AC_MAX_WORKERS 4096

/* Worker slot states. BUSY is IDLE with task_id != 0. */
enum {
  AC_W_EMPTY = 0,    /* no process */
  AC_W_SPAWN = 1,    /* the parent asked the template for a process */
  AC_W_STARTING = 2, /* forked; running its initializer */
  AC_W_IDLE = 3,     /* in its task loop */
  AC_W_EXITED = 4,   /* reaped by the template; wait_status is valid; the parent handles it */
};

/* What a worker process does when the shutdown word is set. */
enum { AC_SHUTDOWN_NONE = 0, AC_SHUTDOWN_DRAIN = 1, AC_SHUTDOWN_NOW = 2 };

typedef struct ac_worker_rec {
  _Atomic uint32_t state;
  _Atomic int32_t pid;
  _Atomic uint32_t gen;       /* bumped at each spawn into this slot */
  _Atomic uint32_t kill_req;  /* parent -> template: kill this worker (1) */
  _Atomic int32_t wait_status;
  _Atomic uint32_t spawn_errno;
  ac_claim take;                /* take.id: the task being run (0: none); take.block: its payload */
  _Atomic uint64_t push_pos;    /* claim on the result ring */
  _Atomic uint64_t result_block;/* arena block of a result being written; 0 if none */
  _Atomic int64_t started_ns;   /* CLOCK_MONOTONIC when the current task (or item) began */
  _Atomic uint64_t tasks_done;
  _Atomic uint64_t item;        /* index of the item being run inside a chunk */
  _Atomic uint32_t busy;        /* counted in the task ring's consumers_busy */
  _Atomic uint32_t arena_gate;  /* its allocs and frees inside the arena's gate (arena.h) */
  uint8_t pad[128 - 104];
} ac_worker_rec;

typedef struct ac_header {
  uint64_t magic;
  uint32_t version;
  uint32_t nworkers;
  uint64_t size;
  uint64_t off_workers, off_tasks, off_results;
  _Atomic uint32_t shutdown;
  _Atomic uint32_t event_word;    /* bumped when a worker's process state changes */
  _Atomic int32_t parent_pid;
  _Atomic int32_t template_pid;
  _Alignas(64) ac_arena arena;
} ac_header;

/* A process's handle on a mapped region (process-local; the mapping itself is inherited). */
typedef struct ac_region {
  char *base;
  uint64_t size;   /* the whole region, arena included */
  uint64_t mapped; /* the bytes mapped at base: all but the arena's later segments */
  int memfd; /* the region's memfd (kept open while mapped: segments, ac_region_map_private) */
  ac_arena_map *map; /* this process's segments (shared by the views of this region) */
  ac_header *hdr;
  ac_ring *tasks;
  ac_ring *results;
  ac_worker_rec *workers;
} ac_region;

typedef struct ac_region_config {
  uint32_t nworkers;
  uint32_t task_slots;    /* power of two */
  uint32_t result_slots;  /* power of two */
  uint64_t arena_bytes;   /* its size; pages are mapped as needed and allocated when touched */
} ac_region_config;

/* The arena's first segment: what every process maps up front for payloads (16 MiB). */
#define AC_REGION_FIRST_SEGMENT (UINT64_C(16) << 20)

int ac_region_create(ac_region *r, const ac_region_config *cfg);
void ac_region_destroy(ac_region *r);

/* A block's header and payload, for a block allocated or checked (ac_region_check_msg) in this
 * process. */
static inline ac_block *ac_region_block(ac_region *r, uint64_t off) {
  return ac_block_at(r->map, off);
}
static inline void *ac_region_block_data(ac_region *r, uint64_t off) {
  return ac_block_data(r->map, off);
}

/* Maps the pages of r holding [at - before, at + len) again, privately (MAP_PRIVATE: copy on
 * write, so writes through the new mapping never reach the region, and a fork child gets its own
 * copy of what it writes, as with any private memory). The pages are not copied: until written they
 * show the region's contents, so the caller keeps the block allocated (nobody else writes it)
 * while the mapping lives. On success sets *map and *map_len (for munmap) and *at_private, the
 * address of `at` in the new mapping, and returns 0; else a negative errno (-EBADF without a
 * memfd, -EINVAL when the range is not inside the region). */
int ac_region_map_private(const ac_region *r, const char *at, size_t before, size_t len,
                          void **map, size_t *map_len, char **at_private);

/* Sends a message whose payload is the concatenation of parts (total len bytes) on ring q.
 * owner tags an arena block; claim/held record progress for crash repair (may be NULL): *held
 * holds the block offset between allocation and publication. Waits up to timeout_ns for ring space
 * and for arena space. On the task ring, a payload waits while tasks hold 3/4 of the arena (unless
 * the arena is empty): the last quarter is kept for results, so workers can always answer. Where
 * waiting for arena room could be forever, the payload goes at once in a segment of its own
 * (AC_MSG_SEG, protocol.h): a result that finds no block (tasks may hold every block it would
 * need: blocks are split but not merged until the arena empties), and a task that finds none
 * while nothing is in flight (no task queued or running, no result queued: what holds the arena
 * is the parent's zero-copy results). The receiver copies such a payload out. */
#define AC_RESULT_RESERVE_DIV 4 /* 1/4 of the arena is kept for results (see region.c) */
int ac_region_send(ac_region *r, ac_ring *q, ac_msg *msg, const struct iovec *parts, int nparts,
                   uint64_t owner, _Atomic uint64_t *claim, _Atomic uint64_t *held,
                   int64_t timeout_ns, const ac_watch *watch);

/* Where a received payload is: inline bytes (copied into the caller's buffer) or an arena block. */
static inline const void *ac_region_payload(ac_region *r, const ac_msg *m, const void *inline_buf) {
  return m->block ? ac_region_block_data(r, m->block) : inline_buf;
}
/* Validates a received header against the region (a corrupt or hostile frame never reads out of
 * bounds), mapping the segment of its block in this process. Returns 0, AC_ECORRUPT, or -ENOMEM
 * when that segment cannot be mapped here. */
int ac_region_check_msg(ac_region *r, const ac_msg *m);
/* Frees the arena block of a received message, if any. */
int ac_region_release(ac_region *r, uint64_t block);
/* The receiver keeps a received block (a zero-copy view): it is tagged as the parent's, so that
 * reaping its sender never mistakes it for a result that never arrived. */
void ac_region_adopt(ac_region *r, uint64_t block);
/* Whether a received payload in a block stays there, as zero-copy views (ac_region_share),
 * rather than being copied out: only an out-of-band one does (AC_MSG_OOB, protocol.h); a worker's
 * task always, a result for the parent only while more than half the arena is free: past that,
 * results kept alive could leave workers no room for theirs (a hang). */
int ac_region_keep_in_block(ac_region *r, const ac_msg *m, int for_worker);
/* The receiver copied the payload of a received block out: frees the block. `held` (may be NULL)
 * is a worker record's note of it (take.block), cleared first so that reaping the worker never
 * frees the block a second time. */
void ac_region_consume(ac_region *r, uint64_t block, _Atomic uint64_t *held);
/* Zero-copy views of a received block: its holders are counted in the block's refs (ac_block),
 * and the last one to let go frees it. ac_region_share() counts `holders` on a block that had
 * none: the views made of it, plus, for a worker's view of its own task's payload, the worker's
 * record (take.block), which lets go when the task is finished (ac_worker_send_result). Until
 * then the record still names the block for ac_region_reap, so a worker that dies holding views
 * never leaks it. ac_region_unshare() lets one holder go. */
void ac_region_share(ac_region *r, uint64_t block, int64_t holders);
void ac_region_unshare(ac_region *r, uint64_t block);

/* Worker-side steps. Each records what it is doing in the worker's record first.
 * ac_worker_send_result finishes the task once its result is published: the record lets go of
 * the task's payload block, freeing it unless views still hold it (ac_region_share). */
int ac_worker_next_task(ac_region *r, uint32_t k, ac_msg *msg, void *inline_buf, int64_t timeout_ns,
                        int64_t spin_ns);
int ac_worker_send_result(ac_region *r, uint32_t k, ac_msg *msg, const struct iovec *parts,
                          int nparts, int64_t timeout_ns);
/* Worker k starts item `item` of a chunk: its record names the item and when it began, so that
 * a death or a timeout is charged to that item. */
void ac_worker_set_item(ac_region *r, uint32_t k, uint64_t item);

/* Parent-side: what happened to a worker slot the template marked EXITED. */
typedef struct ac_reaped {
  int32_t pid;
  int32_t wait_status;
  uint32_t gen;
  uint32_t spawn_errno;
  uint64_t task_id;   /* task it was running (0 if none) */
  uint64_t item;      /* item of a chunk it was running */
  int recovered;      /* 1 when a task it had taken but not started was recovered into msg */
  ac_msg msg;
} ac_reaped;
/* Repairs the rings and frees the blocks a dead worker held, fills *out and sets the slot EMPTY.
 * recovered_inline receives an inline payload (AC_SLOT_INLINE bytes). Returns 1 when slot k was
 * EXITED and has been handled, 0 when there was nothing to do. The parent calls it once every
 * result it has taken off the ring is handled: a result block the worker published that is in
 * neither the ring nor the parent's hands (ac_region_adopt) never got there and is freed. */
int ac_region_reap(ac_region *r, uint32_t k, ac_reaped *out, void *recovered_inline);

/* Parent: asks for a process in slot k / for slot k's process to be killed. The caller then wakes
 * the template (ac_template_notify). */
int ac_region_request_spawn(ac_region *r, uint32_t k);
int ac_region_request_kill(ac_region *r, uint32_t k);
/* Parent: asks every worker to stop: AC_SHUTDOWN_DRAIN closes the task ring (workers finish
 * what is queued, then exit), AC_SHUTDOWN_NOW has them killed. The word only ever rises. The
 * caller then wakes the template. */
void ac_region_shutdown(ac_region *r, uint32_t mode);
/* Parent: takes one queued task off the task ring (it will never run) and frees its payload;
 * *id gets its id. Returns 0, or -EAGAIN once none is left. */
int ac_region_drain_task(ac_region *r, uint64_t *id);
/* For hosts other than the template (threads, subinterpreters): slot k, requested with
 * ac_region_request_spawn, is now served by worker `id` (SPAWN -> STARTING; returns -EBUSY when
 * the slot was not requested), and later: worker k has ended with `status` (a wait status). */
int ac_region_host_spawned(ac_region *r, uint32_t k, int32_t id);
int ac_region_host_exited(ac_region *r, uint32_t k, int32_t status);
/* Marks a worker state change and wakes every parent thread waiting on the result ring. */
void ac_region_signal_event(ac_region *r);

static inline uint64_t ac_owner_tag(uint32_t k, uint32_t gen) {
  return ((uint64_t)(k + 1) << 32) | gen;
}
#define AC_OWNER_PARENT UINT64_C(0xffffffff00000000)

#endif
