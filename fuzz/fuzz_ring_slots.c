/* fuzz_ring_slots.c: a ring whose shared memory holds arbitrary bytes (positions, sequence
 * numbers, message headers with any length, kind and block, payload bytes), as a scribbling
 * process could leave it, then pops, pushes and repairs with any claim values. Nothing may read
 * or write outside the ring and the caller's buffers (both are heap blocks of their exact size,
 * so ASan sees one byte too many), and a popped inline length never exceeds AC_SLOT_INLINE.
 *
 * Known limitation, kept out of this target: a slot whose sequence number is AHEAD of the
 * position a producer or consumer tries (possible only through corruption) makes try_push and
 * try_pop spin forever, since Vyukov's algorithm reads that as another participant having moved
 * the position on and re-reads it. The target skips those calls (see spins_forever). */
#include <errno.h>
#include <stdlib.h>

#include "allcores/errors.h"
#include "allcores/ring.h"
#include "fuzz.h"

#define CAP 8

static uint64_t seq_at(const ac_ring *r, uint64_t pos) {
  const ac_slot *s = &r->slots[pos & r->mask];
  return atomic_load(&((ac_slot *)s)->seq) + (uint64_t)(s - r->slots);
}

/* Would a pop (which also skips tombstones) or a push loop forever on this corrupt state? */
static int spins_forever(const ac_ring *r, int pop) {
  if (!pop) return (int64_t)(seq_at(r, atomic_load(&((ac_ring *)r)->enqueue_pos)) -
                             atomic_load(&((ac_ring *)r)->enqueue_pos)) > 0;
  uint64_t pos = atomic_load(&((ac_ring *)r)->dequeue_pos);
  for (int i = 0; i <= CAP + 1; i++, pos++) {
    int64_t dif = (int64_t)(seq_at(r, pos) - (pos + 1));
    if (dif > 0) return 1;
    if (dif < 0) return 0;
    if (r->slots[pos & r->mask].msg.kind != AC_KIND_TOMBSTONE) return 0;
  }
  return 0; /* it would pop CAP + 2 tombstones in a row: every one releases a slot, fine */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  size_t bytes = ac_ring_bytes(CAP);
  ac_ring *r = malloc(bytes);
  uint8_t *out = malloc(AC_SLOT_INLINE);
  FUZZ_CHECK(r && out);
  memset(r, 0, bytes);
  FUZZ_CHECK(ac_ring_init(r, CAP, 1) == 0);
  /* Positions near each other or anywhere, then every slot's header and a little payload. */
  uint64_t base = fz_below(&f, 2) ? fz_u64(&f) : fz_below(&f, 64);
  atomic_store(&r->dequeue_pos, base);
  atomic_store(&r->enqueue_pos, base + fz_below(&f, 2 * CAP));
  atomic_store(&r->closed, fz_below(&f, 4) == 0);
  for (int i = 0; i < CAP; i++) {
    ac_slot *s = &r->slots[i];
    switch (fz_u8(&f) % 3) {
    case 0: atomic_store(&s->seq, fz_u64(&f)); break;
    case 1: atomic_store(&s->seq, base + fz_below(&f, 3 * CAP) - i); break; /* near: plausible */
    default: break;
    }
    if (fz_below(&f, 2)) fz_bytes(&f, &s->msg, sizeof s->msg);
    if (fz_below(&f, 4) == 0) s->msg.kind = AC_KIND_TOMBSTONE;
    if (fz_below(&f, 2)) fz_bytes(&f, s->data, fz_below(&f, AC_SLOT_INLINE + 1));
  }

  for (int step = 0; step < 64 && !fz_done(&f); step++) {
    ac_msg msg;
    switch (fz_u8(&f) % 5) {
    case 0: {
      if (spins_forever(r, 1)) break;
      ac_claim claim = {0};
      if (ac_ring_try_pop(r, &msg, out, fz_below(&f, 2) ? &claim : NULL) == 0 && msg.block == 0)
        FUZZ_CHECK(msg.len <= AC_SLOT_INLINE);
      break;
    }
    case 1: {
      if (spins_forever(r, 0)) break;
      uint8_t *in = malloc(AC_SLOT_INLINE);
      fz_bytes(&f, in, AC_SLOT_INLINE);
      ac_msg m = {0};
      m.id = fz_u64(&f);
      m.len = fz_u32(&f);
      if (fz_below(&f, 2)) m.block = fz_u64(&f);
      int rc = ac_ring_try_push(r, &m, in, NULL);
      if (m.block == 0 && m.len > AC_SLOT_INLINE) FUZZ_CHECK(rc == -EINVAL);
      free(in);
      break;
    }
    case 2: {
      uint64_t near = atomic_load(&r->enqueue_pos);
      uint64_t claim = fz_below(&f, 2) ? fz_u64(&f) : near - fz_below(&f, CAP);
      int rc = ac_ring_repair_push(r, claim);
      FUZZ_CHECK(rc == 0 || rc == 1);
      break;
    }
    case 3: {
      uint64_t near = atomic_load(&r->dequeue_pos);
      uint64_t claim = fz_below(&f, 2) ? fz_u64(&f) : near - fz_below(&f, CAP);
      int rc = ac_ring_repair_pop(r, claim, &msg, out);
      FUZZ_CHECK(rc == 0 || rc == 1);
      if (rc == 1 && msg.block == 0) FUZZ_CHECK(msg.len <= AC_SLOT_INLINE);
      break;
    }
    default:
      (void)ac_ring_len(r);
      (void)ac_ring_kick(r);
      break;
    }
  }
  free(out);
  free(r);
  return 0;
}
