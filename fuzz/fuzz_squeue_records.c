/* fuzz_squeue_records.c: a shared Queue (shared_queue.h) whose records another process may have
 * scribbled on: puts and gets (never waiting) interleaved with arbitrary bytes written over the
 * ring's records and arbitrary head, tail and count values, as a faulty or dying producer could
 * leave them. The queue's fixed fields (ring size and place, the mutex, the arena's bounds) are
 * written once by its creator and are kept out of reach. Oracle: nothing reads or writes outside
 * the segment (a heap block of its exact size) or the item buffer a get asks for (one of exactly
 * the length it names), a got item is never longer than the queue's largest item, and every call
 * returns 0 or one of its documented codes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "allcores/errors.h"
#include "allcores/shared_queue.h"
#include "fuzz.h"

#define RING 256u
#define ARENA 8192u

typedef struct {
  void *buf;
  uint64_t len;
} got_item;

static void *alloc_item(void *ctx, uint64_t len) {
  got_item *g = ctx;
  g->buf = malloc(len ? len : 1);
  g->len = len;
  return g->buf;
}

static int documented(int rc) {
  return rc == 0 || rc == -EAGAIN || rc == -ENOMEM || rc == -EBUSY || rc == AC_ECORRUPT ||
         rc == AC_ETOOBIG || rc == AC_ENOSPACE || rc == -ETIMEDOUT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  uint64_t bytes = ac_squeue_footprint(RING, ARENA);
  void *seg = NULL;
  if (posix_memalign(&seg, 4096, bytes)) return 0;
  memset(seg, 0, bytes);
  ac_squeue *q = seg;
  FUZZ_CHECK(ac_squeue_init(q, RING, ARENA, fz_u8(&f) & 7) == 0);
  uint64_t max_item = ac_squeue_max_item(q);
  uint8_t item[ARENA];
  for (int step = 0; step < 64 && !fz_done(&f); step++) {
    switch (fz_below(&f, 5)) {
    case 0: { /* put an item, small or big */
      uint64_t len = fz_u8(&f) % 2 ? fz_below(&f, RING / 4 + 1) : fz_below(&f, ARENA);
      memset(item, 'a' + step % 26, len);
      int rc = ac_squeue_put(q, item, len, fz_u8(&f), 0, 0);
      FUZZ_CHECK(documented(rc));
      break;
    }
    case 1:
    case 2: { /* get one */
      got_item g = {NULL, 0};
      uint32_t tag = 0;
      int rc = ac_squeue_get(q, alloc_item, &g, &tag, 0, fz_u8(&f) & AC_SQ_TRY);
      FUZZ_CHECK(documented(rc));
      if (rc == 0) FUZZ_CHECK(g.len <= max_item);
      free(g.buf);
      break;
    }
    case 3: { /* scribble over the ring's records */
      char *ring = (char *)q + q->ring_off;
      uint32_t at = fz_below(&f, RING), n = fz_below(&f, 17);
      for (uint32_t i = 0; i < n; i++) ring[(at + i) % RING] = (char)fz_u8(&f);
      break;
    }
    case 4: { /* scribble over the positions and the count */
      uint8_t which = fz_u8(&f) % 3;
      uint64_t v = fz_u8(&f) % 2 ? fz_u64(&f) : fz_below(&f, 4 * RING);
      if (which == 0) q->head = v;
      else if (which == 1) q->tail = v;
      else atomic_store(&q->count, v % 16);
      break;
    }
    }
  }
  free(seg);
  return 0;
}
