/* test-ring.c: the MPMC slot ring in one process and across two: order, bounds, payloads,
 * close, timeouts, watches and the wake-up rules. Deaths and repairs: test-ring-repair.c. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/errors.h"
#include "allcores/ring.h"
#include "task.h"

static ac_ring *new_ring(uint64_t cap) {
  ac_ring *r = ac_test_shared(ac_ring_bytes(cap));
  ASSERT_OK(ac_ring_init(r, cap, 1));
  return r;
}

static int push_u64(ac_ring *r, uint64_t v) {
  ac_msg m = {.id = v, .len = sizeof v, .kind = 7};
  return ac_ring_try_push(r, &m, &v, NULL);
}

static uint64_t pop_u64(ac_ring *r) {
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
  uint64_t v;
  ASSERT_EQ(m.len, sizeof v);
  memcpy(&v, buf, sizeof v);
  ASSERT_EQ(v, m.id);
  return v;
}

TEST_IMPL(ring_init_rejects_bad_capacity) {
  static char mem[4096];
  ASSERT_EQ(ac_ring_init((ac_ring *)mem, 3, 1), -EINVAL);
  ASSERT_EQ(ac_ring_init((ac_ring *)mem, 1, 1), -EINVAL);
  ASSERT_EQ(ac_ring_init((ac_ring *)mem, 0, 1), -EINVAL);
  ASSERT_EQ(ac_ring_bytes(8), sizeof(ac_ring) + 8 * sizeof(ac_slot));
}

/* The slots are never written by init: zeroed pages must already be an empty ring. */
TEST_IMPL(ring_zeroed_memory_is_an_empty_ring) {
  ac_ring *r = new_ring(1024);
  ASSERT_EQ(ac_ring_len(r), 0);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_ring_try_pop(r, &m, buf, NULL), -EAGAIN);
  for (uint64_t i = 0; i < 1024; i++) ASSERT_OK(push_u64(r, i));
  ASSERT_EQ(push_u64(r, 0), -EAGAIN);
  for (uint64_t i = 0; i < 1024; i++) ASSERT_EQ(pop_u64(r), i);
}

TEST_IMPL(ring_fifo_full_empty_wraparound) {
  ac_ring *r = new_ring(8);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_ring_try_pop(r, &m, buf, NULL), -EAGAIN);
  for (uint64_t round = 0; round < 50; round++) {
    for (uint64_t i = 0; i < 8; i++) ASSERT_OK(push_u64(r, round * 100 + i));
    ASSERT_EQ(push_u64(r, 999), -EAGAIN); /* full */
    ASSERT_EQ(ac_ring_len(r), 8);
    for (uint64_t i = 0; i < 8; i++) ASSERT_EQ(pop_u64(r), round * 100 + i);
    ASSERT_EQ(ac_ring_try_pop(r, &m, buf, NULL), -EAGAIN);
    ASSERT_EQ(ac_ring_len(r), 0);
  }
  /* Interleaved: the ring never holds more than 3, positions wrap many times. */
  uint64_t next_in = 0, next_out = 0;
  for (int i = 0; i < 1000; i++) {
    ASSERT_OK(push_u64(r, next_in++));
    if (i % 3 != 2) ASSERT_OK(push_u64(r, next_in++));
    while (ac_ring_len(r) > 1) ASSERT_EQ(pop_u64(r), next_out++);
  }
}

TEST_IMPL(ring_inline_and_block_payloads) {
  ac_ring *r = new_ring(4);
  uint8_t data[AC_SLOT_INLINE + 1];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 31 + 7);
  ac_msg m = {.id = 1, .len = AC_SLOT_INLINE, .kind = 3, .aux = 4, .aux2 = 5};
  ASSERT_OK(ac_ring_try_push(r, &m, data, NULL));
  m.len = AC_SLOT_INLINE + 1;
  ASSERT_EQ(ac_ring_try_push(r, &m, data, NULL), -EINVAL); /* too big to travel inline */
  m = (ac_msg){.id = 2, .block = 4096, .len = 1 << 20};    /* a header only: data stays put */
  ASSERT_OK(ac_ring_try_push(r, &m, NULL, NULL));
  m = (ac_msg){.id = 3, .len = 0};
  ASSERT_OK(ac_ring_try_push(r, &m, NULL, NULL));

  uint8_t out[AC_SLOT_INLINE];
  memset(out, 0xee, sizeof out);
  ASSERT_OK(ac_ring_try_pop(r, &m, out, NULL));
  ASSERT_EQ(m.id, 1);
  ASSERT_EQ(m.len, AC_SLOT_INLINE);
  ASSERT_EQ(m.kind, 3);
  ASSERT_EQ(m.aux, 4);
  ASSERT_EQ(m.aux2, 5);
  ASSERT_MEM_EQ(out, data, AC_SLOT_INLINE);
  memset(out, 0xee, sizeof out);
  ASSERT_OK(ac_ring_try_pop(r, &m, out, NULL));
  ASSERT_EQ(m.id, 2);
  ASSERT_EQ(m.block, 4096);
  ASSERT_EQ(m.len, 1 << 20);
  ASSERT_EQ(out[0], 0xee); /* nothing copied for a block payload */
  ASSERT_OK(ac_ring_try_pop(r, &m, out, NULL));
  ASSERT_EQ(m.id, 3);
  ASSERT_EQ(m.len, 0);
}

/* A slot whose header was scribbled on (a length beyond the slot) never makes a consumer copy
 * more than a slot holds. */
TEST_IMPL(ring_pop_clamps_a_corrupt_inline_length) {
  ac_ring *r = new_ring(4);
  ASSERT_OK(push_u64(r, 5));
  r->slots[0].msg.len = 0xffffffffu;
  ac_msg m;
  uint8_t *out = malloc(AC_SLOT_INLINE); /* exactly the documented room: ASan sees overruns */
  ASSERT_OK(ac_ring_try_pop(r, &m, out, NULL));
  ASSERT_EQ(m.len, AC_SLOT_INLINE);
  free(out);
}

TEST_IMPL(ring_close_drains_then_reports_closed) {
  ac_ring *r = new_ring(4);
  ASSERT_OK(push_u64(r, 1));
  ASSERT_OK(push_u64(r, 2));
  ac_ring_close(r);
  ASSERT_EQ(push_u64(r, 3), AC_ECLOSED);
  ac_msg m = {.id = 4};
  ASSERT_EQ(ac_ring_push_wait(r, &m, NULL, NULL, 1000000, NULL), AC_ECLOSED);
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_pop_wait(r, &m, buf, NULL, 1000000, 0, NULL));
  ASSERT_EQ(m.id, 1);
  ASSERT_OK(ac_ring_pop_wait(r, &m, buf, NULL, -1, 10000, NULL));
  ASSERT_EQ(m.id, 2);
  ASSERT_EQ(ac_ring_pop_wait(r, &m, buf, NULL, -1, 0, NULL), AC_ECLOSED);
  ASSERT_EQ(ac_ring_try_pop(r, &m, buf, NULL), -EAGAIN);
}

/* A consumer asleep on an empty ring and a producer asleep on a full one both return at close. */
TEST_IMPL(ring_close_wakes_sleeping_consumer_and_producer) {
  ac_ring *empty = new_ring(2), *full = new_ring(2);
  ASSERT_OK(push_u64(full, 1));
  ASSERT_OK(push_u64(full, 2));
  pid_t consumer = fork();
  if (consumer == 0) {
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    _exit(ac_ring_pop_wait(empty, &m, buf, NULL, -1, 0, NULL) == AC_ECLOSED ? 0 : 1);
  }
  pid_t producer = fork();
  if (producer == 0) {
    ac_msg m = {.id = 3};
    _exit(ac_ring_push_wait(full, &m, NULL, NULL, -1, NULL) == AC_ECLOSED ? 0 : 1);
  }
  while (atomic_load(&empty->consumers_sleeping) == 0 ||
         atomic_load(&full->producers_sleeping) == 0)
    usleep(1000);
  ac_ring_close(empty);
  ac_ring_close(full);
  ASSERT_EXITED(ac_test_wait(consumer, 5000), 0);
  ASSERT_EXITED(ac_test_wait(producer, 5000), 0);
  ASSERT_EQ(atomic_load(&empty->consumers_sleeping), 0);
  ASSERT_EQ(atomic_load(&full->producers_sleeping), 0);
}

TEST_IMPL(ring_pop_wait_times_out_and_watches) {
  ac_ring *r = new_ring(4);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_ring_pop_wait(r, &m, buf, NULL, 2000000, 100000, NULL), -ETIMEDOUT);
  ASSERT_EQ(ac_ring_pop_wait(r, &m, buf, NULL, 0, 0, NULL), -ETIMEDOUT);
  _Atomic uint32_t word = 5;
  ac_watch w = {&word, 4};
  ASSERT_EQ(ac_ring_pop_wait(r, &m, buf, NULL, -1, 0, &w), AC_EEVENT);
  ASSERT_EQ(ac_ring_pop_wait(r, &m, buf, NULL, -1, 1000000, &w), AC_EEVENT); /* while spinning */
  w.seen = 5;
  ASSERT_EQ(ac_ring_pop_wait(r, &m, buf, NULL, 1000000, 0, &w), -ETIMEDOUT);
  /* An item wins over a changed word. */
  w.seen = 4;
  ASSERT_OK(push_u64(r, 9));
  ASSERT_OK(ac_ring_pop_wait(r, &m, buf, NULL, -1, 0, &w));
  ASSERT_EQ(m.id, 9);
  ASSERT_EQ(atomic_load(&r->consumers_sleeping), 0);
  ASSERT_EQ(atomic_load(&r->consumers_spinning), 0);
}

TEST_IMPL(ring_push_wait_times_out_and_watches) {
  ac_ring *r = new_ring(2);
  ASSERT_OK(push_u64(r, 1));
  ASSERT_OK(push_u64(r, 2));
  ac_msg m = {.id = 3};
  ASSERT_EQ(ac_ring_push_wait(r, &m, NULL, NULL, 2000000, NULL), -ETIMEDOUT);
  _Atomic uint32_t word = 1;
  ac_watch w = {&word, 0};
  ASSERT_EQ(ac_ring_push_wait(r, &m, NULL, NULL, -1, &w), AC_EEVENT);
  ASSERT_EQ(atomic_load(&r->producers_sleeping), 0);
  ASSERT_EQ(ac_ring_len(r), 2);
}

/* A watched word changed by another process wakes a consumer sleeping without a timeout, once
 * the changer wakes the ring's consumers (what ac_region_signal_event does). */
TEST_IMPL(ring_watch_wakes_a_sleeping_consumer) {
  ac_ring *r = new_ring(4);
  _Atomic uint32_t *word = ac_test_shared(64);
  pid_t pid = fork();
  if (pid == 0) {
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    ac_watch w = {word, 0};
    _exit(ac_ring_pop_wait(r, &m, buf, NULL, -1, 0, &w) == AC_EEVENT ? 0 : 1);
  }
  while (atomic_load(&r->consumers_sleeping) == 0) usleep(1000);
  atomic_fetch_add(word, 1);
  ac_ring_wake_consumers(r);
  ASSERT_EXITED(ac_test_wait(pid, 5000), 0);
}

TEST_IMPL(ring_sleeping_consumer_is_woken) {
  ac_ring *r = new_ring(4);
  pid_t pid = fork();
  if (pid == 0) {
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    int rc = ac_ring_pop_wait(r, &m, buf, NULL, -1, 0, NULL); /* no spin: sleeps at once */
    _exit(rc == 0 && m.id == 42 ? 0 : 1);
  }
  while (atomic_load(&r->consumers_sleeping) == 0) usleep(1000);
  uint64_t wakes = atomic_load(&r->consumer_wakes);
  ASSERT_OK(push_u64(r, 42));
  ASSERT_EXITED(ac_test_wait(pid, 5000), 0);
  ASSERT_EQ(atomic_load(&r->consumer_wakes), wakes + 1);
  ASSERT_GE(atomic_load(&r->consumer_sleeps), 1);
}

/* A push finding a spinner there does not pay for a futex wake-up. */
TEST_IMPL(ring_spinning_consumer_needs_no_wake) {
  ac_ring *r = new_ring(4);
  atomic_store(&r->consumers_sleeping, 1);
  atomic_store(&r->consumers_spinning, 1);
  ASSERT_OK(push_u64(r, 1));
  ASSERT_EQ(atomic_load(&r->consumer_wakes), 0);
  atomic_store(&r->consumers_spinning, 0);
  ASSERT_OK(push_u64(r, 2));
  ASSERT_EQ(atomic_load(&r->consumer_wakes), 1);
  atomic_store(&r->consumers_sleeping, 0);
  ASSERT_OK(push_u64(r, 3));
  ASSERT_EQ(atomic_load(&r->consumer_wakes), 1); /* nobody sleeps: no wake-up */
}

TEST_IMPL(ring_full_producer_waits_for_space) {
  ac_ring *r = new_ring(2);
  ASSERT_OK(push_u64(r, 1));
  ASSERT_OK(push_u64(r, 2));
  pid_t pid = fork();
  if (pid == 0) {
    uint64_t v = 3;
    ac_msg m = {.id = 3, .len = 8};
    _exit(ac_ring_push_wait(r, &m, &v, NULL, -1, NULL) == 0 ? 0 : 1);
  }
  while (atomic_load(&r->producers_sleeping) == 0) usleep(1000);
  ASSERT_EQ(pop_u64(r), 1);
  ASSERT_EXITED(ac_test_wait(pid, 5000), 0);
  ASSERT_EQ(pop_u64(r), 2);
  ASSERT_EQ(pop_u64(r), 3);
}

TEST_IMPL(ring_claim_records_identity_before_release) {
  ac_ring *r = new_ring(4);
  ac_msg m = {.id = 77, .block = 8192, .len = 100000};
  ASSERT_OK(ac_ring_try_push(r, &m, NULL, NULL));
  ac_claim claim = {0};
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, &claim));
  ASSERT_EQ(atomic_load(&claim.pos), 0);      /* released */
  ASSERT_EQ(atomic_load(&claim.id), 77);      /* the consumer still knows what it holds */
  ASSERT_EQ(atomic_load(&claim.block), 8192); /* and which block to free if it dies */
  ASSERT_EQ(ac_ring_try_pop(r, &m, buf, &claim), -EAGAIN);
  ASSERT_EQ(atomic_load(&claim.pos), 0);
  _Atomic uint64_t push_claim = 0;
  ASSERT_OK(ac_ring_try_push(r, &m, NULL, &push_claim));
  ASSERT_EQ(atomic_load(&push_claim), 0); /* cleared once published */
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
  ac_ring_set_lazy_wake(r, 0);
  uint64_t w1 = atomic_load(&r->consumer_wakes);
  ac_ring_set_busy(r, 1);
  while (ac_ring_len(r)) pop_u64(r);
  ASSERT_OK(push_u64(r, 50));
  ASSERT_EQ(atomic_load(&r->consumer_wakes), w1 + 1); /* eager: busy consumers do not count */
  atomic_store(&r->consumers_sleeping, 0);
}

/* The safety net for lazy waking: a consumer counted busy died, an item waits, one sleeps. */
TEST_IMPL(ring_kick_wakes_a_sleeper_only_when_needed) {
  ac_ring *r = new_ring(4);
  ASSERT_EQ(ac_ring_kick(r), 0); /* empty */
  ASSERT_OK(push_u64(r, 1));
  ASSERT_EQ(ac_ring_kick(r), 0); /* nobody sleeps */
  ac_ring_set_lazy_wake(r, 1);
  pid_t pid = fork();
  if (pid == 0) {
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    if (ac_ring_pop_wait(r, &m, buf, NULL, -1, 0, NULL) != 0 || m.id != 1) _exit(1);
    /* Then sleeps for the second, which arrives while lazy waking trusts a busy consumer. */
    _exit(ac_ring_pop_wait(r, &m, buf, NULL, -1, 0, NULL) == 0 && m.id == 2 ? 0 : 2);
  }
  while (ac_ring_len(r) != 0 || atomic_load(&r->consumers_sleeping) == 0) usleep(1000);
  ac_ring_set_busy(r, 1); /* "a busy consumer" that will never come back */
  ASSERT_OK(push_u64(r, 2)); /* lazily not woken */
  usleep(20000);
  ASSERT_EQ(ac_ring_len(r), 1);
  ASSERT_EQ(ac_ring_kick(r), 1);
  ASSERT_EXITED(ac_test_wait(pid, 5000), 0);
  ASSERT_EQ(ac_ring_kick(r), 0);
}
