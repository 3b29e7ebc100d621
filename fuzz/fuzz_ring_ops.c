/* fuzz_ring_ops.c: the ring driven by fuzz input, with producers and consumers that "die" between
 * claiming a slot and finishing with it (the claim done by hand, as a killed process leaves it),
 * and the repairs, against a model of every position. The model predicts each answer: which
 * message a pop returns (tombstones skipped, FIFO), -EAGAIN when the head is not published or
 * the next slot is not released, AC_ECLOSED after close, what repair_push and repair_pop do
 * with any claim value (those of the dead, and arbitrary ones), and the ring's length. */
#include <errno.h>
#include <stdlib.h>

#include "allcores/errors.h"
#include "allcores/ring.h"
#include "fuzz.h"

enum { EMPTY = 0, PUBLISHED, CLAIMED, TOMBSTONE };
#define MAXPOS 4096

typedef struct pos_state {
  uint8_t state;
  uint8_t held;     /* popped by a dead consumer, slot not released */
  uint8_t released; /* consumed and its slot released */
  uint32_t len;
  uint64_t id;
} pos_state;

typedef struct model {
  uint64_t cap, enq, deq;
  int closed;
  pos_state p[MAXPOS];
} model;

static uint8_t byte_of(uint64_t id, uint32_t i) { return (uint8_t)(id * 29 + i * 7); }

/* The slot of position enq is free when position enq - cap has been released. */
static int slot_free(const model *m, uint64_t pos) {
  return pos < m->cap || m->p[pos - m->cap].released;
}

/* Pops what the model says is next; returns 1 with *out set, or 0 (-EAGAIN). */
static int model_pop(model *m, pos_state *out) {
  for (;;) {
    if (m->deq == m->enq) return 0;
    pos_state *s = &m->p[m->deq];
    if (s->state == TOMBSTONE) {
      s->released = 1;
      m->deq++;
      continue;
    }
    if (s->state != PUBLISHED) return 0;
    *out = *s;
    s->released = 1;
    m->deq++;
    return 1;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  static model m;
  memset(&m, 0, sizeof m);
  m.cap = UINT64_C(2) << fz_below(&f, 4); /* 2..16 slots */
  size_t bytes = ac_ring_bytes(m.cap);
  ac_ring *r = calloc(1, bytes);
  FUZZ_CHECK(r && ac_ring_init(r, m.cap, 1) == 0);
  uint8_t buf[AC_SLOT_INLINE], *out = malloc(AC_SLOT_INLINE);
  uint64_t next_id = 1;
  uint64_t dead_push[16], dead_pop[16];
  int ndead_push = 0, ndead_pop = 0;

  for (int step = 0; step < 3000 && !fz_done(&f) && m.enq + 1 < MAXPOS; step++) {
    switch (fz_u8(&f) % 9) {
    case 0:
    case 1: { /* push, with or without a claim word */
      uint32_t len = fz_below(&f, 2) ? fz_below(&f, AC_SLOT_INLINE + 1) : fz_below(&f, 16);
      for (uint32_t i = 0; i < len; i++) buf[i] = byte_of(next_id, i);
      ac_msg msg = {.id = next_id, .len = len, .kind = 1};
      _Atomic uint64_t claim = 0;
      int rc = ac_ring_try_push(r, &msg, buf, fz_below(&f, 2) ? &claim : NULL);
      int want = m.closed ? AC_ECLOSED : slot_free(&m, m.enq) ? 0 : -EAGAIN;
      FUZZ_CHECK(rc == want);
      FUZZ_CHECK(atomic_load(&claim) == 0);
      if (rc == 0) {
        m.p[m.enq] = (pos_state){PUBLISHED, 0, 0, len, next_id};
        m.enq++;
        next_id++;
      }
      break;
    }
    case 2:
    case 3: { /* pop, with or without a claim record */
      ac_msg msg;
      ac_claim claim = {0};
      int use_claim = fz_below(&f, 2);
      int rc = ac_ring_try_pop(r, &msg, out, use_claim ? &claim : NULL);
      pos_state want;
      int have = model_pop(&m, &want);
      FUZZ_CHECK(rc == (have ? 0 : -EAGAIN));
      if (!have) break;
      FUZZ_CHECK(msg.id == want.id && msg.len == want.len && msg.kind == 1);
      for (uint32_t i = 0; i < want.len; i++) FUZZ_CHECK(out[i] == byte_of(want.id, i));
      if (use_claim) FUZZ_CHECK(claim.pos == 0 && claim.id == want.id && claim.block == 0);
      break;
    }
    case 4: { /* a producer claims the next slot and dies before publishing */
      if (ndead_push == 16 || m.closed || !slot_free(&m, m.enq)) break;
      uint64_t pos = atomic_load(&r->enqueue_pos);
      FUZZ_CHECK(pos == m.enq);
      FUZZ_CHECK(atomic_compare_exchange_strong(&r->enqueue_pos, &pos, pos + 1));
      m.p[m.enq].state = CLAIMED;
      dead_push[ndead_push++] = ++m.enq; /* the claim word holds position + 1 */
      break;
    }
    case 5: { /* a consumer claims the head slot and dies before releasing it */
      if (ndead_pop == 16 || m.deq == m.enq) break;
      pos_state *s = &m.p[m.deq];
      if (s->state != PUBLISHED && s->state != TOMBSTONE) break;
      uint64_t pos = atomic_load(&r->dequeue_pos);
      FUZZ_CHECK(pos == m.deq);
      FUZZ_CHECK(atomic_compare_exchange_strong(&r->dequeue_pos, &pos, pos + 1));
      s->held = 1;
      dead_pop[ndead_pop++] = ++m.deq;
      break;
    }
    case 6: { /* repair_push: a dead producer's claim, or any value */
      uint64_t claim;
      int k = -1;
      if (ndead_push && fz_below(&f, 4)) {
        k = (int)fz_below(&f, (uint32_t)ndead_push);
        claim = dead_push[k];
      } else {
        claim = fz_below(&f, 2) ? fz_u64(&f) : fz_below(&f, (uint32_t)m.enq + 3);
      }
      int want = claim != 0 && claim - 1 < m.enq && m.p[claim - 1].state == CLAIMED;
      FUZZ_CHECK(ac_ring_repair_push(r, claim) == want);
      if (want) m.p[claim - 1].state = TOMBSTONE;
      if (k >= 0) dead_push[k] = dead_push[--ndead_push];
      break;
    }
    case 7: { /* repair_pop: a dead consumer's claim, or any value */
      uint64_t claim;
      int k = -1;
      if (ndead_pop && fz_below(&f, 4)) {
        k = (int)fz_below(&f, (uint32_t)ndead_pop);
        claim = dead_pop[k];
      } else {
        claim = fz_below(&f, 2) ? fz_u64(&f) : fz_below(&f, (uint32_t)m.enq + 3);
      }
      ac_msg msg;
      int held = claim != 0 && claim - 1 < m.deq && m.p[claim - 1].held;
      int want = held && m.p[claim - 1].state == PUBLISHED;
      FUZZ_CHECK(ac_ring_repair_pop(r, claim, &msg, out) == want);
      if (want) {
        pos_state *s = &m.p[claim - 1];
        FUZZ_CHECK(msg.id == s->id && msg.len == s->len);
        for (uint32_t i = 0; i < s->len; i++) FUZZ_CHECK(out[i] == byte_of(s->id, i));
      }
      if (held) {
        m.p[claim - 1].held = 0;
        m.p[claim - 1].released = 1;
      }
      if (k >= 0) dead_pop[k] = dead_pop[--ndead_pop];
      break;
    }
    default: /* close, now and then; the length always */
      if (fz_below(&f, 8) == 0) {
        ac_ring_close(r);
        m.closed = 1;
      }
      FUZZ_CHECK(ac_ring_len(r) == m.enq - m.deq);
      break;
    }
  }
  free(out);
  free(r);
  return 0;
}
