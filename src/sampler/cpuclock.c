/* cpuclock.c: clock_gettime wrappers; the per-thread clock is built from the kernel thread id. */
#include "cpuclock.h"

#include <errno.h>
#include <time.h>

static int64_t read_clock(clockid_t c) {
  struct timespec ts;
  if (clock_gettime(c, &ts) != 0) return -errno;
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t ac_mono_ns(void) { return read_clock(CLOCK_MONOTONIC); }
int64_t ac_process_cpu_ns(void) { return read_clock(CLOCK_PROCESS_CPUTIME_ID); }
int64_t ac_self_cpu_ns(void) { return read_clock(CLOCK_THREAD_CPUTIME_ID); }

/* The kernel encodes a per-thread CPU clock as ~tid << 3 | CPUCLOCK_PERTHREAD(4) | CPUCLOCK_SCHED(2);
 * this is what glibc's pthread_getcpuclockid builds, but it needs a pthread_t and we only know
 * the thread id. Within the same thread group the kernel accepts it. */
int64_t ac_thread_cpu_ns(pid_t tid) {
  clockid_t c = (clockid_t)((~(unsigned)tid << 3) | 6);
  return read_clock(c);
}
