/* fuzz_region_msg.c: the checks every receiver runs on a message header from shared memory
 * (ac_region_check_msg, ac_arena_check) against arbitrary headers: any block offset (aligned or
 * not, inside the arena or not, just below the region's end), any length, and arena block
 * headers overwritten with arbitrary bytes, mixed with real messages sent through the arena.
 * Whatever a check accepts must lie inside the region, and the receiver then reads all of it; a
 * PROT_NONE guard page right after the region makes any read past its end fault. Received tasks
 * end as the binding ends them: kept under zero-copy views (ac_region_share) or copied and
 * consumed, then answered with ac_worker_send_result.
 *
 * Not scribbled on: the first 8 bytes of each page, where a free block keeps its free-stack
 * link. The allocator trusts that link (arena.c pop_free), so a forged one sends the next
 * allocation outside the arena; that is the allocator's own state, not a frame, and is reported
 * rather than fuzzed here. */
#include <errno.h>
#include <sys/mman.h>

#include "allcores/errors.h"
#include "allcores/protocol.h"
#include "allcores/region.h"
#include "fuzz.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static uint64_t sink;

/* Reads what the receiver would: the inline bytes or the whole block payload. */
static void receive(ac_region *r, const ac_msg *m, const uint8_t *inline_buf) {
  const uint8_t *p = ac_region_payload(r, m, inline_buf);
  uint64_t len = m->block ? ac_region_block(r, m->block)->len : m->len;
  if (m->block) {
    FUZZ_CHECK(m->block + AC_BLOCK_HEADER + len <= r->size);
  } else {
    FUZZ_CHECK(len <= AC_SLOT_INLINE);
  }
  for (uint64_t i = 0; i < len; i += 61) sink += p[i];
  if (len) sink += p[len - 1];
}

static uint64_t pick_offset(fz *f, ac_region *r) {
  uint64_t arena = r->hdr->arena.base_off, pages = r->hdr->arena.pages;
  switch (fz_u8(f) % 5) {
  case 0: return fz_u64(f);
  case 1: return arena + (uint64_t)fz_below(f, (uint32_t)pages + 2) * 4096;
  case 2: {
    uint64_t page = fz_below(f, (uint32_t)pages);
    return arena + page * 4096 + fz_below(f, 4096);
  }
  case 3: return r->size - 1 - fz_below(f, 128);
  default: return fz_below(f, (uint32_t)r->size);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  ac_region r;
  ac_region_config cfg = {2, 4, 4, (uint64_t)(4 + fz_below(&f, 60)) * 4096};
  FUZZ_CHECK(ac_region_create(&r, &cfg) == 0);
  void *guard = mmap(r.base + r.size, 4096, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (guard != MAP_FAILED && guard != r.base + r.size) { /* an old kernel placed it elsewhere */
    munmap(guard, 4096);
    guard = MAP_FAILED;
  }
  static uint8_t payload[300000];
  uint8_t buf[AC_SLOT_INLINE];

  for (int step = 0; step < 48 && !fz_done(&f); step++) {
    switch (fz_u8(&f) % 6) {
    case 0: { /* a real message, sent in up to three parts */
      uint32_t len = fz_below(&f, 2) ? fz_below(&f, 600) : fz_u32(&f) % 300000;
      memset(payload, (int)step, len);
      struct iovec iov[3] = {{payload, len / 4}, {payload + len / 4, len / 2},
                             {payload + len / 4 + len / 2, len - len / 4 - len / 2}};
      ac_msg m = {.id = (uint64_t)step + 1, .kind = fz_below(&f, 2) ? AC_MSG_OOB : 0};
      int rc = ac_region_send(&r, r.tasks, &m, iov, 3, AC_OWNER_PARENT, NULL, NULL, 0, NULL);
      FUZZ_CHECK(rc == 0 || rc == -ETIMEDOUT || rc == AC_ETOOBIG);
      break;
    }
    case 1: { /* receive a real message as a worker does */
      ac_msg m;
      if (ac_worker_next_task(&r, 0, &m, buf, 0, 0) != 0) break;
      if (ac_region_check_msg(&r, &m) != 0) {
        atomic_store(&r.workers[0].take.block, 0); /* a corrupt frame is not freed */
        break;
      }
      receive(&r, &m, buf);
      /* As the binding does: an out-of-band payload stays in its block under 1-3 views, some
       * let go while the task runs, the rest after its result; another is copied and consumed. */
      uint32_t views = 0, early = 0;
      if (ac_region_keep_in_block(&r, &m, 1)) {
        views = 1 + fz_below(&f, 3);
        early = fz_below(&f, views + 1);
        ac_region_share(&r, m.block, (int64_t)views + 1);
      } else if (m.block) {
        ac_region_consume(&r, m.block, &r.workers[0].take.block);
      }
      for (uint32_t i = 0; i < early; i++) ac_region_unshare(&r, m.block);
      ac_msg res = {.id = m.id};
      ac_worker_send_result(&r, 0, &res, NULL, 0, 0);
      for (uint32_t i = early; i < views; i++) ac_region_unshare(&r, m.block);
      ac_ring_try_pop(r.results, &res, buf, NULL);
      break;
    }
    case 2: { /* scribble on a block header, or anywhere in the arena, except link words */
      uint64_t off = pick_offset(&f, &r);
      if (off < r.hdr->arena.base_off || off >= r.size) break;
      if (off % 4096 < 8) off += 8 - off % 4096;
      uint64_t room = r.size - off;
      fz_bytes(&f, r.base + off, room < AC_BLOCK_HEADER ? room : fz_below(&f, AC_BLOCK_HEADER + 1));
      break;
    }
    case 3: { /* a forged header */
      ac_msg m = {.id = 1};
      m.block = fz_below(&f, 3) ? pick_offset(&f, &r) : 0; /* one read after the other */
      m.len = fz_u32(&f);
      if (ac_region_check_msg(&r, &m) == 0) receive(&r, &m, buf);
      break;
    }
    case 4: { /* the arena's own check with any offset and length */
      uint64_t off = pick_offset(&f, &r);
      uint64_t len = fz_below(&f, 2) ? fz_u64(&f) : fz_below(&f, 70000);
      if (ac_arena_check(&r.hdr->arena, r.map, off, len) == 0)
        FUZZ_CHECK(off + AC_BLOCK_HEADER + len <= r.size);
      break;
    }
    default: /* a forged header pushed through the ring and received like a real one */
    {
      ac_msg m = {.id = 2};
      m.block = pick_offset(&f, &r);
      m.len = fz_u32(&f);
      if (ac_ring_try_push(r.tasks, &m, payload, NULL) != 0) break; /* payload: if inline */
      ac_msg got;
      if (ac_ring_try_pop(r.tasks, &got, buf, NULL) == 0 && ac_region_check_msg(&r, &got) == 0)
        receive(&r, &got, buf);
      break;
    }
    }
  }
  if (guard != MAP_FAILED) munmap(guard, 4096);
  ac_region_destroy(&r);
  return 0;
}
