/* test-futex.c: wait and wake on a shared word, across processes: wake counts, timeouts, a
 * changed value, and signals. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/futex.h"
#include "task.h"

TEST_IMPL(futex_timeout_and_value_mismatch) {
  _Atomic uint32_t *w = ac_test_shared(64);
  atomic_store(w, 1);
  int64_t t0 = ac_now_ns();
  ASSERT_EQ(ac_futex_wait(w, 1, 20000000), -ETIMEDOUT);
  ASSERT_GE(ac_now_ns() - t0, 20000000);
  ASSERT_EQ(ac_futex_wait(w, 1, 0), -ETIMEDOUT); /* zero: check and return */
  ASSERT_OK(ac_futex_wait(w, 2, -1));            /* value differs: returns at once */
  ASSERT_EQ(ac_futex_wake(w, 1), 0);             /* nobody to wake */
}

TEST_IMPL(futex_wake_across_processes) {
  _Atomic uint32_t *w = ac_test_shared(64);
  pid_t pid = fork();
  if (pid == 0) {
    while (atomic_load(w) == 0) ac_futex_wait(w, 0, -1);
    _exit(atomic_load(w) == 7 ? 0 : 1);
  }
  usleep(30000);
  atomic_store(w, 7);
  ac_futex_wake(w, 1);
  ASSERT_EXITED(ac_test_wait(pid, 5000), 0);
}

/* True once process pid sleeps in the kernel's futex wait. */
static int in_futex_wait(pid_t pid) {
  char path[64], buf[64] = {0};
  snprintf(path, sizeof path, "/proc/%d/wchan", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  return n > 0 && strstr(buf, "futex") != NULL;
}

/* wake(n) wakes exactly min(n, sleepers) and says how many it woke. */
TEST_IMPL(futex_wake_counts_sleepers) {
  enum { N = 4 };
  _Atomic uint32_t *w = ac_test_shared(64);
  pid_t pids[N];
  for (int i = 0; i < N; i++) {
    if ((pids[i] = fork()) == 0) _exit(ac_futex_wait(w, 0, 10000000000LL) == 0 ? 0 : 1);
  }
  int64_t end = ac_now_ns() + 5000000000LL;
  for (int i = 0; i < N; i++) {
    while (!in_futex_wait(pids[i])) {
      if (ac_now_ns() > end) TEST_SKIP("cannot see processes sleep in futex_wait (/proc wchan)");
      usleep(1000);
    }
  }
  ASSERT_EQ(ac_futex_wake(w, 1), 1);
  ASSERT_EQ(ac_futex_wake(w, 2), 2);
  ASSERT_EQ(ac_futex_wake(w, 10), 1);
  ASSERT_EQ(ac_futex_wake(w, 10), 0);
  for (int i = 0; i < N; i++) ASSERT_EXITED(ac_test_wait(pids[i], 5000), 0);
}

TEST_IMPL(futex_timeout_in_another_process) {
  _Atomic uint32_t *w = ac_test_shared(64);
  pid_t pid = fork();
  if (pid == 0) _exit(ac_futex_wait(w, 0, 30000000) == -ETIMEDOUT ? 0 : 1);
  ASSERT_EXITED(ac_test_wait(pid, 5000), 0);
}

static void on_alarm(int sig) { (void)sig; }

/* A signal handler interrupts a wait: -EINTR, so callers can look at their signals. */
TEST_IMPL(futex_wait_interrupted_by_signal) {
  _Atomic uint32_t *w = ac_test_shared(64);
  pid_t pid = fork();
  if (pid == 0) {
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    ualarm(20000, 0);
    _exit(ac_futex_wait(w, 0, 5000000000LL) == -EINTR ? 0 : 1);
  }
  ASSERT_EXITED(ac_test_wait(pid, 5000), 0);
}
