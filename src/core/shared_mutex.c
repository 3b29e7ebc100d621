/* shared_mutex.c: robust process-shared mutexes (see shared_mutex.h). */
#include "allcores/shared_mutex.h"

#include <errno.h>
#include <linux/futex.h>
#include <time.h>
#include <unistd.h>

#include "allcores/clock.h"

/* Deadlines are on the monotonic clock, so that setting the wall clock cannot stretch a wait.
 * ThreadSanitizer does not intercept pthread_mutex_clocklock and would lose track of the lock:
 * its builds use timedlock on the wall clock. */
#if defined(__SANITIZE_THREAD__)
#define TIMEOUT_CLOCK CLOCK_REALTIME
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TIMEOUT_CLOCK CLOCK_REALTIME
#endif
#endif
#ifndef TIMEOUT_CLOCK
#define TIMEOUT_CLOCK CLOCK_MONOTONIC
#endif

int ac_smutex_init(ac_smutex *mu, int recursive) {
  pthread_mutexattr_t a;
  int rc = pthread_mutexattr_init(&a);
  if (rc) return -rc;
  if (!(rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) &&
      !(rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) &&
      !(rc = pthread_mutexattr_settype(&a, recursive ? PTHREAD_MUTEX_RECURSIVE
                                                     : PTHREAD_MUTEX_ERRORCHECK)))
    rc = pthread_mutex_init(&mu->m, &a);
  pthread_mutexattr_destroy(&a);
  return -rc;
}

/* Before sleeping, a locker retries for about this long: the critical sections these locks guard
 * (a Python `v.value += 1`: about a microsecond) are far shorter than a futex sleep and wake-up
 * on the project's VMs (design.md: a thread pool's round trip is 24-31 us). */
#define SPIN_NS 4000

int ac_smutex_lock(ac_smutex *mu, int64_t timeout_ns) {
  int rc;
  if (timeout_ns != 0) {
    int64_t until = ac_now_ns() + SPIN_NS;
    do {
      ac_cpu_relax();
      rc = pthread_mutex_trylock(&mu->m);
      if (rc != EBUSY) goto done;
    } while (ac_now_ns() < until);
  }
  if (timeout_ns == 0) {
    rc = pthread_mutex_trylock(&mu->m); /* by the owner: EDEADLK, made EBUSY below */
  } else if (timeout_ns < 0) {
    rc = pthread_mutex_lock(&mu->m);
  } else {
    struct timespec ts;
    clock_gettime(TIMEOUT_CLOCK, &ts);
    int64_t ns = ts.tv_nsec + timeout_ns % 1000000000LL;
    ts.tv_sec += timeout_ns / 1000000000LL + ns / 1000000000LL;
    ts.tv_nsec = ns % 1000000000LL;
#if TIMEOUT_CLOCK == CLOCK_MONOTONIC
    rc = pthread_mutex_clocklock(&mu->m, CLOCK_MONOTONIC, &ts);
#else
    rc = pthread_mutex_timedlock(&mu->m, &ts);
#endif
  }
done:
  if (rc == EDEADLK && timeout_ns == 0) rc = EBUSY;
  if (rc == EOWNERDEAD) {
    /* We hold it now; without this the mutex would become unusable once we unlock it. */
    pthread_mutex_consistent(&mu->m);
    return AC_SMUTEX_RECOVERED;
  }
  return -rc;
}

int ac_smutex_unlock(ac_smutex *mu) { return -pthread_mutex_unlock(&mu->m); }

#ifdef __GLIBC__
/* glibc keeps the owner's thread id in the futex word of a robust mutex (the kernel's robust
 * futex protocol), which lets us answer without touching the lock. */
static int lock_word(ac_smutex *mu) {
  return __atomic_load_n(&mu->m.__data.__lock, __ATOMIC_ACQUIRE);
}

int ac_smutex_locked(ac_smutex *mu) { return lock_word(mu) != 0; }

int ac_smutex_is_mine(ac_smutex *mu) {
  return (lock_word(mu) & FUTEX_TID_MASK) == (int)gettid();
}

unsigned ac_smutex_depth(ac_smutex *mu) { return mu->m.__data.__count ? mu->m.__data.__count : 1; }
#else
int ac_smutex_locked(ac_smutex *mu) {
  int rc = pthread_mutex_trylock(&mu->m);
  if (rc == 0) {
    pthread_mutex_unlock(&mu->m);
    return 0;
  }
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&mu->m);
    pthread_mutex_unlock(&mu->m);
    return 0;
  }
  return 1;
}

int ac_smutex_is_mine(ac_smutex *mu) { return 0; }

unsigned ac_smutex_depth(ac_smutex *mu) { return 1; }
#endif
