/* proc_task.c: readers of /proc/self/task/<tid>/{syscall,schedstat,comm}. */
#include "proc_task.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int ac_task_open(pid_t tid, const char *name) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/%s", (int)tid, name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

static int read_at0(int fd, char *buf, size_t cap) {
  ssize_t n;
  do {
    n = pread(fd, buf, cap - 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  if (n == 0) return -ESRCH; /* an exited thread reads as empty */
  buf[n] = '\0';
  return (int)n;
}

int ac_task_syscall(int fd, long *nr, uintptr_t *arg0) {
  char buf[256];
  int n = read_at0(fd, buf, sizeof buf);
  if (n < 0) return n;
  if (buf[0] == 'r') return AC_TASK_RUNNING; /* "running" */
  char *end;
  long v = strtol(buf, &end, 10);
  if (end == buf) return -EPROTO;
  *nr = v;
  if (v < 0) return AC_TASK_BLOCKED; /* "-1 sp pc" */
  *arg0 = (uintptr_t)strtoull(end, NULL, 16);
  return AC_TASK_SYSCALL;
}

int ac_task_schedstat(int fd, int64_t *run_ns, int64_t *runq_ns) {
  char buf[128];
  int n = read_at0(fd, buf, sizeof buf);
  if (n < 0) return n;
  char *end;
  *run_ns = strtoll(buf, &end, 10);
  *runq_ns = strtoll(end, NULL, 10);
  return 0;
}

int ac_task_list(pid_t *tids, int max) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return -errno;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < max) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    tids[n++] = (pid_t)atoi(e->d_name);
  }
  closedir(d);
  return n;
}

int ac_task_comm(pid_t tid, char *buf, size_t len) {
  int fd = ac_task_open(tid, "comm");
  if (fd < 0) return fd;
  int n = read_at0(fd, buf, len);
  close(fd);
  if (n < 0) return n;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = '\0';
  return n;
}

long ac_task_futex_nr(void) { return SYS_futex; }
