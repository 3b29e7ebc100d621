/* test-ring-stress.c: several producers and consumers on one ring, as processes (the pool's
 * case) and as threads (the thread backend's case, and the one ThreadSanitizer can see).
 * Every message is delivered exactly once with its payload intact, each consumer sees each
 * producer's messages in order, and small rings keep producers and consumers sleeping and
 * waking throughout. AC_TEST_SCALE divides the counts (millions of messages at scale 1). */
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/errors.h"
#include "allcores/ring.h"
#include "task.h"

#define MAX_SIDE 8

typedef struct stress_cfg {
  uint64_t cap;
  int producers, consumers;
  long per_producer;
  int64_t spin_ns;
  uint32_t max_spinners;
  int lazy;    /* lazy waking, consumers mark themselves busy like pool workers do */
  int threads; /* 1: threads of this process; 0: forked processes */
} stress_cfg;

typedef struct stress {
  const stress_cfg *cfg;
  ac_ring *ring;
  _Atomic uint8_t *seen;
  _Atomic uint64_t sum;
  _Atomic uint64_t full; /* pushes that found the ring full and had to wait */
  _Atomic uint64_t failures;
  _Atomic uint64_t first_failure;
} stress;

static uint32_t msg_len(uint64_t v) { return 8 + (uint32_t)(v % 200); }

static void fail_once(stress *s, uint64_t code) {
  uint64_t zero = 0;
  atomic_compare_exchange_strong(&s->first_failure, &zero, code);
  atomic_fetch_add(&s->failures, 1);
}

static void consume(stress *s) {
  const stress_cfg *c = s->cfg;
  uint64_t total = (uint64_t)c->per_producer * c->producers;
  int64_t last[MAX_SIDE];
  for (int p = 0; p < MAX_SIDE; p++) last[p] = -1;
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  for (;;) {
    if (c->lazy) ac_ring_set_busy(s->ring, 0);
    int rc = ac_ring_pop_wait(s->ring, &m, buf, NULL, -1, c->spin_ns, NULL);
    if (rc == AC_ECLOSED) break;
    if (rc != 0) { fail_once(s, 1); break; }
    if (c->lazy) ac_ring_set_busy(s->ring, 1);
    uint64_t v;
    memcpy(&v, buf, 8);
    if (v != m.id || m.id >= total || m.len != msg_len(v)) { fail_once(s, 2); continue; }
    for (uint32_t i = 8; i < m.len; i++)
      if (buf[i] != (uint8_t)(v + i)) { fail_once(s, 3); break; }
    int p = (int)(v / (uint64_t)c->per_producer);
    if ((int64_t)v <= last[p]) fail_once(s, 4); /* one producer's messages out of order */
    last[p] = (int64_t)v;
    if (atomic_fetch_add(&s->seen[v], 1) != 0) fail_once(s, 5); /* delivered twice */
    atomic_fetch_add_explicit(&s->sum, v, memory_order_relaxed);
  }
  if (c->lazy) ac_ring_set_busy(s->ring, 0);
}

static void produce(stress *s, int p) {
  const stress_cfg *c = s->cfg;
  uint8_t buf[AC_SLOT_INLINE];
  for (long i = 0; i < c->per_producer; i++) {
    uint64_t v = (uint64_t)p * (uint64_t)c->per_producer + (uint64_t)i;
    ac_msg m = {.id = v, .len = msg_len(v)};
    memcpy(buf, &v, 8);
    for (uint32_t j = 8; j < m.len; j++) buf[j] = (uint8_t)(v + j);
    int rc = ac_ring_try_push(s->ring, &m, buf, NULL);
    if (rc == -EAGAIN) {
      atomic_fetch_add_explicit(&s->full, 1, memory_order_relaxed);
      rc = ac_ring_push_wait(s->ring, &m, buf, NULL, -1, NULL);
    }
    if (rc != 0) { fail_once(s, 6); return; }
  }
}

typedef struct { stress *s; int p; } side_arg;
static void *consumer_thread(void *a) { consume(((side_arg *)a)->s); return NULL; }
static void *producer_thread(void *a) {
  produce(((side_arg *)a)->s, ((side_arg *)a)->p);
  return NULL;
}

static void run_stress(const stress_cfg *c) {
  ASSERT_LE(c->producers, MAX_SIDE);
  uint64_t total = (uint64_t)c->per_producer * c->producers;
  stress *s = ac_test_shared(sizeof *s);
  s->cfg = c;
  s->ring = ac_test_shared(ac_ring_bytes(c->cap));
  s->seen = ac_test_shared(total);
  ASSERT_OK(ac_ring_init(s->ring, c->cap, c->max_spinners));
  ac_ring_set_lazy_wake(s->ring, c->lazy);

  side_arg args[2 * MAX_SIDE];
  pthread_t tids[2 * MAX_SIDE];
  pid_t pids[2 * MAX_SIDE];
  int n = 0;
  for (int i = 0; i < c->consumers + c->producers; i++, n++) {
    int is_consumer = i < c->consumers;
    args[i] = (side_arg){s, i - c->consumers};
    if (c->threads) {
      ASSERT_OK(pthread_create(&tids[i], NULL, is_consumer ? consumer_thread : producer_thread,
                               &args[i]));
    } else if ((pids[i] = fork()) == 0) {
      if (is_consumer) consume(s);
      else produce(s, args[i].p);
      _exit(0);
    }
  }
  /* Producers first; then close, and the consumers drain what is left and stop. */
  for (int i = c->consumers; i < n; i++) {
    if (c->threads) ASSERT_OK(pthread_join(tids[i], NULL));
    else ASSERT_EXITED(ac_test_wait(pids[i], 60000), 0);
  }
  ac_ring_close(s->ring);
  for (int i = 0; i < c->consumers; i++) {
    if (c->threads) ASSERT_OK(pthread_join(tids[i], NULL));
    else ASSERT_EXITED(ac_test_wait(pids[i], 60000), 0);
  }
  if (atomic_load(&s->failures))
    FAIL("%" PRIu64 " failures, first of kind %" PRIu64 " (see consume/produce)",
         atomic_load(&s->failures), atomic_load(&s->first_failure));
  for (uint64_t i = 0; i < total; i++)
    if (s->seen[i] != 1) FAIL("message %" PRIu64 " delivered %d times", i, (int)s->seen[i]);
  ASSERT_EQ(atomic_load(&s->sum), total * (total - 1) / 2);
  ASSERT_EQ(ac_ring_len(s->ring), 0);
  ASSERT_EQ(atomic_load(&s->ring->consumers_sleeping), 0);
  ASSERT_EQ(atomic_load(&s->ring->consumers_spinning), 0);
  ASSERT_EQ(atomic_load(&s->ring->producers_sleeping), 0);
  fprintf(stderr, "%" PRIu64 " messages, %" PRIu64 " full-ring waits, %" PRIu64
          " consumer sleeps, %" PRIu64 " wakes\n", total, atomic_load(&s->full),
          atomic_load(&s->ring->consumer_sleeps), atomic_load(&s->ring->consumer_wakes));
  if (c->cap <= 4) {
    /* Small rings must have made both sides sleep: the futex paths were exercised. */
    ASSERT_GT(atomic_load(&s->full), 0);
    ASSERT_GT(atomic_load(&s->ring->consumer_sleeps), 0);
  }
}

/* Under ThreadSanitizer, processes add nothing: it cannot see memory shared between them. */
#define SKIP_PROCESSES_UNDER_TSAN()                                                       \
  do {                                                                                    \
    if (AC_TEST_TSAN) TEST_SKIP("TSan cannot see memory shared between processes; the "   \
                                "threaded variant covers this under TSan");               \
  } while (0)

TEST_IMPL_TIMEOUT(ring_stress_processes_small_ring_sleeping, 60000) {
  SKIP_PROCESSES_UNDER_TSAN();
  stress_cfg c = {.cap = 4, .producers = 3, .consumers = 3,
                  .per_producer = 300000 / ac_test_scale(),
                  .max_spinners = 1};
  run_stress(&c);
}

TEST_IMPL_TIMEOUT(ring_stress_processes_spinning, 60000) {
  SKIP_PROCESSES_UNDER_TSAN();
  stress_cfg c = {.cap = 64, .producers = 3, .consumers = 3,
                  .per_producer = 400000 / ac_test_scale(),
                  .spin_ns = 20000, .max_spinners = 2};
  run_stress(&c);
}

TEST_IMPL_TIMEOUT(ring_stress_processes_lazy_wake_busy_consumers, 60000) {
  SKIP_PROCESSES_UNDER_TSAN();
  stress_cfg c = {.cap = 16, .producers = 2, .consumers = 4,
                  .per_producer = 300000 / ac_test_scale(),
                  .spin_ns = 5000, .max_spinners = 1, .lazy = 1};
  run_stress(&c);
}

TEST_IMPL_TIMEOUT(ring_stress_threads_small_ring_sleeping, 60000) {
  stress_cfg c = {.cap = 4, .producers = 3, .consumers = 3,
                  .per_producer = 200000 / ac_test_scale(),
                  .max_spinners = 1, .threads = 1};
  run_stress(&c);
}

TEST_IMPL_TIMEOUT(ring_stress_threads_spinning_lazy, 60000) {
  stress_cfg c = {.cap = 16, .producers = 2, .consumers = 3,
                  .per_producer = 200000 / ac_test_scale(),
                  .spin_ns = 10000, .max_spinners = 1, .lazy = 1, .threads = 1};
  run_stress(&c);
}
