/* test-shared-mutex.c: robust process-shared mutexes: ownership rules, timeouts, mutual exclusion
 * across processes, and recovery when the owner process or thread dies. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/shared_mutex.h"
#include "task.h"

typedef struct {
  ac_smutex mu;
  _Atomic int held; /* set by a child once it holds mu */
  long counter;     /* guarded by mu, deliberately not atomic */
} shared_state;

static shared_state *new_state(int recursive) {
  shared_state *st = ac_test_shared(sizeof *st);
  ASSERT_OK(ac_smutex_init(&st->mu, recursive));
  return st;
}

/* Forks a child that locks st->mu, says so, then sleeps (killed) or exits holding it. */
static pid_t child_holding(shared_state *st, int exit_after_ms) {
  pid_t pid = fork();
  if (pid == 0) {
    if (ac_smutex_lock(&st->mu, -1) != 0) _exit(1);
    atomic_store(&st->held, 1);
    usleep(exit_after_ms > 0 ? exit_after_ms * 1000 : 60 * 1000 * 1000);
    _exit(0); /* still holding it */
  }
  while (!atomic_load(&st->held)) usleep(1000);
  return pid;
}

TEST_IMPL(smutex_ownership_rules) {
  shared_state *st = new_state(0);
  ASSERT_EQ(ac_smutex_locked(&st->mu), 0);
  ASSERT_OK(ac_smutex_lock(&st->mu, 0));
  ASSERT_EQ(ac_smutex_locked(&st->mu), 1);
  ASSERT_EQ(ac_smutex_is_mine(&st->mu), 1);
  ASSERT_EQ(ac_smutex_depth(&st->mu), 1);
  ASSERT_EQ(ac_smutex_lock(&st->mu, 0), -EBUSY);     /* a try by the owner just fails */
  ASSERT_EQ(ac_smutex_lock(&st->mu, -1), -EDEADLK);  /* a blocking one is refused */
  ASSERT_OK(ac_smutex_unlock(&st->mu));
  ASSERT_EQ(ac_smutex_is_mine(&st->mu), 0);
  if (!AC_TEST_TSAN) ASSERT_EQ(ac_smutex_unlock(&st->mu), -EPERM); /* TSan reports misuse */
}

TEST_IMPL(smutex_recursive_counts) {
  shared_state *st = new_state(1);
  ASSERT_OK(ac_smutex_lock(&st->mu, -1));
  ASSERT_OK(ac_smutex_lock(&st->mu, 0));
  ASSERT_OK(ac_smutex_lock(&st->mu, 1000000));
  ASSERT_EQ(ac_smutex_depth(&st->mu), 3);
  for (int i = 0; i < 3; i++) ASSERT_OK(ac_smutex_unlock(&st->mu));
  ASSERT_EQ(ac_smutex_locked(&st->mu), 0);
  if (!AC_TEST_TSAN) ASSERT_EQ(ac_smutex_unlock(&st->mu), -EPERM);
}

static void *unlock_from_thread(void *arg) {
  return (void *)(intptr_t)ac_smutex_unlock(arg);
}

TEST_IMPL(smutex_only_the_owner_thread_unlocks) {
  if (AC_TEST_TSAN) TEST_SKIP("TSan reports the unlock from a wrong thread, which is the point");
  shared_state *st = new_state(0);
  ASSERT_OK(ac_smutex_lock(&st->mu, -1));
  pthread_t t;
  void *rc;
  ASSERT_OK(pthread_create(&t, NULL, unlock_from_thread, &st->mu));
  ASSERT_OK(pthread_join(t, &rc));
  ASSERT_EQ((intptr_t)rc, -EPERM);
  ASSERT_OK(ac_smutex_unlock(&st->mu));
}

TEST_IMPL(smutex_times_out_while_another_process_holds_it) {
  shared_state *st = new_state(0);
  pid_t pid = child_holding(st, 0);
  ASSERT_EQ(ac_smutex_lock(&st->mu, 0), -EBUSY);
  ASSERT_EQ(ac_smutex_lock(&st->mu, 30000000), -ETIMEDOUT);
  ASSERT_EQ(ac_smutex_is_mine(&st->mu), 0);
  ASSERT_EQ(ac_smutex_locked(&st->mu), 1);
  kill(pid, SIGKILL);
  ac_test_wait(pid, 10000);
}

TEST_IMPL(smutex_owner_killed_is_recovered_by_the_next_locker) {
  for (int recursive = 0; recursive < 2; recursive++) {
    shared_state *st = new_state(recursive);
    pid_t pid = child_holding(st, 0);
    kill(pid, SIGKILL);
    int status = ac_test_wait(pid, 10000);
    ASSERT(WIFSIGNALED(status));
    ASSERT_EQ(ac_smutex_lock(&st->mu, 0), AC_SMUTEX_RECOVERED);
    ASSERT_EQ(ac_smutex_depth(&st->mu), 1);
    ASSERT_OK(ac_smutex_unlock(&st->mu));
    ASSERT_OK(ac_smutex_lock(&st->mu, 0)); /* consistent again: nothing more to tell */
    ASSERT_OK(ac_smutex_unlock(&st->mu));
  }
}

TEST_IMPL(smutex_waiter_gets_the_lock_when_the_owner_exits_holding_it) {
  if (AC_TEST_TSAN) TEST_SKIP("TSan's timedlock does not record a lock taken with EOWNERDEAD");
  shared_state *st = new_state(0);
  pid_t pid = child_holding(st, 50);
  ASSERT_EQ(ac_smutex_lock(&st->mu, 10000000000LL), AC_SMUTEX_RECOVERED);
  ASSERT_EXITED(ac_test_wait(pid, 10000), 0);
  ASSERT_OK(ac_smutex_unlock(&st->mu));
}

static void *lock_and_return(void *arg) {
  return (void *)(intptr_t)ac_smutex_lock(arg, -1);
}

TEST_IMPL(smutex_thread_that_ended_holding_it_is_recovered) {
  if (AC_TEST_TSAN) TEST_SKIP("TSan reports a thread ending with a mutex held, which is the point");
  shared_state *st = new_state(0);
  pthread_t t;
  void *rc;
  ASSERT_OK(pthread_create(&t, NULL, lock_and_return, &st->mu));
  ASSERT_OK(pthread_join(t, &rc));
  ASSERT_OK((intptr_t)rc);
  ASSERT_EQ(ac_smutex_lock(&st->mu, 1000000000), AC_SMUTEX_RECOVERED);
  ASSERT_OK(ac_smutex_unlock(&st->mu));
}

TEST_IMPL(smutex_excludes_across_processes) {
  shared_state *st = new_state(0);
  long n = 200000 / ac_test_scale();
  pid_t pids[3];
  for (int k = 0; k < 3; k++) {
    pids[k] = fork();
    if (pids[k] == 0) {
      for (long i = 0; i < n; i++) {
        if (ac_smutex_lock(&st->mu, -1) != 0) _exit(1);
        st->counter++;
        ac_smutex_unlock(&st->mu);
      }
      _exit(0);
    }
  }
  for (int k = 0; k < 3; k++) ASSERT_EXITED(ac_test_wait(pids[k], 60000), 0);
  ASSERT_EQ(st->counter, 3 * n);
}
