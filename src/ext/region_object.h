/* region_object.h: the Region object (allcores._core.Region) as the binding files that serve it
 * share it. One job a file:
 *   region_type.c      the type: lifecycle, the parent's methods, the method table
 *   region_worker.c    the worker's methods: next_task, send_result, set_item
 *   region_message.c   messages between Python objects and the rings (payload parts in, tuples out)
 *   region_claims.c    results in the hands of a thread waiting without the GIL
 *   block_buffer.c     BlockBuffer, the zero-copy view of a received arena block
 *   region_template.c  the template loop, with CPython's fork hooks
 *   region_view.c      a subinterpreter worker's Region on its parent's mapping (interp_host.c)
 * Contract: the protocol is the core's (region.h): these files translate arguments and results
 * and block through acx_wait; the rules of the rings, the records and the arena stay in the core,
 * where the C tests and fuzzers exercise them. */
#ifndef ALLCORES_EXT_REGION_OBJECT_H
#define ALLCORES_EXT_REGION_OBJECT_H

#include "binding.h"

#include <sys/uio.h>

#include "allcores/region.h"
#include "allcores/spin.h"

#define MAX_PARTS 64
#define GIL_FREE_COPY_BYTES (256 * 1024) /* copies bigger than this run without the GIL */
#define POP_CLAIMS 32 /* threads of one process waiting in pop_results() at once, tracked */

typedef struct {
  PyObject_HEAD
  ac_region region;
  int owner_pid; /* the process that created the mapping */
  int is_view;   /* views another interpreter's Region: never unmaps (that one owns the mapping) */
  /* Results taken off the ring and not yet completed, so that the parent never declares a task
   * lost (or the pool finished) while its result is in another thread's hands: `inflight` counts
   * pop_results() calls that returned results and have not called pop_done(); `claims` record a
   * result taken inside a blocking wait (GIL released) until that call holds the GIL again. */
  _Atomic long inflight;
  _Atomic uint32_t poke; /* bumped by wake_results(): ends the waits of pop_results() callers */
  _Atomic uint32_t claims_used; /* bitmap over claims */
  ac_claim claims[POP_CLAIMS];
  /* How long this process spins for results (parent) and for tasks (worker): see spin.h. */
  ac_spin_policy result_spin;
  ac_spin_policy task_spin;
} RegionObject;

#define RegionObject_CAST(op) ((RegionObject *)(op))

static inline PyObject *raise_rc(RegionObject *self, int rc, const char *what) {
  return ac_py_raise_for((PyObject *)self, rc, what);
}

/* 0 when worker slot k exists in a live region; else -1 with ValueError or IndexError. */
int acx_check_worker(RegionObject *self, unsigned int k);

/* region_message.c. A received message as (id, kind, aux, payload), its block freed or kept by
 * a view; `held` (may be NULL) is the worker record's note of the block (see the function). */
PyObject *acx_message_tuple(RegionObject *self, const ac_msg *m, const uint8_t *inline_buf,
                            _Atomic uint64_t *held);
/* The buffers of a bytes-like object or a tuple/list of at most MAX_PARTS of them; the caller
 * releases the n views. Returns 0, or -1 with an exception set. */
int acx_get_parts(PyObject *obj, Py_buffer *views, struct iovec *iov, int *n, uint64_t *total);
/* One message to send: a task (k < 0) from the parent, or worker k's result. */
typedef struct acx_send_arg {
  ac_region *r;
  int64_t k;
  ac_msg msg;
  struct iovec *iov;
  int n;
  uint64_t total;
} acx_send_arg;
int acx_send_step(void *arg, int64_t timeout_ns, int gil_held);

/* region_claims.c: a free claim record for one blocking pop (NULL when POP_CLAIMS threads hold
 * one already), its release, and how many results the claims hold now. */
ac_claim *acx_claim_acquire(RegionObject *self, uint32_t *bit);
void acx_claim_release(RegionObject *self, ac_claim *claim, uint32_t bit);
long acx_claims_held(RegionObject *self);

/* block_buffer.c: a view of received block `block`; `recorded`: the block is the calling
 * worker's task payload, which its record holds too until the task is finished. */
PyObject *acx_block_buffer_new(RegionObject *region, uint64_t block, int recorded);

/* The methods that live outside region_type.c, for its method table. */
PyObject *acx_region_next_task(PyObject *op, PyObject *const *args, Py_ssize_t nargs);
PyObject *acx_region_send_result(PyObject *op, PyObject *const *args, Py_ssize_t nargs);
PyObject *acx_region_set_item(PyObject *op, PyObject *const *args, Py_ssize_t nargs);
PyObject *acx_region_template_serve(PyObject *op, PyObject *arg);
extern const char acx_region_next_task_doc[], acx_region_send_result_doc[];

#endif
