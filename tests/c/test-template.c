/* test-template.c: the template process: spawning, exit statuses, kills, shutdown and parent
 * death. Hooks are NULL: no Python here. */
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/errors.h"
#include "allcores/region.h"
#include "allcores/template.h"
#include "task.h"

static void wait_state(ac_region *r, uint32_t k, uint32_t state) {
  int64_t end = ac_now_ns() + 5000000000LL;
  while (atomic_load(&r->workers[k].state) != state) {
    if (ac_now_ns() > end) AC__FAIL("worker %u never reached state %u", k, state);
    usleep(1000);
  }
}

/* Workers of these tests: code 40+k, or run tasks until the ring closes. */
static void worker_body(ac_region *r, int k) {
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  for (;;) {
    int rc = ac_worker_next_task(r, (uint32_t)k, &m, buf, -1, 0);
    if (rc == AC_ECLOSED) _exit(0);
    if (rc) _exit(99);
    if (m.kind == 1) _exit(40 + k);   /* "exit" task */
    if (m.kind == 2) pause();         /* "hang" task */
    ac_msg res = {.id = m.id};
    struct iovec iov = {&k, sizeof k};
    ac_worker_send_result(r, (uint32_t)k, &res, &iov, 1, -1);
  }
}

static pid_t start_template(ac_region *r, int efd) {
  pid_t pid = fork();
  if (pid == 0) {
    int k = ac_template_serve(r, efd, NULL);
    if (k >= 0) worker_body(r, k);
    _exit(k == AC_ECLOSED ? 0 : 1);
  }
  return pid;
}

static void send_kind(ac_region *r, uint64_t id, uint32_t kind) {
  ac_msg m = {.id = id, .kind = kind};
  ASSERT_OK(ac_ring_push_wait(r->tasks, &m, NULL, NULL, -1, NULL));
}

TEST_IMPL_TIMEOUT(template_spawns_reaps_and_drains, 20000) {
  ac_region r;
  ac_region_config cfg = {2, 16, 16, 1 << 20};
  ASSERT_OK(ac_region_create(&r, &cfg));
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_OK(ac_region_request_spawn(&r, 0));
  ASSERT_OK(ac_region_request_spawn(&r, 1));
  pid_t tpl = start_template(&r, efd);
  wait_state(&r, 0, AC_W_IDLE);
  wait_state(&r, 1, AC_W_IDLE);
  /* a task that makes its worker exit: the template records the status */
  send_kind(&r, 1, 1);
  int64_t end = ac_now_ns() + 5000000000LL;
  int k = -1;
  while (k < 0 && ac_now_ns() < end) {
    for (int j = 0; j < 2; j++)
      if (atomic_load(&r.workers[j].state) == AC_W_EXITED) k = j;
    usleep(1000);
  }
  ASSERT_GE(k, 0);
  ASSERT(WIFEXITED(r.workers[k].wait_status));
  ASSERT_EQ(WEXITSTATUS(r.workers[k].wait_status), 40 + k);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, (uint32_t)k, &out, buf), 1);
  ASSERT_EQ(out.task_id, 1);
  /* respawn into the same slot */
  ASSERT_OK(ac_region_request_spawn(&r, (uint32_t)k));
  ASSERT_OK(ac_template_notify(efd));
  wait_state(&r, (uint32_t)k, AC_W_IDLE);
  ASSERT_EQ(r.workers[k].gen, 2);
  /* drain: close the ring, workers exit 0, the template exits */
  atomic_store(&r.hdr->shutdown, AC_SHUTDOWN_DRAIN);
  ac_ring_close(r.tasks);
  ASSERT_OK(ac_template_notify(efd));
  int st;
  ASSERT_EQ(waitpid(tpl, &st, 0), tpl);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  ac_region_destroy(&r);
}

TEST_IMPL_TIMEOUT(template_kills_on_request_and_on_shutdown_now, 20000) {
  ac_region r;
  ac_region_config cfg = {2, 16, 16, 1 << 20};
  ASSERT_OK(ac_region_create(&r, &cfg));
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ac_region_request_spawn(&r, 0);
  ac_region_request_spawn(&r, 1);
  pid_t tpl = start_template(&r, efd);
  wait_state(&r, 0, AC_W_IDLE);
  wait_state(&r, 1, AC_W_IDLE);
  send_kind(&r, 7, 2); /* a task that hangs */
  int64_t end = ac_now_ns() + 5000000000LL;
  int k = -1;
  while (k < 0 && ac_now_ns() < end) {
    for (int j = 0; j < 2; j++)
      if (atomic_load(&r.workers[j].take.id) == 7) k = j;
    usleep(1000);
  }
  ASSERT_GE(k, 0);
  ASSERT_OK(ac_region_request_kill(&r, (uint32_t)k));
  ASSERT_OK(ac_template_notify(efd));
  wait_state(&r, (uint32_t)k, AC_W_EXITED);
  ASSERT(WIFSIGNALED(r.workers[k].wait_status));
  ASSERT_EQ(WTERMSIG(r.workers[k].wait_status), SIGKILL);
  atomic_store(&r.hdr->shutdown, AC_SHUTDOWN_NOW);
  ASSERT_OK(ac_template_notify(efd));
  int st;
  ASSERT_EQ(waitpid(tpl, &st, 0), tpl);
  ASSERT_EQ(r.workers[1 - k].state, AC_W_EXITED);
  ac_region_destroy(&r);
}

/* The pool's process dies by SIGKILL: the template notices (pidfd) and takes its workers down. */
TEST_IMPL_TIMEOUT(template_and_workers_exit_when_parent_dies, 20000) {
  ac_region r;
  ac_region_config cfg = {2, 16, 16, 1 << 20};
  ASSERT_OK(ac_region_create(&r, &cfg));
  pid_t parent = fork();
  if (parent == 0) {
    atomic_store(&r.hdr->parent_pid, getpid());
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ac_region_request_spawn(&r, 0);
    ac_region_request_spawn(&r, 1);
    start_template(&r, efd);
    pause();
    _exit(0);
  }
  wait_state(&r, 0, AC_W_IDLE);
  wait_state(&r, 1, AC_W_IDLE);
  pid_t w0 = r.workers[0].pid, w1 = r.workers[1].pid, tpl = r.hdr->template_pid;
  kill(parent, SIGKILL);
  waitpid(parent, NULL, 0);
  int64_t t0 = ac_now_ns();
  /* orphans are reaped by init at its own pace: a zombie or a vanished pid has exited */
  for (;;) {
    int alive = 0;
    pid_t pids[3] = {w0, w1, tpl};
    for (int i = 0; i < 3; i++) {
      char path[64], state = 0;
      snprintf(path, sizeof path, "/proc/%d/stat", pids[i]);
      FILE *f = fopen(path, "r");
      if (f) {
        if (fscanf(f, "%*d %*s %c", &state) == 1 && state != 'Z') alive++;
        fclose(f);
      }
    }
    if (!alive) break;
    if (ac_now_ns() - t0 > 1000000000LL) AC__FAIL("%d processes outlived the parent by 1 s", alive);
    usleep(2000);
  }
  ac_region_destroy(&r);
}
