/* test-shared-sync.c: the lock-free counter, the semaphore and the event across processes. */
#include <errno.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/shared_sync.h"
#include "task.h"

TEST_IMPL(scounter_two_processes_lose_no_increment) {
  ac_scounter *c = ac_test_shared(sizeof *c);
  long n = 1000000 / ac_test_scale();
  pid_t pids[2];
  for (int k = 0; k < 2; k++) {
    pids[k] = fork();
    if (pids[k] == 0) {
      for (long i = 0; i < n; i++) ac_scounter_add(c, 1);
      _exit(0);
    }
  }
  for (int k = 0; k < 2; k++) ASSERT_EXITED(ac_test_wait(pids[k], 60000), 0);
  ASSERT_EQ(ac_scounter_load(c), 2 * n);
}

TEST_IMPL(scounter_operations) {
  ac_scounter c = {0};
  ASSERT_EQ(ac_scounter_add(&c, 5), 5);
  ASSERT_EQ(ac_scounter_add(&c, -7), -2);
  int64_t seen;
  ASSERT_EQ(ac_scounter_cas(&c, -2, 10, &seen), 1);
  ASSERT_EQ(seen, -2);
  ASSERT_EQ(ac_scounter_cas(&c, -2, 11, &seen), 0);
  ASSERT_EQ(seen, 10);
  ASSERT_EQ(ac_scounter_exchange(&c, INT64_MAX), 10);
  ASSERT_EQ(ac_scounter_add(&c, 1), INT64_MIN); /* wraps around */
}

TEST_IMPL(ssem_counts_and_times_out) {
  ac_ssem *s = ac_test_shared(sizeof *s);
  ASSERT_OK(ac_ssem_init(s, 2, 0));
  ASSERT_OK(ac_ssem_acquire(s, 0));
  ASSERT_OK(ac_ssem_acquire(s, -1));
  ASSERT_EQ(ac_ssem_acquire(s, 0), -EAGAIN);
  int64_t t0 = ac_now_ns();
  ASSERT_EQ(ac_ssem_acquire(s, 20000000), -ETIMEDOUT);
  ASSERT_GE(ac_now_ns() - t0, 15000000);
  ASSERT_OK(ac_ssem_release(s, 3));
  ASSERT_EQ(ac_ssem_value(s), 3);
  ASSERT_EQ(ac_ssem_init(s, 3, 2), -EINVAL);
  ASSERT_EQ(ac_ssem_init(s, AC_SSEM_MAX + 1u, 0), -EINVAL);
}

TEST_IMPL(ssem_bounded_refuses_to_exceed_its_bound) {
  ac_ssem *s = ac_test_shared(sizeof *s);
  ASSERT_OK(ac_ssem_init(s, 1, 2));
  ASSERT_OK(ac_ssem_release(s, 1));
  ASSERT_EQ(ac_ssem_release(s, 1), -EOVERFLOW);
  ASSERT_EQ(ac_ssem_value(s), 2);
  ASSERT_OK(ac_ssem_init(s, 0, 0));
  ASSERT_EQ(ac_ssem_release(s, AC_SSEM_MAX + 1u), -EOVERFLOW);
}

TEST_IMPL(ssem_release_wakes_a_waiting_process) {
  ac_ssem *s = ac_test_shared(sizeof *s);
  pid_t pid = fork();
  if (pid == 0) _exit(ac_ssem_acquire(s, 10000000000LL) == 0 ? 0 : 1);
  usleep(30000);
  ASSERT_OK(ac_ssem_release(s, 1));
  ASSERT_EXITED(ac_test_wait(pid, 10000), 0);
  ASSERT_EQ(ac_ssem_value(s), 0);
}

TEST_IMPL(ssem_limits_how_many_processes_are_inside) {
  struct {
    ac_ssem s;
    _Atomic int inside, worst;
  } *st = ac_test_shared(sizeof *st);
  ASSERT_OK(ac_ssem_init(&st->s, 2, 2));
  long n = 2000 / ac_test_scale();
  pid_t pids[4];
  for (int k = 0; k < 4; k++) {
    pids[k] = fork();
    if (pids[k] == 0) {
      for (long i = 0; i < n; i++) {
        if (ac_ssem_acquire(&st->s, -1) != 0) _exit(1);
        int now = atomic_fetch_add(&st->inside, 1) + 1;
        int w = atomic_load(&st->worst);
        while (now > w && !atomic_compare_exchange_weak(&st->worst, &w, now)) {
        }
        if (i % 16 == 0) usleep(10);
        atomic_fetch_sub(&st->inside, 1);
        if (ac_ssem_release(&st->s, 1) != 0) _exit(2);
      }
      _exit(0);
    }
  }
  for (int k = 0; k < 4; k++) ASSERT_EXITED(ac_test_wait(pids[k], 60000), 0);
  ASSERT_LE(atomic_load(&st->worst), 2);
  ASSERT_EQ(ac_ssem_value(&st->s), 2);
}

TEST_IMPL(sevent_set_clear_wait) {
  ac_sevent *e = ac_test_shared(sizeof *e);
  uint32_t seen = ac_sevent_snapshot(e);
  ASSERT_EQ(ac_sevent_wait(e, seen, 0), 0);
  ASSERT_EQ(ac_sevent_wait(e, seen, 10000000), -ETIMEDOUT);
  ac_sevent_set(e);
  ac_sevent_set(e);
  ASSERT_EQ(ac_sevent_is_set(e), 1);
  ASSERT_EQ(ac_sevent_wait(e, seen, -1), 1);
  ac_sevent_clear(e);
  ASSERT_EQ(ac_sevent_is_set(e), 0);
  ASSERT_EQ(ac_sevent_wait(e, seen, 0), 1); /* it was set since `seen` */
  seen = ac_sevent_snapshot(e);
  ASSERT_EQ(ac_sevent_wait(e, seen, 0), 0);
  ac_sevent_set(e);
  ac_sevent_clear(e); /* set and cleared before the waiter looks: it still counts */
  ASSERT_EQ(ac_sevent_wait(e, seen, 0), 1);
}

TEST_IMPL(sevent_set_wakes_every_waiting_process) {
  ac_sevent *e = ac_test_shared(sizeof *e);
  pid_t pids[3];
  for (int k = 0; k < 3; k++) {
    pids[k] = fork();
    if (pids[k] == 0) _exit(ac_sevent_wait(e, ac_sevent_snapshot(e), 10000000000LL) == 1 ? 0 : 1);
  }
  usleep(30000);
  ac_sevent_set(e);
  for (int k = 0; k < 3; k++) ASSERT_EXITED(ac_test_wait(pids[k], 10000), 0);
}
