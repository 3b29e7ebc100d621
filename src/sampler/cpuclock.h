/* cpuclock.h: wall and CPU clocks for the sampler: monotonic time, the process's CPU time, the
 * calling thread's CPU time, and another thread's CPU time read by its kernel thread id.
 * Contract: no Python.h. Each function returns nanoseconds (>= 0), or a negative -errno; a thread
 * that has exited gives -EINVAL, so read it periodically while it lives. Same process only. */
#ifndef ALLCORES_CPUCLOCK_H
#define ALLCORES_CPUCLOCK_H

#include <stdint.h>
#include <sys/types.h>

int64_t ac_mono_ns(void);
int64_t ac_process_cpu_ns(void);
int64_t ac_self_cpu_ns(void);
int64_t ac_thread_cpu_ns(pid_t tid);

#endif
