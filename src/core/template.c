/* template.c: the template process's loop: fork workers on request, reap them, kill them, and
 * leave nothing behind when the pool or its parent goes away. */
#include "allcores/template.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/errors.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

int ac_template_notify(int request_fd) {
  uint64_t one = 1;
  ssize_t n;
  do n = write(request_fd, &one, sizeof one);
  while (n < 0 && errno == EINTR);
  /* EAGAIN means the counter is already non-zero: the template is awake or will be. */
  return n < 0 && errno != EAGAIN ? -errno : 0;
}

static int kept(int fd, const int *keep, int nkeep) {
  for (int i = 0; i < nkeep; i++)
    if (keep[i] == fd) return 1;
  return 0;
}

int ac_template_isolate_fds(const int *keep, int nkeep) {
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) return -errno;
  DIR *dir = opendir("/proc/self/fd");
  if (!dir) {
    int e = errno;
    close(null_fd);
    return -e;
  }
  int replaced = 0;
  struct dirent *de;
  while ((de = readdir(dir)) != NULL) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    int fd = atoi(de->d_name);
    if (fd <= 2 || fd == null_fd || fd == dirfd(dir) || kept(fd, keep, nkeep)) continue;
    struct stat st;
    if (fstat(fd, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) continue;
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) continue;
    if (dup3(null_fd, fd, (flags & FD_CLOEXEC) ? O_CLOEXEC : 0) == fd) replaced++;
  }
  closedir(dir);
  close(null_fd);
  return replaced;
}

int ac_template_orphaned(ac_region *r, uint32_t k, int wait_status) {
  if (k >= r->hdr->nworkers) return -EINVAL;
  ac_worker_rec *w = &r->workers[k];
  uint32_t st = atomic_load(&w->state);
  if (st != AC_W_STARTING && st != AC_W_IDLE) return 0;
  atomic_store(&w->wait_status, wait_status);
  atomic_store(&w->state, AC_W_EXITED);
  return 1;
}

static int find_worker(ac_region *r, pid_t pid) {
  for (uint32_t k = 0; k < r->hdr->nworkers; k++)
    if (atomic_load(&r->workers[k].pid) == pid && atomic_load(&r->workers[k].state) != AC_W_EMPTY)
      return (int)k;
  return -1;
}

/* Collects every exited worker; returns how many. */
static int reap_all(ac_region *r, int block) {
  int n = 0;
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, block ? 0 : WNOHANG);
    if (pid <= 0) {
      if (pid < 0 && errno == EINTR) continue;
      break;
    }
    int k = find_worker(r, pid);
    if (k < 0) continue;
    ac_worker_rec *w = &r->workers[k];
    atomic_store(&w->wait_status, status);
    atomic_store(&w->state, AC_W_EXITED);
    n++;
  }
  if (n) ac_region_signal_event(r);
  return n;
}

static int live_workers(ac_region *r) {
  int n = 0;
  for (uint32_t k = 0; k < r->hdr->nworkers; k++) {
    uint32_t st = atomic_load(&r->workers[k].state);
    if (st == AC_W_STARTING || st == AC_W_IDLE) n++;
  }
  return n;
}

static void kill_all(ac_region *r) {
  for (uint32_t k = 0; k < r->hdr->nworkers; k++) {
    uint32_t st = atomic_load(&r->workers[k].state);
    pid_t pid = atomic_load(&r->workers[k].pid);
    if ((st == AC_W_STARTING || st == AC_W_IDLE) && pid > 0) kill(pid, SIGKILL);
  }
}

static void serve_kills(ac_region *r) {
  for (uint32_t k = 0; k < r->hdr->nworkers; k++) {
    ac_worker_rec *w = &r->workers[k];
    if (!atomic_load(&w->kill_req)) continue;
    uint32_t st = atomic_load(&w->state);
    pid_t pid = atomic_load(&w->pid);
    /* The template has not reaped this pid yet (state is not EXITED), so it cannot have been
     * reused: the signal reaches our worker and nobody else. */
    if ((st == AC_W_STARTING || st == AC_W_IDLE) && pid > 0) kill(pid, SIGKILL);
    atomic_store(&w->kill_req, 0);
  }
}

int ac_template_serve(ac_region *r, int request_fd, const ac_fork_hooks *hooks) {
  pid_t self = getpid();
  atomic_store(&r->hdr->template_pid, self);
  pid_t parent = atomic_load(&r->hdr->parent_pid);

  /* Ctrl-C goes to the whole terminal process group; the parent decides what stops. */
  signal(SIGINT, SIG_IGN);
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  int pfd = (int)syscall(SYS_pidfd_open, parent, 0);
  if (getppid() != parent) return AC_EDEAD; /* the parent died before we got here */

  int rc = AC_ECLOSED;
  for (;;) {
    reap_all(r, 0);
    uint32_t shutdown = atomic_load(&r->hdr->shutdown);
    int parent_gone = getppid() != parent;
    if (shutdown == AC_SHUTDOWN_NOW || parent_gone) {
      kill_all(r);
      while (live_workers(r) > 0 && reap_all(r, 1) > 0) {}
      break;
    }
    if (shutdown == AC_SHUTDOWN_DRAIN && live_workers(r) == 0) {
      int pending = 0;
      for (uint32_t k = 0; k < r->hdr->nworkers; k++)
        if (atomic_load(&r->workers[k].state) == AC_W_SPAWN) pending = 1;
      if (!pending) break;
    }
    serve_kills(r);

    for (uint32_t k = 0; k < r->hdr->nworkers; k++) {
      ac_worker_rec *w = &r->workers[k];
      if (atomic_load(&w->state) != AC_W_SPAWN) continue;
      atomic_fetch_add(&w->gen, 1);
      atomic_store(&w->kill_req, 0);
      atomic_store(&w->tasks_done, 0);
      if (hooks && hooks->prepare) hooks->prepare(hooks->ctx);
      pid_t pid = fork();
      if (pid == 0) {
        atomic_store(&w->pid, getpid()); /* first: the template finds its children by pid */
        ac_arena_set_gate_mark(&w->arena_gate); /* a death inside the arena's gate is repaired */
        if (hooks && hooks->child) hooks->child(hooks->ctx);
        if (sfd >= 0) close(sfd);
        if (pfd >= 0) close(pfd);
        close(request_fd);
        sigprocmask(SIG_SETMASK, &old, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != self) _exit(1); /* the template died between fork and prctl */
        return (int)k;
      }
      if (pid > 0) atomic_store(&w->pid, pid);
      if (hooks && hooks->parent) hooks->parent(hooks->ctx);
      if (pid < 0) {
        atomic_store(&w->spawn_errno, (uint32_t)errno);
        atomic_store(&w->wait_status, -1);
        atomic_store(&w->state, AC_W_EXITED);
      } else {
        uint32_t expect = AC_W_SPAWN;
        atomic_compare_exchange_strong(&w->state, &expect, AC_W_STARTING);
      }
      ac_region_signal_event(r);
    }

    struct pollfd fds[3] = {{request_fd, POLLIN, 0}, {sfd, POLLIN, 0}, {pfd, POLLIN, 0}};
    /* Without a pidfd (old kernels) parent death is noticed by polling getppid(). */
    int n = poll(fds, 3, pfd >= 0 ? 1000 : 100);
    if (n < 0 && errno != EINTR) { rc = -errno; break; }
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!read(request_fd, &v, sizeof v);
    }
    if (sfd >= 0 && (fds[1].revents & POLLIN)) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {}
    }
  }
  if (sfd >= 0) close(sfd);
  if (pfd >= 0) close(pfd);
  sigprocmask(SIG_SETMASK, &old, NULL);
  return rc;
}
