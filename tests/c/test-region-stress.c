/* test-region-stress.c: a parent and several workers on one region, tasks and results of mixed
 * sizes (inline, arena blocks up to 200 KB, sent in two parts), through small rings that fill
 * up all the time. The arena is large enough never to run out (a result it has no room for
 * travels in a segment of its own: region_a_result_the_arena_has_no_room_for_travels_in_a_segment
 * in test-region.c). As processes (the pool)
 * and as threads (the thread backend, and what ThreadSanitizer can see). Every result arrives
 * once with its bytes intact and every arena block comes back. */
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "pool-util.h"
#include "task.h"

enum { WORKERS = 3, MAX_LEN = 200000 };

typedef struct wctx {
  ac_region *r;
  uint32_t k;
  int rc;
} wctx;

static void *worker_thread(void *arg) {
  wctx *w = arg;
  uint8_t *scratch = malloc(MAX_LEN);
  w->rc = ac_test_worker_loop(w->r, w->k, scratch);
  free(scratch);
  return NULL;
}

static void run(int threads, uint64_t tasks) {
  ac_region r;
  ac_region_config cfg = {WORKERS, 8, 8, 64 << 20};
  ASSERT_OK(ac_region_create(&r, &cfg));
  pthread_t tids[WORKERS];
  pid_t pids[WORKERS];
  wctx w[WORKERS];
  for (uint32_t k = 0; k < WORKERS; k++) {
    ASSERT_OK(ac_region_request_spawn(&r, k));
    ASSERT_OK(ac_region_host_spawned(&r, k, (int32_t)k + 1));
    w[k] = (wctx){&r, k, -1};
    if (threads) {
      ASSERT_OK(pthread_create(&tids[k], NULL, worker_thread, &w[k]));
    } else if ((pids[k] = fork()) == 0) {
      worker_thread(&w[k]);
      _exit(w[k].rc);
    }
  }
  uint8_t *scratch = malloc(MAX_LEN);
  uint8_t *seen = calloc(tasks, 1);
  uint8_t buf[AC_SLOT_INLINE];
  uint64_t sent = 0, got = 0, blocks = 0;
  int64_t deadline = ac_now_ns() + 50000000000LL;
  while (got < tasks) {
    int progress = 0;
    if (sent < tasks) {
      int rc = pu_send_task(&r, sent, 0, scratch);
      if (rc == 0) { sent++; progress = 1; }
      else if (rc != -ETIMEDOUT) FAIL("send of task %" PRIu64 ": %d", sent, rc);
    }
    ac_msg m;
    while (ac_ring_try_pop(r.results, &m, buf, NULL) == 0) {
      ASSERT_LT(m.id, tasks);
      ASSERT_EQ(seen[m.id], 0);
      seen[m.id] = 1;
      blocks += m.block != 0;
      int rc = pu_check_result(&r, &m, buf);
      if (rc) FAIL("result %" PRIu64 " from worker %u: check %d", m.id, m.aux, rc);
      got++;
      progress = 1;
    }
    if (!progress) {
      if (ac_now_ns() > deadline) FAIL("stuck: %" PRIu64 " sent, %" PRIu64 " results", sent, got);
      usleep(50);
    }
  }
  ac_ring_close(r.tasks);
  for (uint32_t k = 0; k < WORKERS; k++) {
    if (threads) {
      ASSERT_OK(pthread_join(tids[k], NULL));
      ASSERT_EQ(w[k].rc, 0);
    } else {
      ASSERT_EXITED(ac_test_wait(pids[k], 10000), 0);
    }
  }
  ASSERT_EQ(ac_ring_len(r.results), 0);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
  ASSERT_EQ(r.hdr->arena.allocs, r.hdr->arena.frees);
  uint64_t done = 0;
  for (uint32_t k = 0; k < WORKERS; k++) done += r.workers[k].tasks_done;
  ASSERT_EQ(done, tasks);
  fprintf(stderr, "%" PRIu64 " tasks, %" PRIu64 " arena blocks, %" PRIu64 " results in blocks\n",
          tasks, (uint64_t)r.hdr->arena.allocs, blocks);
  free(seen);
  free(scratch);
  ac_region_destroy(&r);
}

TEST_IMPL_TIMEOUT(region_stress_processes, 60000) {
  if (AC_TEST_TSAN) TEST_SKIP("TSan cannot see memory shared between processes; see _threads");
  run(0, 40000 / (uint64_t)ac_test_scale());
}

TEST_IMPL_TIMEOUT(region_stress_threads, 60000) {
  run(1, 40000 / (uint64_t)ac_test_scale());
}
