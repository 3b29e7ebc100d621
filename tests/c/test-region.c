/* test-region.c: the region: sending inline and through the arena, the worker steps, and what
 * the parent finds after a worker dies in each window (ac_region_reap). */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/errors.h"
#include "allcores/region.h"
#include "task.h"

static void make_region(ac_region *r, uint32_t n) {
  ac_region_config cfg = {n, 16, 16, 64 << 20};
  ASSERT_OK(ac_region_create(r, &cfg));
}

static void parent_send(ac_region *r, uint64_t id, const void *data, size_t len) {
  struct iovec iov = {(void *)data, len};
  ac_msg m = {.id = id, .kind = 1};
  ASSERT_OK(ac_region_send(r, r->tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
}

TEST_IMPL(region_create_rejects_bad_config) {
  ac_region r;
  ac_region_config cfg = {0, 16, 16, 1 << 20};
  ASSERT_EQ(ac_region_create(&r, &cfg), -EINVAL);
  cfg.nworkers = 2;
  cfg.task_slots = 12;
  ASSERT_EQ(ac_region_create(&r, &cfg), -EINVAL);
}

TEST_IMPL(region_send_inline_and_through_arena_with_parts) {
  ac_region r;
  make_region(&r, 1);
  char small[] = "hello";
  static char big[100000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)i;
  struct iovec parts[3] = {{small, 5}, {big, sizeof big}, {small, 5}};
  ac_msg m = {.id = 9};
  ASSERT_OK(ac_region_send(&r, r.tasks, &m, parts, 3, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
  parent_send(&r, 10, small, 5);
  ac_msg got;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_worker_next_task(&r, 0, &got, buf, 0, 0));
  ASSERT_EQ(got.id, 9);
  ASSERT_GT(got.block, 0);
  ASSERT_OK(ac_region_check_msg(&r, &got));
  const char *p = ac_region_payload(&r, &got, buf);
  ASSERT_EQ(ac_block_at(r.base, got.block)->len, 100010);
  ASSERT_MEM_EQ(p, "hello", 5);
  ASSERT_MEM_EQ(p + 5, big, sizeof big);
  ASSERT_EQ(r.workers[0].take.id, 9);
  ac_msg res = {.id = 9, .kind = 2};
  struct iovec out = {"ok", 2};
  ASSERT_OK(ac_worker_send_result(&r, 0, &res, &out, 1, -1));
  ASSERT_EQ(r.workers[0].take.id, 0);
  ASSERT_EQ(r.workers[0].tasks_done, 1);
  ASSERT_OK(ac_worker_next_task(&r, 0, &got, buf, 0, 0));
  ASSERT_EQ(got.id, 10);
  ASSERT_EQ(got.block, 0);
  ASSERT_MEM_EQ(buf, "hello", 5);
  ac_region_destroy(&r);
}

TEST_IMPL(region_check_msg_rejects_forged_headers) {
  ac_region r;
  make_region(&r, 1);
  ac_msg m = {.id = 1, .len = AC_SLOT_INLINE + 1};
  ASSERT_EQ(ac_region_check_msg(&r, &m), AC_ECORRUPT);
  m.len = 10;
  m.block = r.size + 4096;
  ASSERT_EQ(ac_region_check_msg(&r, &m), AC_ECORRUPT);
  m.block = 4096 * 3 + 8;
  ASSERT_EQ(ac_region_check_msg(&r, &m), AC_ECORRUPT);
  ac_region_destroy(&r);
}

/* A worker process killed while running a task: reap names the task and frees its block. */
TEST_IMPL(region_reap_after_death_while_running) {
  ac_region r;
  make_region(&r, 2);
  static char big[50000];
  parent_send(&r, 5, big, sizeof big);
  ASSERT_OK(ac_region_request_spawn(&r, 0));
  r.workers[0].state = AC_W_STARTING;
  pid_t pid = fork();
  if (pid == 0) {
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    if (ac_worker_next_task(&r, 0, &m, buf, -1, 0) != 0) _exit(2);
    pause(); /* "running" until killed */
    _exit(0);
  }
  while (r.workers[0].take.id != 5) usleep(1000);
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  r.workers[0].pid = pid;
  r.workers[0].wait_status = st;
  r.workers[0].state = AC_W_EXITED; /* what the template records */
  uint64_t in_use = r.hdr->arena.bytes_in_use;
  ASSERT_GT(in_use, 0);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.task_id, 5);
  ASSERT_EQ(out.recovered, 0);
  ASSERT(WIFSIGNALED(out.wait_status) && WTERMSIG(out.wait_status) == SIGKILL);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0); /* the task's block was reclaimed */
  ASSERT_EQ(r.workers[0].state, AC_W_EMPTY);
  ASSERT_EQ(r.tasks->consumers_busy, 0); /* the dead worker's busy count was returned */
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 0);
  ac_region_destroy(&r);
}

/* A worker that died holding a claimed, unreleased slot: its task is recovered, not lost. */
TEST_IMPL(region_reap_recovers_task_taken_but_not_started) {
  ac_region r;
  make_region(&r, 1);
  parent_send(&r, 6, "abc", 3);
  ac_worker_rec *w = &r.workers[0];
  uint64_t pos = atomic_load(&r.tasks->dequeue_pos);
  atomic_store(&w->take.pos, pos + 1); /* the state a kill between CAS and release leaves */
  ASSERT(atomic_compare_exchange_strong(&r.tasks->dequeue_pos, &pos, pos + 1));
  w->state = AC_W_EXITED;
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.recovered, 1);
  ASSERT_EQ(out.msg.id, 6);
  ASSERT_MEM_EQ(buf, "abc", 3);
  ASSERT_EQ(out.task_id, 0);
  ac_region_destroy(&r);
}

/* A worker that died while publishing a result: a tombstone unblocks the result ring. */
TEST_IMPL(region_reap_unblocks_result_ring) {
  ac_region r;
  make_region(&r, 1);
  ac_worker_rec *w = &r.workers[0];
  uint64_t pos = atomic_load(&r.results->enqueue_pos);
  atomic_store(&w->push_pos, pos + 1);
  ASSERT(atomic_compare_exchange_strong(&r.results->enqueue_pos, &pos, pos + 1));
  atomic_store(&w->take.id, 8);
  w->state = AC_W_EXITED;
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.task_id, 8);
  ac_msg m;
  ASSERT_EQ(ac_ring_try_pop(r.results, &m, buf, NULL), -EAGAIN); /* tombstone skipped */
  ASSERT_EQ(ac_ring_len(r.results), 0);
  ac_region_destroy(&r);
}
