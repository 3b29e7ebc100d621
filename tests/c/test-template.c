/* test-template.c: the template process: spawning workers (the index returned in each child),
 * exit statuses, kill requests, shutdown DRAIN and NOW, fork hooks, and parent death. No
 * Python here: the hooks are plain C or NULL. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/errors.h"
#include "allcores/region.h"
#include "allcores/template.h"
#include "task.h"

enum { TASK_ECHO = 0, TASK_EXIT = 1, TASK_HANG = 2, TASK_SLEEP = 3 };

typedef struct pool {
  ac_region r;
  int efd;
  pid_t tpl;
} pool;

typedef struct hook_counts {
  _Atomic int prepare, parent, child;
  _Atomic int child_saw_k[8];
} hook_counts;

static void wait_state(ac_region *r, uint32_t k, uint32_t state) {
  int64_t end = ac_now_ns() + 5000000000LL;
  while (atomic_load(&r->workers[k].state) != state) {
    if (ac_now_ns() > end)
      FAIL("worker %u stayed in state %u, never reached %u", k, atomic_load(&r->workers[k].state),
           state);
    usleep(1000);
  }
}

/* What a worker replies: its index and its pid, so the parent can check both. */
typedef struct reply {
  int32_t k;
  int32_t pid;
} reply;

static void worker_body(ac_region *r, int k) {
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  for (;;) {
    int rc = ac_worker_next_task(r, (uint32_t)k, &m, buf, -1, 0);
    if (rc == AC_ECLOSED) _exit(0);
    if (rc) _exit(99);
    if (m.kind == TASK_EXIT) _exit(40 + k);
    if (m.kind == TASK_HANG) pause();
    if (m.kind == TASK_SLEEP) usleep(100000);
    reply rep = {k, getpid()};
    ac_msg res = {.id = m.id};
    struct iovec iov = {&rep, sizeof rep};
    ac_worker_send_result(r, (uint32_t)k, &res, &iov, 1, -1);
  }
}

static void hook_prepare(void *ctx) { atomic_fetch_add(&((hook_counts *)ctx)->prepare, 1); }
static void hook_parent(void *ctx) { atomic_fetch_add(&((hook_counts *)ctx)->parent, 1); }
static void hook_child(void *ctx) { atomic_fetch_add(&((hook_counts *)ctx)->child, 1); }

static pid_t start_template(ac_region *r, int efd, const ac_fork_hooks *hooks) {
  pid_t pid = fork();
  if (pid == 0) {
    int k = ac_template_serve(r, efd, hooks);
    if (k >= 0) {
      if (hooks) atomic_fetch_add(&((hook_counts *)hooks->ctx)->child_saw_k[k & 7], 1);
      worker_body(r, k);
    }
    _exit(k == AC_ECLOSED ? 0 : 1);
  }
  return pid;
}

/* The pool's region lives in the test's process; the template is forked from it. */
static pool *start_pool(uint32_t n, uint32_t spawn, const ac_fork_hooks *hooks) {
  pool *p = ac_test_shared(sizeof *p);
  ac_region_config cfg = {n, 16, 16, 1 << 20};
  ASSERT_OK(ac_region_create(&p->r, &cfg));
  p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(p->efd, 0);
  for (uint32_t k = 0; k < spawn; k++) ASSERT_OK(ac_region_request_spawn(&p->r, k));
  p->tpl = start_template(&p->r, p->efd, hooks);
  for (uint32_t k = 0; k < spawn; k++) wait_state(&p->r, k, AC_W_IDLE);
  return p;
}

static void stop_pool(pool *p, uint32_t mode) {
  ac_region_shutdown(&p->r, mode);
  ASSERT_OK(ac_template_notify(p->efd));
  ASSERT_EXITED(ac_test_wait(p->tpl, 5000), 0);
  close(p->efd);
  ac_region_destroy(&p->r);
}

static void send_kind(ac_region *r, uint64_t id, uint32_t kind) {
  ac_msg m = {.id = id, .kind = kind};
  ASSERT_OK(ac_ring_push_wait(r->tasks, &m, NULL, NULL, -1, NULL));
}

static int find_worker(ac_region *r, int (*pred)(ac_worker_rec *, uint64_t), uint64_t arg) {
  int64_t end = ac_now_ns() + 5000000000LL;
  while (ac_now_ns() < end) {
    for (uint32_t j = 0; j < r->hdr->nworkers; j++)
      if (pred(&r->workers[j], arg)) return (int)j;
    usleep(1000);
  }
  FAIL("no worker matched within 5 s (arg %" PRIu64 ")", arg);
}

static int is_exited(ac_worker_rec *w, uint64_t unused) {
  return atomic_load(&w->state) == AC_W_EXITED;
}
static int runs_task(ac_worker_rec *w, uint64_t id) { return atomic_load(&w->take.id) == id; }

TEST_IMPL_TIMEOUT(template_spawns_workers_with_their_index, 20000) {
  enum { N = 4 };
  hook_counts *hc = ac_test_shared(sizeof *hc);
  ac_fork_hooks hooks = {hook_prepare, hook_parent, hook_child, hc};
  pool *p = start_pool(N, N, &hooks);
  ac_region *r = &p->r;
  ASSERT_EQ(r->hdr->template_pid, p->tpl);
  for (uint32_t k = 0; k < N; k++) {
    ASSERT_EQ(r->workers[k].gen, 1);
    ASSERT_GT(r->workers[k].pid, 0);
    ASSERT_NE(r->workers[k].pid, p->tpl);
    ASSERT_EQ(hc->child_saw_k[k], 1); /* ac_template_serve returned k in worker k */
  }
  ASSERT_EQ(hc->prepare, N);
  int64_t end = ac_now_ns() + 5000000000LL; /* the template runs it after the child started */
  while (atomic_load(&hc->parent) < N && ac_now_ns() < end) usleep(1000);
  ASSERT_EQ(hc->parent, N);
  ASSERT_EQ(hc->child, N);
  /* Every worker answers as itself: index and pid agree with its record. Slow tasks make each
   * worker take one while the others are busy. */
  for (uint64_t id = 1; id <= 4 * N; id++) send_kind(r, id, TASK_SLEEP);
  int seen[N] = {0};
  for (int got = 0; got < 4 * N; got++) {
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    ASSERT_OK(ac_ring_pop_wait(r->results, &m, buf, NULL, 5000000000LL, 0, NULL));
    reply rep;
    memcpy(&rep, buf, sizeof rep);
    ASSERT_GE(rep.k, 0);
    ASSERT_LT(rep.k, N);
    ASSERT_EQ(rep.pid, r->workers[rep.k].pid);
    seen[rep.k]++;
  }
  for (int k = 0; k < N; k++) ASSERT_GT(seen[k], 0);
  stop_pool(p, AC_SHUTDOWN_DRAIN);
}

TEST_IMPL_TIMEOUT(template_records_exit_status_and_respawns, 20000) {
  pool *p = start_pool(2, 2, NULL);
  ac_region *r = &p->r;
  uint32_t ev = atomic_load(&r->hdr->event_word);
  send_kind(r, 1, TASK_EXIT); /* its worker exits with 40 + k */
  int k = find_worker(r, is_exited, 0);
  ASSERT_EXITED(r->workers[k].wait_status, 40 + k);
  ASSERT_NE(atomic_load(&r->hdr->event_word), ev); /* the parent was told */
  pid_t old = r->workers[k].pid;
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(r, (uint32_t)k, &out, buf), 1);
  ASSERT_EQ(out.task_id, 1);
  ASSERT_EQ(out.pid, old);
  ASSERT_OK(ac_region_request_spawn(r, (uint32_t)k));
  ASSERT_OK(ac_template_notify(p->efd));
  wait_state(r, (uint32_t)k, AC_W_IDLE);
  ASSERT_EQ(r->workers[k].gen, 2);
  ASSERT_NE(r->workers[k].pid, old);
  send_kind(r, 2, TASK_ECHO);
  ac_msg m;
  ASSERT_OK(ac_ring_pop_wait(r->results, &m, buf, NULL, 5000000000LL, 0, NULL));
  ASSERT_EQ(m.id, 2);
  stop_pool(p, AC_SHUTDOWN_DRAIN);
}

TEST_IMPL_TIMEOUT(template_kills_on_request, 20000) {
  pool *p = start_pool(2, 2, NULL);
  ac_region *r = &p->r;
  send_kind(r, 7, TASK_HANG);
  int k = find_worker(r, runs_task, 7);
  ASSERT_OK(ac_region_request_kill(r, (uint32_t)k));
  ASSERT_OK(ac_template_notify(p->efd));
  wait_state(r, (uint32_t)k, AC_W_EXITED);
  ASSERT(WIFSIGNALED(r->workers[k].wait_status));
  ASSERT_EQ(WTERMSIG(r->workers[k].wait_status), SIGKILL);
  ASSERT_EQ(r->workers[k].kill_req, 0);
  ASSERT_EQ(r->workers[1 - k].state, AC_W_IDLE); /* the other one is untouched */
  /* A kill request for a slot with no process is dropped. */
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(r, (uint32_t)k, &out, buf), 1);
  ASSERT_EQ(out.task_id, 7);
  ASSERT_OK(ac_region_request_kill(r, (uint32_t)k));
  ASSERT_OK(ac_template_notify(p->efd));
  int64_t end = ac_now_ns() + 5000000000LL;
  while (atomic_load(&r->workers[k].kill_req) && ac_now_ns() < end) usleep(1000);
  ASSERT_EQ(r->workers[k].kill_req, 0);
  ASSERT_EQ(r->workers[k].state, AC_W_EMPTY);
  stop_pool(p, AC_SHUTDOWN_DRAIN);
}

/* NOW: the template kills workers that are busy, records them, and exits. */
TEST_IMPL_TIMEOUT(template_shutdown_now_kills_busy_workers, 20000) {
  pool *p = start_pool(2, 2, NULL);
  ac_region *r = &p->r;
  send_kind(r, 1, TASK_HANG);
  send_kind(r, 2, TASK_HANG);
  find_worker(r, runs_task, 1);
  find_worker(r, runs_task, 2);
  ac_region_shutdown(r, AC_SHUTDOWN_NOW);
  ASSERT_OK(ac_template_notify(p->efd));
  ASSERT_EXITED(ac_test_wait(p->tpl, 5000), 0);
  for (int k = 0; k < 2; k++) {
    ASSERT_EQ(r->workers[k].state, AC_W_EXITED);
    ASSERT(WIFSIGNALED(r->workers[k].wait_status));
  }
  close(p->efd);
  ac_region_destroy(r);
}

/* DRAIN: workers finish what they run, see the closed ring, exit 0; then the template exits. */
TEST_IMPL_TIMEOUT(template_shutdown_drain_lets_tasks_finish, 20000) {
  pool *p = start_pool(2, 2, NULL);
  ac_region *r = &p->r;
  for (uint64_t id = 1; id <= 4; id++) send_kind(r, id, TASK_SLEEP);
  ac_region_shutdown(r, AC_SHUTDOWN_DRAIN);
  ASSERT_OK(ac_template_notify(p->efd));
  ASSERT_EXITED(ac_test_wait(p->tpl, 5000), 0);
  for (int k = 0; k < 2; k++) ASSERT_EXITED(r->workers[k].wait_status, 0);
  uint8_t buf[AC_SLOT_INLINE];
  ac_msg m;
  for (int i = 0; i < 4; i++) ASSERT_OK(ac_ring_try_pop(r->results, &m, buf, NULL));
  close(p->efd);
  ac_region_destroy(r);
}

/* Ctrl-C reaches the whole process group; the template ignores it (the parent decides). */
TEST_IMPL_TIMEOUT(template_ignores_sigint, 20000) {
  pool *p = start_pool(1, 1, NULL);
  kill(p->tpl, SIGINT);
  usleep(20000);
  ASSERT_EQ(waitpid(p->tpl, NULL, WNOHANG), 0);
  stop_pool(p, AC_SHUTDOWN_DRAIN);
}

/* The pool's process dies by SIGKILL: the template notices (pidfd) and takes its workers down
 * within a second, busy or not. */
TEST_IMPL_TIMEOUT(template_and_workers_exit_when_parent_dies, 20000) {
  ac_region *r = ac_test_shared(sizeof *r);
  ac_region_config cfg = {3, 16, 16, 1 << 20};
  ASSERT_OK(ac_region_create(r, &cfg));
  pid_t parent = fork();
  if (parent == 0) {
    atomic_store(&r->hdr->parent_pid, getpid());
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    for (uint32_t k = 0; k < 3; k++) ac_region_request_spawn(r, k);
    start_template(r, efd, NULL);
    pause();
    _exit(0);
  }
  for (uint32_t k = 0; k < 3; k++) wait_state(r, k, AC_W_IDLE);
  send_kind(r, 1, TASK_HANG); /* one worker is busy, the others sleep in the ring */
  find_worker(r, runs_task, 1);
  pid_t pids[4] = {r->workers[0].pid, r->workers[1].pid, r->workers[2].pid, r->hdr->template_pid};
  kill(parent, SIGKILL);
  ASSERT_EQ(waitpid(parent, NULL, 0), parent);
  int64_t t0 = ac_now_ns();
  /* The orphans come back to the runner (a subreaper) as zombies once they exit. */
  for (;;) {
    int alive = 0;
    for (int i = 0; i < 4; i++) {
      char path[64], state = 0;
      snprintf(path, sizeof path, "/proc/%d/stat", pids[i]);
      FILE *f = fopen(path, "r");
      if (f) {
        if (fscanf(f, "%*d %*s %c", &state) == 1 && state != 'Z' && state != 'X') alive++;
        fclose(f);
      }
    }
    if (!alive) break;
    if (ac_now_ns() - t0 > 1000000000LL) FAIL("%d processes outlived the parent by 1 s", alive);
    usleep(2000);
  }
  ac_region_destroy(r);
}

/* The template keeps none of the program's pipes or sockets: a pipe's write end the program
 * closes later gives its reader end-of-file while the template lives. Kept: stdin/out/err, the
 * descriptors asked for, files and shared memory (memfds). */
TEST_IMPL_TIMEOUT(template_isolate_fds_replaces_pipes_and_sockets, 20000) {
  int p[2], go[2], kept_pipe[2], sv[2];
  ASSERT_OK(pipe(p));
  ASSERT_OK(pipe(go));
  ASSERT_OK(pipe(kept_pipe));
  ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  int mem = memfd_create("other", MFD_CLOEXEC);
  int file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(mem, 0);
  ASSERT_GE(file, 0);
  pid_t child = fork();
  if (child == 0) {
    close(go[1]);
    int keep[2] = {go[0], kept_pipe[1]};
    int n = ac_template_isolate_fds(keep, 2);
    struct stat st;
    int ok = n >= 4; /* the pipe's two ends, the kept pipe's read end, one socket at least */
    ok = ok && fstat(p[1], &st) == 0 && S_ISCHR(st.st_mode);        /* /dev/null */
    ok = ok && fstat(sv[1], &st) == 0 && S_ISCHR(st.st_mode);
    ok = ok && fstat(kept_pipe[1], &st) == 0 && S_ISFIFO(st.st_mode);
    ok = ok && fstat(mem, &st) == 0 && S_ISREG(st.st_mode);
    ok = ok && fstat(file, &st) == 0 && S_ISREG(st.st_mode);
    ok = ok && (fcntl(p[1], F_GETFD) & FD_CLOEXEC) == 0;         /* inheritable stays so */
    ok = ok && (fcntl(sv[1], F_GETFD) & FD_CLOEXEC) != 0;
    char c;
    (void)!read(go[0], &c, 1); /* lives on until the parent has read end-of-file */
    _exit(ok ? 0 : 1);
  }
  close(go[0]);
  close(p[1]);
  close(sv[1]);
  char c;
  ASSERT_EQ(read(p[0], &c, 1), 0);  /* end-of-file: the child holds no write end any more */
  ASSERT_EQ(read(sv[0], &c, 1), 0); /* the peer closed */
  close(go[1]);
  ASSERT_EXITED(ac_test_wait(child, 5000), 0);
  close(p[0]);
  close(sv[0]);
  close(kept_pipe[0]);
  close(kept_pipe[1]);
  close(mem);
  close(file);
}

/* True while pid is a process that has not exited (zombies have). */
static int runs(pid_t pid) {
  char path[64], state = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int ok = fscanf(f, "%*d %*s %c", &state) == 1 && state != 'Z' && state != 'X';
  fclose(f);
  return ok;
}

/* The template dies (SIGKILL) and its workers with it: the parent marks their slots exited,
 * reaps them (the task one ran comes back as its task id), and a new template fills them. */
TEST_IMPL_TIMEOUT(template_death_then_orphaned_slots_are_reaped_and_refilled, 20000) {
  pool *p = start_pool(2, 2, NULL);
  ac_region *r = &p->r;
  send_kind(r, 7, TASK_HANG);
  int busy = find_worker(r, runs_task, 7);
  pid_t w0 = r->workers[0].pid, w1 = r->workers[1].pid;
  kill(p->tpl, SIGKILL);
  ASSERT_EQ(waitpid(p->tpl, NULL, 0), p->tpl);
  /* PR_SET_PDEATHSIG: both workers get SIGKILL; they are reaped by the runner (a subreaper). */
  int64_t end = ac_now_ns() + 5000000000LL;
  while (runs(w0) || runs(w1)) {
    if (ac_now_ns() > end) FAIL("the workers outlived their template by %d s", 5);
    usleep(1000);
  }
  for (uint32_t k = 0; k < 2; k++) {
    ASSERT_EQ(ac_template_orphaned(r, k, SIGKILL), 1);
    ASSERT_EQ(ac_template_orphaned(r, k, SIGKILL), 0); /* not live any more */
    ac_reaped out;
    uint8_t buf[AC_SLOT_INLINE];
    ASSERT_EQ(ac_region_reap(r, k, &out, buf), 1);
    ASSERT_EQ(out.wait_status, SIGKILL);
    ASSERT_EQ(out.task_id, (int)k == busy ? 7u : 0u);
    ASSERT_OK(ac_region_request_spawn(r, k));
  }
  p->tpl = start_template(r, p->efd, NULL);
  for (uint32_t k = 0; k < 2; k++) wait_state(r, k, AC_W_IDLE);
  send_kind(r, 8, TASK_ECHO);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_pop_wait(r->results, &m, buf, NULL, 5000000000LL, 0, NULL));
  ASSERT_EQ(m.id, 8);
  stop_pool(p, AC_SHUTDOWN_DRAIN);
}
