/* region_worker.c: the Region methods a worker calls (region_object.h): take the next task,
 * send a result, mark the item of a chunk it starts. Each is a core worker step (region.h) run
 * through acx_wait. */
#include "region_object.h"

#include "allcores/clock.h"
#include "args.h"

const char acx_region_next_task_doc[] =
"next_task($self, k, spin_ns, /)\n--\n\n"
"In worker k: wait for the next task and return (id, kind, aux, payload), or None once the\n"
"task ring is closed and drained.";

/* Worker k's wait for a task: one try with the GIL held, then waits without it, spinning in the
 * first one. */
typedef struct {
  RegionObject *self;
  uint32_t k;
  ac_msg *m;
  uint8_t *buf;
  long long spin_cap;
  int64_t spin;
} next_arg;

static int next_step(void *arg, int64_t timeout_ns, int gil_held) {
  next_arg *a = arg;
  ac_region *r = &a->self->region;
  if (gil_held) {
    int rc = ac_worker_next_task(r, a->k, a->m, a->buf, 0, 0);
    a->spin = ac_spin_budget(&a->self->task_spin, a->spin_cap);
    return rc == -ETIMEDOUT || rc == -EINTR ? -EAGAIN : rc;
  }
  int64_t start = ac_now_ns();
  int rc = ac_worker_next_task(r, a->k, a->m, a->buf, timeout_ns, a->spin);
  if (a->spin > 0)
    ac_spin_learn(&a->self->task_spin, a->spin_cap, a->spin, ac_now_ns() - start, rc == 0);
  a->spin = 0;
  return rc;
}

PyObject *acx_region_next_task(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned int k;
  long long spin_ns;
  if (nargs_ok("next_task", nargs, 2, 2) < 0 || arg_uint(args[0], &k) < 0 ||
      arg_ll(args[1], &spin_ns) < 0)
    return NULL;
  if (acx_check_worker(self, k) < 0) return NULL;
  ac_region *r = &self->region;
  uint8_t buf[AC_SLOT_INLINE];
  ac_msg m;
  next_arg a = {self, k, &m, buf, spin_ns, 0};
  int rc = acx_wait(next_step, &a, -1);
  if (rc == AC_ECLOSED) Py_RETURN_NONE;
  if (rc) return raise_rc(self, rc, "next_task");
  return acx_message_tuple(self, &m, buf, &r->workers[k].take.block);
}

const char acx_region_send_result_doc[] =
"send_result($self, k, id, kind, aux, payload, /)\n--\n\n"
"In worker k: publish the result of task id (payload: bytes-like or tuple of them) and mark the\n"
"task finished.";

PyObject *acx_region_send_result(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned int k, kind, aux;
  unsigned long long id;
  if (nargs_ok("send_result", nargs, 5, 5) < 0 || arg_uint(args[0], &k) < 0 ||
      arg_ull(args[1], &id) < 0 || arg_uint(args[2], &kind) < 0 || arg_uint(args[3], &aux) < 0)
    return NULL;
  PyObject *payload = args[4];
  if (acx_check_worker(self, k) < 0) return NULL;
  Py_buffer views[MAX_PARTS];
  struct iovec iov[MAX_PARTS];
  int n;
  uint64_t total;
  if (acx_get_parts(payload, views, iov, &n, &total) < 0) return NULL;
  acx_send_arg a = {&self->region, k, {.id = id, .kind = kind, .aux = aux}, iov, n, total};
  int rc = acx_wait(acx_send_step, &a, -1);
  for (int i = 0; i < n; i++) PyBuffer_Release(&views[i]);
  if (rc) return raise_rc(self, rc, "send_result");
  Py_RETURN_NONE;
}

PyObject *acx_region_set_item(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned int k;
  unsigned long long item;
  if (nargs_ok("set_item", nargs, 2, 2) < 0 || arg_uint(args[0], &k) < 0 ||
      arg_ull(args[1], &item) < 0)
    return NULL;
  if (acx_check_worker(self, k) < 0) return NULL;
  ac_worker_set_item(&self->region, k, item);
  Py_RETURN_NONE;
}
