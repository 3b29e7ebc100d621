/* shared_queue.c: the shared FIFO of shared_queue.h.
 * Ring records are an 8-byte header (length, flags with the caller's tag) followed by the item's
 * bytes padded to 8, or by the offset of the arena block holding them. Sleepers announce
 * themselves in getters/putters under the mutex before they unlock and sleep on a sequence word
 * read under the same mutex, so a change made after they unlock always wakes them. */
#include "allcores/shared_queue.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/errors.h"
#include "allcores/futex.h"

#define REC_HEADER 8u
#define REC_IN_ARENA 1u
#define TAG_SHIFT 8
#define PAGE 4096u

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

static uint64_t ring_off(void) { return align_up(sizeof(ac_squeue), 64); }

static uint64_t arena_off(uint64_t ring_bytes) { return align_up(ring_off() + ring_bytes, PAGE); }

uint64_t ac_squeue_footprint(uint64_t ring_bytes, uint64_t arena_bytes) {
  return arena_off(ring_bytes) + align_up(arena_bytes, PAGE);
}

int ac_squeue_init(ac_squeue *q, uint64_t ring_bytes, uint64_t arena_bytes, uint64_t maxsize) {
  if (ring_bytes < 64 || (ring_bytes & (ring_bytes - 1))) return -EINVAL;
  int rc = ac_smutex_init(&q->mu, 0);
  if (rc) return rc;
  q->ring_bytes = ring_bytes;
  q->ring_off = ring_off();
  q->maxsize = maxsize;
  q->head = q->tail = 0;
  atomic_store(&q->count, 0);
  atomic_store(&q->put_seq, 0);
  atomic_store(&q->get_seq, 0);
  atomic_store(&q->getters, 0);
  atomic_store(&q->putters, 0);
  /* The arena's offsets are from the queue's start, the same in every process. */
  return ac_arena_init(&q->arena, arena_off(ring_bytes), align_up(arena_bytes, PAGE), 0);
}

static int big(ac_squeue *q, uint64_t len) { return len > q->ring_bytes / 4; }

uint64_t ac_squeue_max_item(ac_squeue *q) {
  uint64_t m = q->arena.pages ? ac_arena_max_payload(&q->arena) : q->ring_bytes / 4;
  return m > UINT32_MAX ? UINT32_MAX : m;
}

static char *ring(ac_squeue *q) { return (char *)q + q->ring_off; }

/* The queue's segment is mapped whole: its arena needs no segments of its own. */
#define QUEUE_ARENA_MAP(m, q) \
  ac_arena_map m;             \
  ac_arena_map_flat(&m, (char *)(q))

static void ring_write(ac_squeue *q, uint64_t pos, const void *src, uint64_t n) {
  uint64_t at = pos & (q->ring_bytes - 1), first = q->ring_bytes - at;
  if (first > n) first = n;
  memcpy(ring(q) + at, src, first);
  memcpy(ring(q), (const char *)src + first, n - first);
}

static void ring_read(ac_squeue *q, uint64_t pos, void *dst, uint64_t n) {
  uint64_t at = pos & (q->ring_bytes - 1), first = q->ring_bytes - at;
  if (first > n) first = n;
  memcpy(dst, ring(q) + at, first);
  memcpy((char *)dst + first, ring(q), n - first);
}

static uint64_t rec_bytes(ac_squeue *q, uint64_t len) {
  return REC_HEADER + (big(q, len) ? 8 : align_up(len, 8));
}

static int has_room(ac_squeue *q, uint64_t need) {
  if (q->maxsize && atomic_load(&q->count) >= q->maxsize) return 0;
  return q->ring_bytes - (q->tail - q->head) >= need;
}

static int64_t remaining(int64_t timeout_ns, int64_t start) {
  if (timeout_ns < 0) return -1;
  int64_t left = timeout_ns - (ac_now_ns() - start);
  return left > 0 ? left : 0;
}

static int lock(ac_squeue *q, unsigned flags) {
  int rc = ac_smutex_lock(&q->mu, (flags & AC_SQ_TRY) ? 0 : -1);
  return rc == AC_SMUTEX_RECOVERED ? 0 : rc; /* state changes are atomic at unlock: consistent */
}

/* Called with the mutex held; returns with it held. */
static int sleep_on(ac_squeue *q, _Atomic uint32_t *seq, _Atomic uint32_t *sleepers,
                    int64_t left) {
  uint32_t seen = atomic_load(seq);
  atomic_fetch_add(sleepers, 1);
  ac_smutex_unlock(&q->mu);
  int rc = ac_futex_wait(seq, seen, left);
  atomic_fetch_sub(sleepers, 1);
  lock(q, 0);
  return rc == -EINTR ? rc : 0;
}

/* Waits (mutex held) until the ring has `need` bytes and the count allows one more item. */
static int wait_room(ac_squeue *q, uint64_t need, int64_t timeout_ns, int64_t start) {
  while (!has_room(q, need)) {
    if (timeout_ns == 0) return -EAGAIN;
    int64_t left = remaining(timeout_ns, start);
    if (left == 0) return -ETIMEDOUT;
    int rc = sleep_on(q, &q->get_seq, &q->putters, left);
    if (rc) return rc;
  }
  return 0;
}

/* Allocates an arena block for len bytes, waiting for gets to free space (mutex not held). */
static int64_t alloc_block(ac_squeue *q, uint64_t len, int64_t timeout_ns, int64_t start) {
  QUEUE_ARENA_MAP(map, q);
  for (;;) {
    uint32_t seen = atomic_load(&q->get_seq);
    int64_t off = ac_arena_alloc(&q->arena, &map, len, (uint64_t)getpid());
    if (off != AC_ENOSPACE) return off;
    if (timeout_ns == 0) return -EAGAIN;
    int64_t left = remaining(timeout_ns, start);
    if (left == 0) return -ETIMEDOUT;
    atomic_fetch_add(&q->putters, 1);
    int rc = ac_futex_wait(&q->get_seq, seen, left);
    atomic_fetch_sub(&q->putters, 1);
    if (rc == -EINTR) return rc;
  }
}

int ac_squeue_put(ac_squeue *q, const void *data, uint64_t len, uint32_t tag, int64_t timeout_ns,
                  unsigned flags) {
  QUEUE_ARENA_MAP(map, q);
  if (tag >= (1u << (32 - TAG_SHIFT))) return -EINVAL;
  if (len > ac_squeue_max_item(q)) return AC_ETOOBIG;
  int is_big = big(q, len);
  if (is_big && (flags & AC_SQ_TRY) && len > AC_SQ_TRY_BYTES) return -EBUSY;
  int64_t start = ac_now_ns();
  uint64_t need = rec_bytes(q, len);
  int rc = lock(q, flags);
  if (rc) return rc;
  if ((rc = wait_room(q, need, timeout_ns, start))) goto out;
  int64_t block = 0;
  if (is_big) {
    /* The copy runs outside the mutex; room is checked again after it (another putter may have
     * taken it meanwhile), waiting with the block in hand. */
    ac_smutex_unlock(&q->mu);
    block = alloc_block(q, len, timeout_ns, start);
    if (block < 0) return (int)block;
    memcpy(ac_block_data(&map, (uint64_t)block), data, len);
    if ((rc = lock(q, flags))) {
      ac_arena_free(&q->arena, &map, (uint64_t)block);
      return rc;
    }
    if ((rc = wait_room(q, need, timeout_ns, start))) {
      ac_arena_free(&q->arena, &map, (uint64_t)block);
      goto out;
    }
  }
  uint32_t hdr[2] = {(uint32_t)len, (tag << TAG_SHIFT) | (is_big ? REC_IN_ARENA : 0)};
  ring_write(q, q->tail, hdr, REC_HEADER);
  if (is_big) {
    uint64_t off = (uint64_t)block;
    ring_write(q, q->tail + REC_HEADER, &off, 8);
  } else {
    ring_write(q, q->tail + REC_HEADER, data, len);
  }
  q->tail += need;
  atomic_fetch_add(&q->count, 1);
  atomic_fetch_add(&q->put_seq, 1);
out:
  ac_smutex_unlock(&q->mu);
  if (rc == 0 && atomic_load(&q->getters)) ac_futex_wake(&q->put_seq, 1);
  return rc;
}

int ac_squeue_get(ac_squeue *q, ac_squeue_alloc alloc, void *ctx, uint32_t *tag,
                  int64_t timeout_ns, unsigned flags) {
  QUEUE_ARENA_MAP(map, q);
  int64_t start = ac_now_ns();
  int rc = lock(q, flags);
  if (rc) return rc;
  while (atomic_load(&q->count) == 0) {
    if (timeout_ns == 0) {
      rc = -EAGAIN;
      goto unlock;
    }
    int64_t left = remaining(timeout_ns, start);
    if (left == 0) {
      rc = -ETIMEDOUT;
      goto unlock;
    }
    if ((rc = sleep_on(q, &q->put_seq, &q->getters, left))) goto unlock;
  }
  uint32_t hdr[2];
  ring_read(q, q->head, hdr, REC_HEADER);
  uint64_t len = hdr[0], block = 0;
  int in_arena = hdr[1] & REC_IN_ARENA;
  if (in_arena) {
    ring_read(q, q->head + REC_HEADER, &block, 8);
    if (ac_arena_check(&q->arena, &map, block, len) != 0) {
      rc = AC_ECORRUPT;
      goto unlock;
    }
  } else if (len > q->ring_bytes / 4) {
    rc = AC_ECORRUPT;
    goto unlock;
  }
  if ((flags & AC_SQ_TRY) && len > AC_SQ_TRY_BYTES) {
    rc = -EBUSY;
    goto unlock;
  }
  void *dst = alloc(ctx, len);
  if (!dst) {
    rc = -ENOMEM;
    goto unlock;
  }
  if (!in_arena) ring_read(q, q->head + REC_HEADER, dst, len);
  q->head += REC_HEADER + (in_arena ? 8 : align_up(len, 8));
  atomic_fetch_sub(&q->count, 1);
  ac_smutex_unlock(&q->mu);
  if (in_arena) {
    memcpy(dst, ac_block_data(&map, block), len);
    ac_arena_free(&q->arena, &map, block);
  }
  *tag = hdr[1] >> TAG_SHIFT;
  atomic_fetch_add(&q->get_seq, 1);
  if (atomic_load(&q->putters)) ac_futex_wake(&q->get_seq, INT_MAX);
  return 0;
unlock:
  ac_smutex_unlock(&q->mu);
  return rc;
}
