/* runner.c: runs the registered tests, each in a forked child with a timeout, and prints one line
 * per test and a last line "N passed, N failed" (CI reads it).
 *
 * Usage: runner [--list] [--verbose] [PATTERN ...]    (shell patterns: ring_*, *stress*)
 *        runner --in-process NAME      (no fork, no timeout: for gdb and valgrind)
 * Environment: AC_TEST_TIMEOUT_MULTIPLIER scales every timeout, AC_TEST_SCALE divides stress
 * iteration counts, AC_TEST_SEED fixes the seed of random tests, AC_TEST_VERBOSE=1 shows the
 * output of tests that pass (it is otherwise shown only for failures and skips).
 *
 * A test fails when it aborts or exits non-zero, when it times out, and also when it leaves
 * behind what the core must never leak: a file descriptor, an unreaped child, a process still
 * running in its process group, or (under ASan) a malloc'd block. The runner makes itself a
 * child subreaper so that processes orphaned by a test (a template whose parent the test killed)
 * come back to it and are reaped, never left as zombies or strays. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "task.h"

static ac_test *tests;
static uint64_t seed;
static int verbose;

/* Defined when the binary is built with ASan (LeakSanitizer); null otherwise. */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

void ac_test_register(ac_test *t) {
  /* Constructors run in link order; appending keeps each file's tests in source order. */
  ac_test **p = &tests;
  while (*p) p = &(*p)->next;
  *p = t;
}

long ac_test_scale(void) {
  const char *s = getenv("AC_TEST_SCALE");
  long v = s ? strtol(s, NULL, 10) : 1;
  return v > 0 ? v : 1;
}

uint64_t ac_test_seed(void) { return seed; }

static double multiplier(void) {
  const char *m = getenv("AC_TEST_TIMEOUT_MULTIPLIER");
  double v = m ? atof(m) : 1.0;
  return v > 0 ? v : 1.0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void *ac_test_shared(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) AC__FAIL("mmap of %zu shared bytes: %s", bytes, strerror(errno));
  return p;
}

static void describe_status(char *buf, size_t n, int status) {
  if (WIFEXITED(status))
    snprintf(buf, n, "exited with %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, n, "status 0x%x", status);
}

void ac_test_assert_exit(const char *file, int line, const char *what, int status, int code) {
  if (WIFEXITED(status) && WEXITSTATUS(status) == code) return;
  char desc[96];
  describe_status(desc, sizeof desc, status);
  fprintf(stderr, "%s:%d: %s: expected exit %d, got: %s\n", file, line, what, code, desc);
  abort();
}

int ac_test_wait(int pid, int ms) {
  double deadline = now_s() + ms / 1000.0 * multiplier();
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) AC__FAIL("waitpid(%d): %s", pid, strerror(errno));
    if (now_s() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      AC__FAIL("process %d did not exit within %d ms", pid, ms);
    }
    usleep(1000);
  }
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

/* Runs in the test's child after the test body returned. */
static void check_leftovers(const ac_test *t, int fds_before) {
  int status;
  pid_t left = waitpid(-1, &status, WNOHANG);
  if (left != -1 || errno != ECHILD) {
    fprintf(stderr, "%s: left a child process unreaped\n", t->name);
    _exit(3);
  }
  int fds = count_fds();
  if (fds > fds_before) {
    fprintf(stderr, "%s: leaked %d file descriptor(s)\n", t->name, fds - fds_before);
    _exit(3);
  }
  if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check()) {
    fprintf(stderr, "%s: LeakSanitizer found leaked memory\n", t->name);
    _exit(3);
  }
}

/* Processes other than `leader` still running (not zombies) in process group pgid. */
static int strays(pid_t pgid, pid_t leader, int kill_them) {
  DIR *d = opendir("/proc");
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    pid_t pid = (pid_t)atoi(e->d_name);
    if (pid <= 0 || pid == leader) continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0) continue;
    buf[len] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    char state;
    int ppid, pgrp;
    if (!p || sscanf(p + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) continue;
    if (pgrp != pgid || state == 'Z' || state == 'X') continue;
    n++;
    if (kill_them) kill(pid, SIGKILL);
  }
  closedir(d);
  return n;
}

static void reap_orphans(void) {
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static void dump(int fd) {
  char buf[4096];
  ssize_t n;
  lseek(fd, 0, SEEK_SET);
  while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
  fflush(stdout);
}

/* The first "skip: " line of a test's output, without its newline. */
static void skip_reason(int fd, char *out, size_t n) {
  char buf[8192];
  lseek(fd, 0, SEEK_SET);
  ssize_t len = read(fd, buf, sizeof buf - 1);
  snprintf(out, n, "no reason given");
  if (len <= 0) return;
  buf[len] = 0;
  char *s = strstr(buf, "skip: ");
  if (!s) return;
  s += 6;
  char *end = strchr(s, '\n');
  if (end) *end = 0;
  snprintf(out, n, "%s", s);
}

enum { PASSED, FAILED, SKIPPED };

static int run_forked(ac_test *t) {
  double limit = t->timeout_ms / 1000.0 * multiplier();
  int out = verbose ? -1 : memfd_create("test-output", MFD_CLOEXEC);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    printf("not ok - %s (fork: %s)\n", t->name, strerror(errno));
    return FAILED;
  }
  if (pid == 0) {
    setpgid(0, 0); /* the test's helper processes share its group, and die with it */
    if (out >= 0) {
      dup2(out, STDOUT_FILENO);
      dup2(out, STDERR_FILENO);
      close(out);
    }
    int fds = count_fds();
    t->fn();
    fflush(NULL);
    check_leftovers(t, fds);
    _exit(0);
  }
  setpgid(pid, pid); /* also from here: no race with the kill below */
  double start = now_s(), deadline = start + limit;
  int status = 0, timed_out = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (now_s() > deadline) {
      if (!timed_out) {
        /* SIGABRT first: under ASan (handle_abort=1) the child prints where it was stuck. */
        timed_out = 1;
        kill(pid, SIGABRT);
        deadline = now_s() + 1.0;
        continue;
      }
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(1000);
  }
  double took = now_s() - start;
  int stray = strays(pid, pid, 1);
  reap_orphans();

  int result = FAILED;
  char why[160] = "";
  if (timed_out) {
    snprintf(why, sizeof why, "timed out after %.1f s", limit);
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == AC_TEST_SKIP_EXIT) {
    result = SKIPPED;
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && stray) {
    snprintf(why, sizeof why, "left %d process(es) running", stray);
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    result = PASSED;
  } else {
    describe_status(why, sizeof why, status);
  }

  if (result == PASSED) {
    printf("ok - %s (%.2f s)\n", t->name, took);
  } else if (result == SKIPPED) {
    char reason[256];
    if (out >= 0) skip_reason(out, reason, sizeof reason);
    else snprintf(reason, sizeof reason, "see output");
    printf("ok - %s # SKIP %s\n", t->name, reason);
  } else {
    printf("not ok - %s (%s; %s; AC_TEST_SEED=%" PRIu64 ")\n", t->name, why, t->file, seed);
    if (out >= 0) dump(out);
  }
  if (out >= 0) close(out);
  return result;
}

/* Names on the command line are shell patterns: ring_*, *stress*, or an exact name. */
static int matches(const ac_test *t, int argc, char **argv, int first) {
  if (first >= argc) return 1;
  for (int i = first; i < argc; i++)
    if (fnmatch(argv[i], t->name, 0) == 0) return 1;
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *s = getenv("AC_TEST_SEED");
  seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
  verbose = getenv("AC_TEST_VERBOSE") && atoi(getenv("AC_TEST_VERBOSE")) > 0;

  int first = 1;
  while (first < argc && argv[first][0] == '-') {
    if (strcmp(argv[first], "--list") == 0) {
      for (ac_test *t = tests; t; t = t->next)
        if (matches(t, argc, argv, first + 1)) printf("%s\n", t->name);
      return 0;
    }
    if (strcmp(argv[first], "--verbose") == 0) {
      verbose = 1;
      first++;
      continue;
    }
    if (strcmp(argv[first], "--in-process") == 0 && first + 1 < argc) {
      for (ac_test *t = tests; t; t = t->next)
        if (strcmp(t->name, argv[first + 1]) == 0) {
          t->fn();
          printf("ok - %s\n", t->name);
          return 0;
        }
      fprintf(stderr, "no test named %s\n", argv[first + 1]);
      return 2;
    }
    fprintf(stderr, "usage: %s [--list] [--verbose] [PATTERN ...] | --in-process NAME\n",
            argv[0]);
    return 2;
  }

  /* Orphans of a test (see the file comment) come back to us rather than to init. */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int passed = 0, failed = 0, skipped = 0, ran = 0;
  for (ac_test *t = tests; t; t = t->next) {
    if (!matches(t, argc, argv, first)) continue;
    ran++;
    switch (run_forked(t)) {
    case PASSED: passed++; break;
    case SKIPPED: skipped++; break;
    default: failed++; break;
    }
  }
  if (ran == 0) {
    fprintf(stderr, "no test matches\n");
    return 2;
  }
  if (skipped) printf("%d skipped\n", skipped);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
