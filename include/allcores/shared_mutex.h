/* shared_mutex.h: a mutex in shared memory that survives the death of its owner.
 *
 * Contract:
 * - An ac_smutex is a robust, process-shared pthread mutex: the kernel walks each dying thread's
 *   robust list (even after SIGKILL) and marks the mutexes it held, so the next acquirer gets the
 *   lock, is told (ac_smutex_lock returns AC_SMUTEX_RECOVERED) and the mutex is made consistent
 *   again before it returns. Recovery tells; it cannot repair what the dead owner left half-done.
 * - Ownership is per thread: only the owner may unlock (-EPERM otherwise). A plain mutex refuses
 *   to be locked twice by its owner (-EDEADLK); a recursive one counts.
 * - glibc links every held robust mutex into its owner thread's list: the memory of a held mutex
 *   must stay mapped until it is unlocked (the binding keeps the segment alive while held).
 * ac_smutex_lock(timeout_ns): 0 = try once (-EBUSY when held), < 0 = no limit, else at most that
 * long (-ETIMEDOUT). Returns 0 or AC_SMUTEX_RECOVERED when acquired. */
#ifndef ALLCORES_SHARED_MUTEX_H
#define ALLCORES_SHARED_MUTEX_H

#include <pthread.h>
#include <stdint.h>

#define AC_SMUTEX_RECOVERED 1

typedef struct ac_smutex {
  pthread_mutex_t m;
} ac_smutex;

int ac_smutex_init(ac_smutex *mu, int recursive);
int ac_smutex_lock(ac_smutex *mu, int64_t timeout_ns);
int ac_smutex_unlock(ac_smutex *mu);
/* 1 when some thread holds the mutex (or died holding it), 0 when free. A snapshot. */
int ac_smutex_locked(ac_smutex *mu);
/* 1 when the calling thread holds the mutex. */
int ac_smutex_is_mine(ac_smutex *mu);
/* How many times the calling thread, which holds the mutex, has locked it (1 unless recursive). */
unsigned ac_smutex_depth(ac_smutex *mu);

#endif
