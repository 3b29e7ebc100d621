/* wait.c: the binding's one blocking rule (binding.h, acx_wait): try with the GIL held, then
 * wait without it in slices, handling signals between slices.
 *
 * Why slices: a thread blocked in C never runs Python's signal handlers, so Ctrl-C would wait for
 * the operation to end; every ACX_WAIT_SLICE_NS the wait comes back, runs them, and goes on. Why
 * the first try with the GIL: releasing and re-taking the GIL costs more than a push, pop or lock
 * that succeeds at once. */
#include "binding.h"

#include "allcores/clock.h"

int acx_wait(acx_step_fn step, void *arg, int64_t timeout_ns) {
  int rc = step(arg, 0, 1);
  /* -EBUSY: the step could not go on without blocking (a mutex, a big copy): even a try must
   * then be retried without the GIL. */
  if (rc != -EAGAIN && rc != -EBUSY) return rc;
  if (rc == -EAGAIN && timeout_ns == 0) return rc;
  int64_t deadline = timeout_ns < 0 ? -1 : ac_now_ns() + timeout_ns;
  for (;;) {
    int64_t slice = ACX_WAIT_SLICE_NS;
    if (deadline >= 0) {
      int64_t left = deadline - ac_now_ns();
      if (left < 0) left = 0;
      if (left < slice) slice = left;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = step(arg, slice, 0);
    Py_END_ALLOW_THREADS
    if (rc != -EAGAIN && rc != -EBUSY && rc != -ETIMEDOUT && rc != -EINTR) return rc;
    if (PyErr_CheckSignals() < 0) return ACX_PYERR;
    if (deadline >= 0 && ac_now_ns() >= deadline) return timeout_ns == 0 ? -EAGAIN : -ETIMEDOUT;
  }
}

int64_t acx_seconds_ns(double seconds) {
  if (seconds < 0) return -1;
  if (seconds > 1e9) seconds = 1e9; /* about 30 years: no limit in practice, and no overflow */
  return (int64_t)(seconds * 1e9);
}
