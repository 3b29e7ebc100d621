/* test-ring.c: the MPMC slot ring: order, bounds, close, waits, and the crash repairs. */
#include <errno.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/errors.h"
#include "allcores/ring.h"
#include "task.h"

static ac_ring *new_ring(uint64_t cap) {
  void *mem = mmap(NULL, ac_ring_bytes(cap), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
  ASSERT(mem != MAP_FAILED);
  ASSERT_OK(ac_ring_init(mem, cap, 1));
  return mem;
}

static int push_u64(ac_ring *r, uint64_t v) {
  ac_msg m = {.id = v, .len = sizeof v, .kind = 7};
  return ac_ring_try_push(r, &m, &v, NULL);
}

TEST_IMPL(ring_init_rejects_bad_capacity) {
  char mem[4096] = {0};
  ASSERT_EQ(ac_ring_init((ac_ring *)mem, 3, 1), -EINVAL);
  ASSERT_EQ(ac_ring_init((ac_ring *)mem, 1, 1), -EINVAL);
}

TEST_IMPL(ring_fifo_full_empty_wraparound) {
  ac_ring *r = new_ring(8);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_ring_try_pop(r, &m, buf, NULL), -EAGAIN);
  for (int round = 0; round < 50; round++) {
    for (uint64_t i = 0; i < 8; i++) ASSERT_OK(push_u64(r, round * 100 + i));
    ASSERT_EQ(push_u64(r, 999), -EAGAIN); /* full */
    ASSERT_EQ(ac_ring_len(r), 8);
    for (uint64_t i = 0; i < 8; i++) {
      ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
      ASSERT_EQ(m.id, round * 100 + i);
      ASSERT_EQ(m.kind, 7);
      uint64_t v;
      memcpy(&v, buf, sizeof v);
      ASSERT_EQ(v, round * 100 + i);
    }
    ASSERT_EQ(ac_ring_try_pop(r, &m, buf, NULL), -EAGAIN);
  }
}

TEST_IMPL(ring_inline_limit) {
  ac_ring *r = new_ring(4);
  uint8_t data[AC_SLOT_INLINE + 1];
  memset(data, 0xab, sizeof data);
  ac_msg m = {.id = 1, .len = AC_SLOT_INLINE};
  ASSERT_OK(ac_ring_try_push(r, &m, data, NULL));
  m.len = AC_SLOT_INLINE + 1;
  ASSERT_EQ(ac_ring_try_push(r, &m, data, NULL), -EINVAL);
  m.block = 4096; /* out-of-line payloads carry only a header */
  ASSERT_OK(ac_ring_try_push(r, &m, NULL, NULL));
  uint8_t out[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_try_pop(r, &m, out, NULL));
  ASSERT_EQ(m.len, AC_SLOT_INLINE);
  ASSERT_MEM_EQ(out, data, AC_SLOT_INLINE);
  ASSERT_OK(ac_ring_try_pop(r, &m, out, NULL));
  ASSERT_EQ(m.block, 4096);
}

TEST_IMPL(ring_close_drains_then_reports_closed) {
  ac_ring *r = new_ring(4);
  ASSERT_OK(push_u64(r, 1));
  ac_ring_close(r);
  ASSERT_EQ(push_u64(r, 2), AC_ECLOSED);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_pop_wait(r, &m, buf, NULL, 1000000, 0, NULL));
  ASSERT_EQ(ac_ring_pop_wait(r, &m, buf, NULL, 1000000, 0, NULL), AC_ECLOSED);
}

TEST_IMPL(ring_pop_wait_times_out_and_watches) {
  ac_ring *r = new_ring(4);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_ring_pop_wait(r, &m, buf, NULL, 2000000, 100000, NULL), -ETIMEDOUT);
  _Atomic uint32_t word = 5;
  ac_watch w = {&word, 4};
  ASSERT_EQ(ac_ring_pop_wait(r, &m, buf, NULL, -1, 0, &w), AC_EEVENT);
}

TEST_IMPL(ring_sleeping_consumer_is_woken) {
  ac_ring *r = new_ring(4);
  pid_t pid = fork();
  if (pid == 0) {
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    int rc = ac_ring_pop_wait(r, &m, buf, NULL, 5000000000LL, 0, NULL); /* no spin: sleeps */
    _exit(rc == 0 && m.id == 42 ? 0 : 1);
  }
  usleep(50000);
  ASSERT_OK(push_u64(r, 42));
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  ASSERT_GE(r->consumer_wakes, 1);
}

TEST_IMPL(ring_full_producer_waits_for_space) {
  ac_ring *r = new_ring(2);
  ASSERT_OK(push_u64(r, 1));
  ASSERT_OK(push_u64(r, 2));
  pid_t pid = fork();
  if (pid == 0) {
    usleep(50000);
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    _exit(ac_ring_try_pop(r, &m, buf, NULL) == 0 ? 0 : 1);
  }
  uint64_t v = 3;
  ac_msg m = {.id = 3, .len = 8};
  ASSERT_OK(ac_ring_push_wait(r, &m, &v, NULL, 5000000000LL, NULL));
  int st;
  waitpid(pid, &st, 0);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A producer that claimed a slot and died before publishing: the claim record lets the repair
 * publish a tombstone, which consumers skip, so the ring moves on. */
TEST_IMPL(ring_repair_push_after_producer_death) {
  ac_ring *r = new_ring(4);
  ASSERT_OK(push_u64(r, 1));
  /* Simulate a claim without publish: what a producer killed between CAS and store leaves. */
  _Atomic uint64_t claim = 0;
  uint64_t pos = atomic_load(&r->enqueue_pos);
  atomic_store(&claim, pos + 1);
  ASSERT(atomic_compare_exchange_strong(&r->enqueue_pos, &pos, pos + 1));
  ASSERT_OK(push_u64(r, 3)); /* a later producer publishes behind the stuck slot */
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
  ASSERT_EQ(m.id, 1);
  ASSERT_EQ(ac_ring_try_pop(r, &m, buf, NULL), -EAGAIN); /* wedged behind the dead claim */
  ASSERT_EQ(ac_ring_repair_push(r, atomic_load(&claim)), 1);
  ASSERT_EQ(ac_ring_repair_push(r, atomic_load(&claim)), 0); /* idempotent */
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
  ASSERT_EQ(m.id, 3); /* the tombstone was skipped */
}

/* A consumer that claimed a slot and died before releasing it: the message is recovered. */
TEST_IMPL(ring_repair_pop_recovers_untaken_message) {
  ac_ring *r = new_ring(4);
  ASSERT_OK(push_u64(r, 11));
  ASSERT_OK(push_u64(r, 12));
  ac_claim claim = {0};
  uint64_t pos = atomic_load(&r->dequeue_pos);
  atomic_store(&claim.pos, pos + 1);
  ASSERT(atomic_compare_exchange_strong(&r->dequeue_pos, &pos, pos + 1));
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_ring_repair_pop(r, atomic_load(&claim.pos), &m, buf), 1);
  ASSERT_EQ(m.id, 11);
  uint64_t v;
  memcpy(&v, buf, 8);
  ASSERT_EQ(v, 11);
  ASSERT_EQ(ac_ring_repair_pop(r, atomic_load(&claim.pos), &m, buf), 0);
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
  ASSERT_EQ(m.id, 12);
  /* and the slot is usable again */
  for (int i = 0; i < 4; i++) ASSERT_OK(push_u64(r, 20 + i));
}

TEST_IMPL(ring_claim_records_identity_before_release) {
  ac_ring *r = new_ring(4);
  ASSERT_OK(push_u64(r, 77));
  ac_claim claim = {0};
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, &claim));
  ASSERT_EQ(atomic_load(&claim.pos), 0);  /* released */
  ASSERT_EQ(atomic_load(&claim.id), 77);  /* the consumer still knows what it holds */
}

TEST_IMPL(ring_lazy_wake_skips_busy_consumer) {
  ac_ring *r = new_ring(16);
  ac_ring_set_lazy_wake(r, 1);
  atomic_store(&r->consumers_sleeping, 1); /* pretend one consumer sleeps */
  ac_ring_set_busy(r, 1);                  /* and another is busy */
  uint64_t w0 = atomic_load(&r->consumer_wakes);
  ASSERT_OK(push_u64(r, 1));
  ASSERT_EQ(atomic_load(&r->consumer_wakes), w0); /* the busy one will be back */
  for (int i = 0; i < AC_LAZY_DEPTH; i++) ASSERT_OK(push_u64(r, 2 + i));
  ASSERT_GT(atomic_load(&r->consumer_wakes), w0); /* a queue builds up: wake the sleeper */
  ac_ring_set_busy(r, 0);
  ac_ring_set_busy(r, 0); /* never below zero */
  ASSERT_EQ(atomic_load(&r->consumers_busy), 0);
  atomic_store(&r->consumers_sleeping, 0);
}
