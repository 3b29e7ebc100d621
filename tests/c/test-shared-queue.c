/* test-shared-queue.c: the shared FIFO: order through ring wraps and the arena, bounds and
 * timeouts, many producers and consumers across processes, a dead lock holder. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/errors.h"
#include "allcores/shared_queue.h"
#include "task.h"

static ac_squeue *new_queue(uint64_t ring, uint64_t arena, uint64_t maxsize) {
  ac_squeue *q = ac_test_shared(ac_squeue_footprint(ring, arena));
  ASSERT_OK(ac_squeue_init(q, ring, arena, maxsize));
  return q;
}

typedef struct {
  char *buf;
  uint64_t cap, len;
} sink;

static void *to_sink(void *ctx, uint64_t len) {
  sink *s = ctx;
  s->len = len;
  return len <= s->cap ? s->buf : NULL;
}

static void fill(char *p, uint64_t n, uint64_t seed) {
  for (uint64_t i = 0; i < n; i++) p[i] = (char)(seed * 31 + i * 7);
}

TEST_IMPL(squeue_keeps_order_through_wraps_and_the_arena) {
  ac_squeue *q = new_queue(4096, 1 << 20, 0);
  static const uint64_t sizes[] = {0, 1, 7, 8, 9, 500, 1024, 1025, 3000, 100000, 2, 40000};
  enum { N = sizeof sizes / sizeof sizes[0] };
  char *in = malloc(100000), *out = malloc(100000);
  sink s = {out, 100000, 0};
  uint64_t seed = 1;
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < N; i++) {
      fill(in, sizes[i], seed + i);
      ASSERT_OK(ac_squeue_put(q, in, sizes[i], (uint32_t)i, 0, 0));
    }
    ASSERT_EQ(ac_squeue_count(q), N);
    for (int i = 0; i < N; i++) {
      uint32_t tag;
      ASSERT_OK(ac_squeue_get(q, to_sink, &s, &tag, 0, 0));
      ASSERT_EQ(tag, i);
      ASSERT_EQ(s.len, sizes[i]);
      fill(in, sizes[i], seed + i);
      ASSERT_MEM_EQ(out, in, sizes[i]);
    }
    seed += 100;
  }
  ASSERT_EQ(ac_squeue_count(q), 0);
  free(in);
  free(out);
}

TEST_IMPL(squeue_bounds_empty_and_timeouts) {
  ac_squeue *q = new_queue(1024, 0, 2);
  char b[8] = "abcdefg", out[8];
  sink s = {out, 8, 0};
  uint32_t tag;
  ASSERT_EQ(ac_squeue_get(q, to_sink, &s, &tag, 0, 0), -EAGAIN);
  ASSERT_EQ(ac_squeue_get(q, to_sink, &s, &tag, 10000000, 0), -ETIMEDOUT);
  ASSERT_OK(ac_squeue_put(q, b, 8, 0, 0, 0));
  ASSERT_OK(ac_squeue_put(q, b, 8, 0, -1, 0));
  ASSERT_EQ(ac_squeue_put(q, b, 8, 0, 0, 0), -EAGAIN); /* maxsize */
  ASSERT_EQ(ac_squeue_put(q, b, 8, 0, 10000000, 0), -ETIMEDOUT);
  ASSERT_EQ(ac_squeue_put(q, b, 300, 0, 0, 0), AC_ETOOBIG); /* > ring/4 and no arena */
  ASSERT_EQ(ac_squeue_put(q, b, 1, 1u << 24, 0, 0), -EINVAL); /* tag too wide */
  ASSERT_EQ(ac_squeue_max_item(q), 256);
  ac_squeue *r = new_queue(1024, 0, 0);
  int n = 0;
  while (ac_squeue_put(r, b, 8, 0, 0, 0) == 0) n++;
  ASSERT_EQ(n, 1024 / 16); /* then the ring's bytes bound it */
}

TEST_IMPL(squeue_failed_allocation_leaves_the_item_queued) {
  ac_squeue *q = new_queue(1024, 1 << 16, 0);
  char b[5000], out[5000];
  fill(b, sizeof b, 3);
  ASSERT_OK(ac_squeue_put(q, b, sizeof b, 9, 0, 0));
  sink small = {out, 10, 0}, big = {out, sizeof out, 0};
  uint32_t tag;
  ASSERT_EQ(ac_squeue_get(q, to_sink, &small, &tag, 0, 0), -ENOMEM);
  ASSERT_EQ(ac_squeue_count(q), 1);
  ASSERT_OK(ac_squeue_get(q, to_sink, &big, &tag, 0, 0));
  ASSERT_EQ(tag, 9);
  ASSERT_MEM_EQ(out, b, sizeof b);
}

TEST_IMPL(squeue_try_refuses_to_block) {
  ac_squeue *q = new_queue(1 << 20, 1 << 22, 0);
  char *big = calloc(1, AC_SQ_TRY_BYTES + 1);
  ASSERT_EQ(ac_squeue_put(q, big, AC_SQ_TRY_BYTES + 1, 0, 0, AC_SQ_TRY), -EBUSY);
  ASSERT_OK(ac_squeue_put(q, big, AC_SQ_TRY_BYTES + 1, 0, 0, 0));
  sink s = {big, AC_SQ_TRY_BYTES + 1, 0};
  uint32_t tag;
  ASSERT_EQ(ac_squeue_get(q, to_sink, &s, &tag, 0, AC_SQ_TRY), -EBUSY);
  ASSERT_OK(ac_squeue_get(q, to_sink, &s, &tag, 0, 0));
  ASSERT_OK(ac_smutex_lock(&q->mu, 0)); /* held: a try does not wait for it */
  ASSERT_EQ(ac_squeue_put(q, big, 1, 0, 0, AC_SQ_TRY), -EBUSY);
  ASSERT_OK(ac_smutex_unlock(&q->mu));
  free(big);
}

TEST_IMPL(squeue_survives_a_process_killed_holding_its_lock) {
  ac_squeue *q = new_queue(1024, 0, 0);
  _Atomic int *held = ac_test_shared(sizeof *held);
  pid_t pid = fork();
  if (pid == 0) {
    ac_smutex_lock(&q->mu, -1);
    atomic_store(held, 1);
    pause();
    _exit(0);
  }
  while (!atomic_load(held)) usleep(1000);
  kill(pid, SIGKILL);
  ac_test_wait(pid, 10000);
  char out[4];
  sink s = {out, 4, 0};
  uint32_t tag;
  ASSERT_OK(ac_squeue_put(q, "abc", 4, 0, 1000000000, 0));
  ASSERT_OK(ac_squeue_get(q, to_sink, &s, &tag, 0, 0));
  ASSERT_MEM_EQ(out, "abc", 4);
}

typedef struct {
  uint32_t producer, seq;
  char pad[64];
} item;

TEST_IMPL_TIMEOUT(squeue_many_producers_and_consumers_across_processes, 60000) {
  enum { P = 3, C = 2 };
  long n = 20000 / ac_test_scale();
  ac_squeue *q = new_queue(4096, 1 << 20, 64);
  _Atomic long *sums = ac_test_shared(sizeof(long) * (C + 1));
  pid_t pids[P + C];
  for (int k = 0; k < P; k++) {
    pids[k] = fork();
    if (pids[k] == 0) {
      char big[3000];
      for (long i = 0; i < n; i++) {
        item it = {(uint32_t)k, (uint32_t)i, {0}};
        /* every 50th item is big enough for the arena */
        uint64_t len = i % 50 == 0 ? sizeof big : sizeof it;
        memcpy(big, &it, sizeof it);
        if (ac_squeue_put(q, big, len, 0, 10000000000LL, 0) != 0) _exit(1);
      }
      _exit(0);
    }
  }
  for (int k = 0; k < C; k++) {
    pids[P + k] = fork();
    if (pids[P + k] == 0) {
      uint32_t last[P];
      for (int j = 0; j < P; j++) last[j] = UINT32_MAX;
      char buf[3000];
      sink s = {buf, sizeof buf, 0};
      long sum = 0;
      for (long i = 0; i < n * P / C; i++) {
        uint32_t tag;
        if (ac_squeue_get(q, to_sink, &s, &tag, 10000000000LL, 0) != 0) _exit(1);
        item it;
        memcpy(&it, buf, sizeof it);
        if (it.producer >= P) _exit(2);
        /* FIFO: each consumer sees each producer's items in increasing order */
        if (last[it.producer] != UINT32_MAX && it.seq <= last[it.producer]) _exit(3);
        last[it.producer] = it.seq;
        sum += it.seq;
      }
      sums[k] = sum;
      _exit(0);
    }
  }
  for (int k = 0; k < P + C; k++) ASSERT_EXITED(ac_test_wait(pids[k], 60000), 0);
  ASSERT_EQ(sums[0] + sums[1], (long)P * n * (n - 1) / 2);
  ASSERT_EQ(ac_squeue_count(q), 0);
}
