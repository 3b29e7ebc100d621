/* runner.c: runs every registered test in a forked child with a timeout; `runner NAME` runs one
 * test in-process (for gdb and valgrind). Prints one line per test and "N passed, N failed". */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "task.h"

static ac_test *tests;

void ac_test_register(ac_test *t) {
  /* Constructors run in link order; append so tests run in file order. */
  ac_test **p = &tests;
  while (*p) p = &(*p)->next;
  *p = t;
}

long ac_test_scale(void) {
  const char *s = getenv("AC_TEST_SCALE");
  long v = s ? strtol(s, NULL, 10) : 1;
  return v > 0 ? v : 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int run_forked(ac_test *t) {
  const char *m = getenv("AC_TEST_TIMEOUT_MULTIPLIER");
  double limit = t->timeout_ms / 1000.0 * (m ? atof(m) : 1.0);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0); /* a test's helper processes die with it */
    t->fn();
    fflush(NULL);
    _exit(0);
  }
  double start = now_s();
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (now_s() - start > limit) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      printf("not ok - %s (timed out after %.1f s)\n", t->name, limit);
      return 1;
    }
    usleep(2000);
  }
  kill(-pid, SIGKILL); /* leftovers of the test's process group */
  double took = now_s() - start;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    printf("ok - %s (%.2f s)\n", t->name, took);
    return 0;
  }
  if (WIFSIGNALED(status))
    printf("not ok - %s (signal %d)\n", t->name, WTERMSIG(status));
  else
    printf("not ok - %s (exit %d)\n", t->name, WEXITSTATUS(status));
  return 1;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1) {
    for (ac_test *t = tests; t; t = t->next)
      if (strcmp(t->name, argv[1]) == 0) {
        if (argc > 2 && strcmp(argv[2], "--in-process") == 0) {
          t->fn();
          printf("ok - %s\n", t->name);
          return 0;
        }
        int failed = run_forked(t);
        printf("%d passed, %d failed\n", !failed, failed);
        return failed;
      }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
  }
  int passed = 0, failed = 0;
  for (ac_test *t = tests; t; t = t->next) {
    if (run_forked(t))
      failed++;
    else
      passed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
