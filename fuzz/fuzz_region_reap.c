/* fuzz_region_reap.c: ac_region_reap, which trusts what a dead worker left in its record (the
 * claims on both rings, the task it ran and its block, a result block, its busy and waiting
 * marks), run on records holding arbitrary or near-plausible values, after real traffic and
 * claims left half-done by hand. Reap must stay inside the region, leave the slot EMPTY with
 * its record cleared, never drive a ring's counters below zero, and leave the rings usable:
 * the surviving worker then drains them, checking every frame before reading it. */
#include <errno.h>
#include <sys/mman.h>

#include "allcores/errors.h"
#include "allcores/region.h"
#include "fuzz.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static uint64_t sink;

/* A value for a record field: anything, or something close to what a real one would hold. */
static uint64_t plausible(fz *f, uint64_t near) {
  switch (fz_u8(f) % 4) {
  case 0: return fz_u64(f);
  case 1: return 0;
  case 2: return near;
  default: return near + fz_below(f, 9) - 4;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  ac_region r;
  ac_region_config cfg = {2, 4, 4, 32 * 4096};
  FUZZ_CHECK(ac_region_create(&r, &cfg) == 0);
  void *guard = mmap(r.base + r.size, 4096, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (guard != MAP_FAILED && guard != r.base + r.size) { /* an old kernel placed it elsewhere */
    munmap(guard, 4096);
    guard = MAP_FAILED;
  }
  static uint8_t payload[40000];
  uint8_t buf[AC_SLOT_INLINE];
  uint64_t last_block = 0;
  for (uint32_t k = 0; k < 2; k++) {
    FUZZ_CHECK(ac_region_request_spawn(&r, k) == 0);
    FUZZ_CHECK(ac_region_host_spawned(&r, k, (int32_t)k + 1) == 0);
  }

  /* Traffic: the parent sends, worker 0 takes and answers, some steps left half-done. */
  for (int step = 0; step < 24 && !fz_done(&f); step++) {
    switch (fz_u8(&f) % 5) {
    case 0: {
      uint32_t len = fz_below(&f, 2) ? fz_below(&f, 400) : fz_below(&f, 40000);
      struct iovec iov = {payload, len};
      ac_msg m = {.id = (uint64_t)step + 1};
      if (ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, 0, NULL) == 0 &&
          m.block)
        last_block = m.block;
      break;
    }
    case 1: {
      ac_msg m;
      if (ac_worker_next_task(&r, 0, &m, buf, 0, 0) == 0 && fz_below(&f, 2)) {
        struct iovec iov = {payload, fz_below(&f, 2) ? 10 : 9000};
        ac_msg res = {.id = m.id};
        ac_worker_send_result(&r, 0, &res, &iov, 1, 0);
      }
      break;
    }
    case 2: { /* worker 0 claims a task slot by hand and "dies" before releasing it */
      uint64_t pos = atomic_load(&r.tasks->dequeue_pos);
      if (pos == atomic_load(&r.tasks->enqueue_pos)) break;
      atomic_store(&r.workers[0].take.pos, pos + 1);
      atomic_compare_exchange_strong(&r.tasks->dequeue_pos, &pos, pos + 1);
      goto reap;
    }
    case 3: { /* worker 0 claims a result slot by hand and "dies" before publishing */
      uint64_t pos = atomic_load(&r.results->enqueue_pos);
      if (pos >= atomic_load(&r.results->dequeue_pos) + 4) break; /* no free slot */
      atomic_store(&r.workers[0].push_pos, pos + 1);
      atomic_compare_exchange_strong(&r.results->enqueue_pos, &pos, pos + 1);
      goto reap;
    }
    default: { /* the parent drains results */
      ac_msg m;
      while (ac_ring_try_pop(r.results, &m, buf, NULL) == 0)
        if (ac_region_check_msg(&r, &m) == 0) ac_region_release(&r, m.block);
      break;
    }
    }
  }
reap:;
  /* Whatever the traffic left, the dead worker's record is then scribbled on. */
  ac_worker_rec *w = &r.workers[0];
  uint8_t which = fz_u8(&f);
  if (which & 1) atomic_store(&w->take.pos, plausible(&f, atomic_load(&r.tasks->dequeue_pos)));
  if (which & 2) atomic_store(&w->take.id, fz_u64(&f));
  if (which & 4) atomic_store(&w->take.block, plausible(&f, last_block));
  if (which & 8) atomic_store(&w->push_pos, plausible(&f, atomic_load(&r.results->enqueue_pos)));
  if (which & 16) atomic_store(&w->result_block, plausible(&f, last_block));
  if (which & 32) atomic_store(&w->busy, fz_u32(&f));
  if (which & 64) atomic_store(&w->take.waiting, fz_u32(&f));
  if (which & 128) atomic_store(&w->gen, fz_u32(&f));
  FUZZ_CHECK(ac_region_host_exited(&r, 0, 9) == 0);
  ac_reaped out;
  FUZZ_CHECK(ac_region_reap(&r, 0, &out, buf) == 1);
  FUZZ_CHECK(atomic_load(&w->state) == AC_W_EMPTY);
  FUZZ_CHECK(atomic_load(&w->take.pos) == 0 && atomic_load(&w->push_pos) == 0);
  FUZZ_CHECK(atomic_load(&w->take.waiting) == 0 && atomic_load(&w->busy) == 0);
  FUZZ_CHECK(atomic_load(&r.tasks->consumers_busy) <= 2);
  FUZZ_CHECK(atomic_load(&r.tasks->consumers_spinning) <= 2);
  FUZZ_CHECK(atomic_load(&r.tasks->consumers_sleeping) <= 2);
  if (out.recovered && out.msg.block == 0) FUZZ_CHECK(out.msg.len <= AC_SLOT_INLINE);

  /* The survivor drains the task ring, checking every frame first, as the binding does. */
  for (int i = 0; i < 8; i++) {
    ac_msg m;
    if (ac_worker_next_task(&r, 1, &m, buf, 0, 0) != 0) break;
    if (ac_region_check_msg(&r, &m) != 0) {
      atomic_store(&r.workers[1].take.block, 0);
      continue;
    }
    const uint8_t *p = ac_region_payload(&r, &m, buf);
    uint64_t len = m.block ? ac_region_block(&r, m.block)->len : m.len;
    for (uint64_t j = 0; j < len; j += 97) sink += p[j];
    ac_msg res = {.id = m.id};
    ac_worker_send_result(&r, 1, &res, NULL, 0, 0);
  }
  if (guard != MAP_FAILED) munmap(guard, 4096);
  ac_region_destroy(&r);
  return 0;
}
