/* futex.c: the Linux futex system call, shared (not private) so that waits work across processes. */
#include "allcores/futex.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int ac_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  struct timespec ts, *tsp = NULL;
  if (timeout_ns >= 0) {
    ts.tv_sec = timeout_ns / 1000000000LL;
    ts.tv_nsec = timeout_ns % 1000000000LL;
    tsp = &ts;
  }
  /* FUTEX_WAIT takes a relative timeout; the word is compared atomically by the kernel. */
  long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tsp, NULL, 0);
  if (rc == 0) return 0;
  if (errno == EAGAIN) return 0; /* the word had already changed */
  return -errno;
}

int ac_futex_wake(_Atomic uint32_t *word, int n) {
  long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
  return rc < 0 ? -errno : (int)rc;
}
