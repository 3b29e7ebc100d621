/* test-futex.c: wait/wake across processes and timeouts. */
#include <errno.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/futex.h"
#include "task.h"

TEST_IMPL(futex_timeout_and_value_mismatch) {
  _Atomic uint32_t w = 1;
  int64_t t0 = ac_now_ns();
  ASSERT_EQ(ac_futex_wait(&w, 1, 20000000), -ETIMEDOUT);
  ASSERT_GE(ac_now_ns() - t0, 15000000);
  ASSERT_OK(ac_futex_wait(&w, 2, -1)); /* value differs: returns at once */
}

TEST_IMPL(futex_wake_across_processes) {
  _Atomic uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t pid = fork();
  if (pid == 0) {
    while (atomic_load(w) == 0) ac_futex_wait(w, 0, 5000000000LL);
    _exit(atomic_load(w) == 7 ? 0 : 1);
  }
  usleep(30000);
  atomic_store(w, 7);
  ac_futex_wake(w, 1);
  int st;
  waitpid(pid, &st, 0);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
