/* clock.h: monotonic time in nanoseconds and a CPU pause for spin loops.
 * Contract: ac_now_ns() never goes backwards; it is cheap (vDSO) and safe in any process. */
#ifndef ALLCORES_CLOCK_H
#define ALLCORES_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t ac_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void ac_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#else
  __asm__ __volatile__("" ::: "memory");
#endif
}

#endif
