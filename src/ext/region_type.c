/* region_type.c: allcores._core.Region, the Python face of a pool's shared region (region.h).
 * Every wait is acx_wait's (binding.h): one try with the GIL held, then slices without it with
 * signals handled between them. */
#include "binding.h"

#include <structmember.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/errors.h"
#include "allcores/protocol.h"
#include "allcores/region.h"
#include "allcores/spin.h"
#include "allcores/template.h"

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

static PyObject *raise_rc(RegionObject *self, int rc, const char *what) {
  return ac_py_raise_for((PyObject *)self, rc, what);
}

static PyObject *Region_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"nworkers", "task_slots", "result_slots", "arena_bytes", NULL};
  unsigned int nworkers, task_slots = 1024, result_slots = 1024;
  unsigned long long arena_bytes = 1ULL << 34;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "I|IIK:Region", kwlist, &nworkers, &task_slots,
                                   &result_slots, &arena_bytes))
    return NULL;
  RegionObject *self = (RegionObject *)type->tp_alloc(type, 0);
  if (!self) return NULL;
  ac_region_config cfg = {nworkers, task_slots, result_slots, arena_bytes};
  int rc = ac_region_create(&self->region, &cfg);
  if (rc) {
    Py_DECREF(self);
    if (rc == -EINVAL) {
      PyErr_Format(PyExc_ValueError,
                   "Region: nworkers must be 1..%d and slot counts powers of two >= 2",
                   AC_MAX_WORKERS);
      return NULL;
    }
    return ac_py_raise(NULL, rc, "Region");
  }
  self->owner_pid = getpid();
  return (PyObject *)self;
}

/* Unmaps the region, unless this object only views a mapping owned elsewhere. */
static void region_release(RegionObject *self) {
  if (self->is_view)
    memset(&self->region, 0, sizeof self->region);
  else
    ac_region_destroy(&self->region);
}

static void Region_dealloc(PyObject *op) {
  RegionObject *self = RegionObject_CAST(op);
  PyTypeObject *tp = Py_TYPE(op);
  region_release(self);
  tp->tp_free(op);
  Py_DECREF(tp);
}

/* The hot methods (push_task, pop_results, next_task, send_result, set_item: several calls per
 * task) take METH_FASTCALL arguments converted here as PyArg_ParseTuple's I, K, L and d would
 * (I and K without overflow checks, as there): building and parsing an argument tuple cost about
 * 90 ns a call. */
static int nargs_ok(const char *name, Py_ssize_t nargs, Py_ssize_t min, Py_ssize_t max) {
  if (nargs >= min && nargs <= max) return 0;
  PyErr_Format(PyExc_TypeError, "%s() takes %zd to %zd arguments (%zd given)", name, min, max,
               nargs);
  return -1;
}

static int arg_uint(PyObject *o, unsigned int *out) {
  unsigned long v = PyLong_AsUnsignedLongMask(o);
  if (v == (unsigned long)-1 && PyErr_Occurred()) return -1;
  *out = (unsigned int)v;
  return 0;
}

static int arg_ull(PyObject *o, unsigned long long *out) {
  unsigned long long v = PyLong_AsUnsignedLongLongMask(o);
  if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
  *out = v;
  return 0;
}

static int arg_ll(PyObject *o, long long *out) {
  long long v = PyLong_AsLongLong(o);
  if (v == -1 && PyErr_Occurred()) return -1;
  *out = v;
  return 0;
}

static int arg_double(PyObject *o, double *out) {
  double v = PyFloat_AsDouble(o);
  if (v == -1.0 && PyErr_Occurred()) return -1;
  *out = v;
  return 0;
}

static int check_worker(RegionObject *self, unsigned int k) {
  if (!self->region.base) {
    PyErr_SetString(PyExc_ValueError, "the region was destroyed");
    return -1;
  }
  if (k >= self->region.hdr->nworkers) {
    PyErr_Format(PyExc_IndexError, "worker index %u out of range", k);
    return -1;
  }
  return 0;
}


/* A view of an arena block; the block is freed when the last view of it goes. It keeps its Region
 * alive, so the mapping outlives every view. The block holds the receiver's own copy of the
 * payload (the sender never touches it again), so the view is writable: arrays received arrive
 * writable, as they do from multiprocessing, without a second copy. */
typedef struct {
  PyObject_HEAD
  PyObject *region; /* RegionObject */
  uint64_t block;
  Py_ssize_t len;
  Py_ssize_t exports;
  pid_t pid; /* the process that received the block: the only one that may free it */
} BlockBufferObject;

static int BlockBuffer_getbuffer(PyObject *op, Py_buffer *view, int flags) {
  BlockBufferObject *self = (BlockBufferObject *)op;
  RegionObject *reg = (RegionObject *)self->region;
  void *data = ac_block_data(reg->region.base, self->block);
  if (PyBuffer_FillInfo(view, op, data, self->len, 0, flags) < 0) return -1;
  __atomic_fetch_add(&self->exports, 1, __ATOMIC_RELAXED); /* views may be taken in any thread */
  return 0;
}

static void BlockBuffer_releasebuffer(PyObject *op, Py_buffer *view) {
  __atomic_fetch_sub(&((BlockBufferObject *)op)->exports, 1, __ATOMIC_RELAXED);
}

static void BlockBuffer_dealloc(PyObject *op) {
  BlockBufferObject *self = (BlockBufferObject *)op;
  PyTypeObject *tp = Py_TYPE(op);
  RegionObject *reg = (RegionObject *)self->region;
  /* A fork child inherits this object but not the block: freeing it there (a child that ends
   * with sys.exit() deallocates everything) would hand the parent's data to the next payload. */
  if (reg && reg->region.base && self->pid == getpid()) ac_region_unshare(&reg->region, self->block);
  Py_XDECREF(self->region);
  tp->tp_free(op);
  Py_DECREF(tp);
}

static PyObject *BlockBuffer_len(PyObject *op, void *closure) {
  return PyLong_FromSsize_t(((BlockBufferObject *)op)->len);
}

static PyGetSetDef BlockBuffer_getset[] = {
    {"nbytes", BlockBuffer_len, NULL, "Size of the payload in bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot BlockBuffer_slots[] = {
    {Py_tp_dealloc, BlockBuffer_dealloc},
    {Py_tp_getset, BlockBuffer_getset},
    {Py_bf_getbuffer, BlockBuffer_getbuffer},
    {Py_bf_releasebuffer, BlockBuffer_releasebuffer},
    {Py_tp_doc, "A zero-copy view of a payload received through the pool's shared memory."},
    {0, NULL},
};

static PyType_Spec BlockBuffer_spec = {
    .name = "allcores._core.BlockBuffer",
    .basicsize = sizeof(BlockBufferObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = BlockBuffer_slots,
};

int acx_block_buffer_region(ac_module_state *st, PyObject *obj, const struct ac_region **r) {
  if (Py_TYPE(obj) != st->BlockBuffer) return -1;
  RegionObject *reg = (RegionObject *)((BlockBufferObject *)obj)->region;
  if (!reg || !reg->region.base) return -1;
  *r = &reg->region;
  return 0;
}

/* A view of a received block; `recorded`: the block is the calling worker's task payload, which
 * its record holds too until the task is finished (ac_region_share). */
static PyObject *block_buffer_new(RegionObject *region, uint64_t block, int recorded) {
  ac_module_state *st = ac_state_from_type(Py_TYPE(region));
  if (!st) return NULL;
  BlockBufferObject *self = PyObject_New(BlockBufferObject, st->BlockBuffer);
  if (!self) return NULL;
  ac_block *b = ac_block_at(region->region.base, block);
  ac_region_share(&region->region, block, recorded ? 2 : 1);
  Py_INCREF(region);
  self->region = (PyObject *)region;
  self->block = block;
  self->len = (Py_ssize_t)b->len;
  self->exports = 0;
  self->pid = getpid();
  return (PyObject *)self;
}

/* True when more than half the arena is in use: the parent then stops pinning arena blocks under
 * the results it hands out. */
static int results_pin_too_much(ac_region *r) {
  ac_arena *a = &r->hdr->arena;
  return atomic_load_explicit(&a->bytes_in_use, memory_order_relaxed) >
         (a->pages << AC_PAGE_SHIFT) / 2;
}

/* Turns a received message into (id, kind, aux, payload bytes) and frees its block. `held` (may
 * be NULL) is the worker record's note of the block, cleared before the block is freed so the
 * parent never frees it a second time after this worker dies. */
static PyObject *message_tuple(RegionObject *self, const ac_msg *m, const uint8_t *inline_buf,
                               _Atomic uint64_t *held) {
  ac_region *r = &self->region;
  PyObject *payload;
  int rc = ac_region_check_msg(r, m);
  if (rc) {
    PyErr_Format(ac_get_state(ac_module_from_type(Py_TYPE(self)))->CorruptError,
                 "invalid message in shared memory (id %llu, kind %u, len %u, block %llu)",
                 (unsigned long long)m->id, m->kind, m->len, (unsigned long long)m->block);
    return NULL;
  }
  if (m->block && (m->kind & AC_MSG_OOB) && !(held == NULL && results_pin_too_much(r))) {
    /* Zero copy: the block stays alive as long as the view (held stays set: a worker that dies
     * mid-task has its block freed by the parent; send_result lets go of the record's hold). */
    if (!held) ac_region_adopt(r, m->block);
    payload = block_buffer_new(self, m->block, held != NULL);
  } else if (m->block && (m->kind & AC_MSG_OOB)) {
    /* The caller keeps so many zero-copy results alive that workers could soon find no room
     * for theirs (a hang): this one is copied out, into writable memory as a view would be. */
    ac_block *b = ac_block_at(r->base, m->block);
    payload = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)b->len);
    if (payload) {
      Py_BEGIN_ALLOW_THREADS
      memcpy(PyByteArray_AS_STRING(payload), ac_block_data(r->base, m->block), b->len);
      Py_END_ALLOW_THREADS
    }
    ac_region_release(r, m->block);
  } else if (m->block) {
    ac_block *b = ac_block_at(r->base, m->block);
    payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)b->len);
    if (payload) {
      if (b->len > GIL_FREE_COPY_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        memcpy(PyBytes_AS_STRING(payload), ac_block_data(r->base, m->block), b->len);
        Py_END_ALLOW_THREADS
      } else {
        memcpy(PyBytes_AS_STRING(payload), ac_block_data(r->base, m->block), b->len);
      }
    }
    if (held) atomic_store(held, 0);
    ac_region_release(r, m->block);
  } else {
    payload = PyBytes_FromStringAndSize((const char *)inline_buf, m->len);
  }
  if (!payload) return NULL;
  return Py_BuildValue("(KIIN)", (unsigned long long)m->id, m->kind, m->aux, payload);
}

/* Collects the buffers of a bytes-like object or a tuple/list of them. */
static int get_parts(PyObject *obj, Py_buffer *views, struct iovec *iov, int *n, uint64_t *total) {
  *n = 0;
  *total = 0;
  if (PyTuple_Check(obj) || PyList_Check(obj)) {
    int rc = 0;
    /* A list's items are borrowed until their buffer holds them: under its critical section,
     * no other thread replaces one in between (free-threaded builds). */
    Py_BEGIN_CRITICAL_SECTION(obj);
    Py_ssize_t len = PySequence_Fast_GET_SIZE(obj);
    if (len > MAX_PARTS) {
      PyErr_Format(PyExc_ValueError, "at most %d payload parts", MAX_PARTS);
      rc = -1;
    }
    for (Py_ssize_t i = 0; rc == 0 && i < len; i++) {
      if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(obj, i), &views[i], PyBUF_SIMPLE) < 0) {
        for (int j = 0; j < *n; j++) PyBuffer_Release(&views[j]);
        rc = -1;
        break;
      }
      iov[i].iov_base = views[i].buf;
      iov[i].iov_len = (size_t)views[i].len;
      *total += (uint64_t)views[i].len;
      (*n)++;
    }
    Py_END_CRITICAL_SECTION();
    return rc;
  }
  if (PyObject_GetBuffer(obj, &views[0], PyBUF_SIMPLE) < 0) return -1;
  iov[0].iov_base = views[0].buf;
  iov[0].iov_len = (size_t)views[0].len;
  *total = (uint64_t)views[0].len;
  *n = 1;
  return 0;
}

/* One message to send: a task (k < 0) from the parent, or worker k's result. */
typedef struct {
  ac_region *r;
  int64_t k;
  ac_msg msg;
  struct iovec *iov;
  int n;
  uint64_t total;
} send_arg;

/* acx_wait's step for a send. With the GIL held it only tries a small payload (a big copy runs
 * without the GIL). */
static int send_step(void *arg, int64_t timeout_ns, int gil_held) {
  send_arg *a = arg;
  if (gil_held && a->total > GIL_FREE_COPY_BYTES) return -EBUSY;
  int rc = a->k < 0 ? ac_region_send(a->r, a->r->tasks, &a->msg, a->iov, a->n, AC_OWNER_PARENT,
                                     NULL, NULL, timeout_ns, NULL)
                    : ac_worker_send_result(a->r, (uint32_t)a->k, &a->msg, a->iov, a->n,
                                            timeout_ns);
  return gil_held && rc == -ETIMEDOUT ? -EAGAIN : rc;
}

PyDoc_STRVAR(Region_push_task__doc__,
"push_task($self, id, kind, aux, payload, timeout=-1.0, /)\n--\n\n"
"Queue one task message (payload: bytes-like or a tuple of them). Waits while the ring or the\n"
"arena is full; returns False when timeout (seconds, <0: none) passed first.");

static PyObject *Region_push_task(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned long long id;
  unsigned int kind, aux;
  double timeout = -1.0;
  if (nargs_ok("push_task", nargs, 4, 5) < 0 || arg_ull(args[0], &id) < 0 ||
      arg_uint(args[1], &kind) < 0 || arg_uint(args[2], &aux) < 0 ||
      (nargs > 4 && arg_double(args[4], &timeout) < 0))
    return NULL;
  PyObject *payload = args[3];
  if (!self->region.base) return raise_rc(self, AC_ECLOSED, "push_task");
  Py_buffer views[MAX_PARTS];
  struct iovec iov[MAX_PARTS];
  int n;
  uint64_t total;
  if (get_parts(payload, views, iov, &n, &total) < 0) return NULL;
  send_arg a = {&self->region, -1, {.id = id, .kind = kind, .aux = aux}, iov, n, total};
  int rc = acx_wait(send_step, &a, acx_seconds_ns(timeout));
  for (int i = 0; i < n; i++) PyBuffer_Release(&views[i]);
  if (rc == -ETIMEDOUT || rc == -EAGAIN) Py_RETURN_FALSE;
  if (rc) return raise_rc(self, rc, "push_task");
  Py_RETURN_TRUE;
}

PyDoc_STRVAR(Region_pop_results__doc__,
"pop_results($self, max_n, timeout, spin_ns, event_seen, poke_seen=None, /)\n--\n\n"
"Take up to max_n results as a list of (id, kind, aux, payload). Waits up to timeout seconds\n"
"(<0: none) for the first, spinning spin_ns first, and returns early with an empty list when\n"
"the event word differs from event_seen (a worker changed state) or, when poke_seen is given,\n"
"the poke counter differs from it (another thread completed what this one waits for).\n"
"Returns (list, event).");

/* A free claim record for one blocking pop, or NULL when POP_CLAIMS threads wait already (that
 * thread's pops are then untracked until it holds the GIL again: a narrower guarantee, never a
 * wrong result). */
static ac_claim *claim_acquire(RegionObject *self, uint32_t *bit) {
  uint32_t used = atomic_load(&self->claims_used);
  while (used != UINT32_MAX) {
    int i = __builtin_ctz(~used);
    if (atomic_compare_exchange_weak(&self->claims_used, &used, used | (1u << i))) {
      *bit = 1u << i;
      return &self->claims[i];
    }
  }
  return NULL;
}

static void claim_release(RegionObject *self, ac_claim *claim, uint32_t bit) {
  if (!claim) return;
  atomic_store(&claim->id, 0);
  atomic_store(&claim->block, 0);
  atomic_store(&claim->pos, 0);
  atomic_store(&claim->waiting, 0);
  atomic_fetch_and(&self->claims_used, ~bit);
}

/* A pop of the result ring. With the GIL held: one try; a caller that may wait (max_n > 0) then
 * takes a claim record and its spin, and waits without the GIL, spinning in the first slice. */
typedef struct {
  RegionObject *self;
  int may_wait;
  ac_msg *m;
  uint8_t *buf;
  ac_watch *watch;
  long long spin_cap;
  int64_t spin;
  ac_claim *claim;
  uint32_t bit;
} pop_arg;

static int pop_step(void *arg, int64_t timeout_ns, int gil_held) {
  pop_arg *a = arg;
  ac_region *r = &a->self->region;
  if (gil_held) {
    int rc = ac_ring_try_pop(r->results, a->m, a->buf, NULL);
    if (rc == 0 || !a->may_wait) return rc;
    a->spin = ac_spin_budget(&a->self->result_spin, a->spin_cap);
    a->claim = claim_acquire(a->self, &a->bit);
    return -EBUSY; /* even a zero timeout gets its one wait, with the spin, without the GIL */
  }
  int64_t start = ac_now_ns();
  int rc = ac_ring_pop_wait(r->results, a->m, a->buf, a->claim, timeout_ns, a->spin, a->watch);
  if (a->spin > 0)
    ac_spin_learn(&a->self->result_spin, a->spin_cap, a->spin, ac_now_ns() - start, rc == 0);
  a->spin = 0;
  return rc;
}

static PyObject *Region_pop_results(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned int max_n, event_seen;
  double timeout;
  long long spin_ns;
  if (nargs_ok("pop_results", nargs, 4, 5) < 0 || arg_uint(args[0], &max_n) < 0 ||
      arg_double(args[1], &timeout) < 0 || arg_ll(args[2], &spin_ns) < 0 ||
      arg_uint(args[3], &event_seen) < 0)
    return NULL;
  PyObject *poke_obj = nargs > 4 ? args[4] : Py_None;
  uint32_t poke_seen = 0;
  if (poke_obj != Py_None) {
    poke_seen = (uint32_t)PyLong_AsUnsignedLongMask(poke_obj);
    if (PyErr_Occurred()) return NULL;
  }
  ac_region *r = &self->region;
  if (!r->base) return raise_rc(self, AC_ECLOSED, "pop_results");
  PyObject *out = PyList_New(0);
  if (!out) return NULL;
  uint8_t buf[AC_SLOT_INLINE];
  ac_msg m;
  ac_watch watch = {&r->hdr->event_word, event_seen, poke_obj != Py_None ? &self->poke : NULL,
                    poke_seen};
  pop_arg a = {self, max_n > 0, &m, buf, &watch, spin_ns, 0, NULL, 0};
  int rc = acx_wait(pop_step, &a, max_n > 0 ? acx_seconds_ns(timeout) : 0);
  /* Counted in inflight before the claim lets go: with the GIL held, no other thread of this
   * process runs in between. */
  if (rc == 0) atomic_fetch_add(&self->inflight, 1);
  claim_release(self, a.claim, a.bit);
  if (rc == ACX_PYERR) {
    Py_DECREF(out);
    return NULL;
  }
  unsigned int got = 0;
  while (rc == 0) {
    PyObject *t = message_tuple(self, &m, buf, NULL);
    if (!t || PyList_Append(out, t) < 0) {
      Py_XDECREF(t);
      Py_DECREF(out);
      atomic_fetch_sub(&self->inflight, 1);
      return NULL;
    }
    Py_DECREF(t);
    if (++got >= max_n) break;
    rc = ac_ring_try_pop(r->results, &m, buf, NULL);
  }
  if (rc != 0 && rc != -EAGAIN && rc != -ETIMEDOUT && rc != AC_EEVENT && rc != -EINTR &&
      rc != AC_ECLOSED) {
    Py_DECREF(out);
    if (got) atomic_fetch_sub(&self->inflight, 1);
    return raise_rc(self, rc, "pop_results");
  }
  return Py_BuildValue("(NI)", out, (unsigned int)atomic_load(&r->hdr->event_word));
}

static PyObject *Region_pop_done(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  atomic_fetch_sub(&RegionObject_CAST(op)->inflight, 1);
  Py_RETURN_NONE;
}

static PyObject *Region_popping(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  RegionObject *self = RegionObject_CAST(op);
  long n = atomic_load(&self->inflight);
  for (int i = 0; i < POP_CLAIMS; i++)
    if (atomic_load(&self->claims[i].pos) || atomic_load(&self->claims[i].id)) n++;
  return PyLong_FromLong(n);
}

PyDoc_STRVAR(Region_next_task__doc__,
"next_task($self, k, spin_ns, /)\n--\n\n"
"In worker k: wait for the next task and return (id, kind, aux, payload), or None once the\n"
"task ring is closed and drained.");

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

static PyObject *Region_next_task(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned int k;
  long long spin_ns;
  if (nargs_ok("next_task", nargs, 2, 2) < 0 || arg_uint(args[0], &k) < 0 ||
      arg_ll(args[1], &spin_ns) < 0)
    return NULL;
  if (check_worker(self, k) < 0) return NULL;
  ac_region *r = &self->region;
  uint8_t buf[AC_SLOT_INLINE];
  ac_msg m;
  next_arg a = {self, k, &m, buf, spin_ns, 0};
  int rc = acx_wait(next_step, &a, -1);
  if (rc == AC_ECLOSED) Py_RETURN_NONE;
  if (rc) return raise_rc(self, rc, "next_task");
  return message_tuple(self, &m, buf, &r->workers[k].take.block);
}

PyDoc_STRVAR(Region_send_result__doc__,
"send_result($self, k, id, kind, aux, payload, /)\n--\n\n"
"In worker k: publish the result of task id (payload: bytes-like or tuple of them) and mark the\n"
"task finished.");

static PyObject *Region_send_result(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned int k, kind, aux;
  unsigned long long id;
  if (nargs_ok("send_result", nargs, 5, 5) < 0 || arg_uint(args[0], &k) < 0 ||
      arg_ull(args[1], &id) < 0 || arg_uint(args[2], &kind) < 0 || arg_uint(args[3], &aux) < 0)
    return NULL;
  PyObject *payload = args[4];
  if (check_worker(self, k) < 0) return NULL;
  Py_buffer views[MAX_PARTS];
  struct iovec iov[MAX_PARTS];
  int n;
  uint64_t total;
  if (get_parts(payload, views, iov, &n, &total) < 0) return NULL;
  send_arg a = {&self->region, k, {.id = id, .kind = kind, .aux = aux}, iov, n, total};
  int rc = acx_wait(send_step, &a, -1);
  for (int i = 0; i < n; i++) PyBuffer_Release(&views[i]);
  if (rc) return raise_rc(self, rc, "send_result");
  Py_RETURN_NONE;
}

static PyObject *Region_set_item(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned int k;
  unsigned long long item;
  if (nargs_ok("set_item", nargs, 2, 2) < 0 || arg_uint(args[0], &k) < 0 ||
      arg_ull(args[1], &item) < 0)
    return NULL;
  if (check_worker(self, k) < 0) return NULL;
  ac_worker_rec *w = &self->region.workers[k];
  atomic_store_explicit(&w->item, item, memory_order_relaxed);
  atomic_store_explicit(&w->started_ns, ac_now_ns(), memory_order_release);
  Py_RETURN_NONE;
}

PyDoc_STRVAR(Region_worker_state__doc__,
"worker_state($self, k, /)\n--\n\n"
"(state, pid, gen, task_id, started_ns, tasks_done, item) of worker slot k.");

static PyObject *Region_worker_state(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned long k = PyLong_AsUnsignedLong(arg);
  if (PyErr_Occurred() || check_worker(self, (unsigned int)k) < 0) return NULL;
  ac_worker_rec *w = &self->region.workers[k];
  return Py_BuildValue("(IiIKLKK)", atomic_load(&w->state), atomic_load(&w->pid),
                       atomic_load(&w->gen), (unsigned long long)atomic_load(&w->take.id),
                       (long long)atomic_load(&w->started_ns),
                       (unsigned long long)atomic_load(&w->tasks_done),
                       (unsigned long long)atomic_load(&w->item));
}

PyDoc_STRVAR(Region_reap__doc__,
"reap($self, k, /)\n--\n\n"
"If worker slot k exited, repair the rings, free what it held, mark the slot empty and return\n"
"(pid, wait_status, spawn_errno, task_id, item, recovered) where recovered is the\n"
"(id, kind, aux, payload) of a task it had taken but not started, or None. Else None.");

static PyObject *Region_reap(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned long k = PyLong_AsUnsignedLong(arg);
  if (PyErr_Occurred() || check_worker(self, (unsigned int)k) < 0) return NULL;
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  int rc = ac_region_reap(&self->region, (uint32_t)k, &out, buf);
  if (rc < 0) return raise_rc(self, rc, "reap");
  if (rc == 0) Py_RETURN_NONE;
  PyObject *recovered = Py_None;
  Py_INCREF(recovered);
  if (out.recovered) {
    Py_DECREF(recovered);
    recovered = message_tuple(self, &out.msg, buf, NULL);
    if (!recovered) return NULL;
  }
  return Py_BuildValue("(iiIKKN)", out.pid, out.wait_status, out.spawn_errno,
                       (unsigned long long)out.task_id, (unsigned long long)out.item, recovered);
}

PyDoc_STRVAR(Region_orphaned__doc__,
"orphaned($self, k, wait_status, /)\n--\n\n"
"Parent, after the template died: mark slot k's worker (dead with it) exited with wait_status,\n"
"so that reap() repairs what it held. Returns False when the slot held no live worker.");

static PyObject *Region_orphaned(PyObject *op, PyObject *args) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned int k;
  int status;
  if (!PyArg_ParseTuple(args, "Ii:orphaned", &k, &status)) return NULL;
  if (check_worker(self, k) < 0) return NULL;
  int rc = ac_template_orphaned(&self->region, k, status);
  if (rc < 0) return raise_rc(self, rc, "orphaned");
  return PyBool_FromLong(rc);
}

static PyObject *Region_request_spawn(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned long k = PyLong_AsUnsignedLong(arg);
  if (PyErr_Occurred() || check_worker(self, (unsigned int)k) < 0) return NULL;
  int rc = ac_region_request_spawn(&self->region, (uint32_t)k);
  if (rc == -EBUSY) Py_RETURN_FALSE;
  if (rc) return raise_rc(self, rc, "request_spawn");
  Py_RETURN_TRUE;
}

static PyObject *Region_host_spawned(PyObject *op, PyObject *args) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned int k;
  int id;
  if (!PyArg_ParseTuple(args, "Ii:host_spawned", &k, &id)) return NULL;
  if (check_worker(self, k) < 0) return NULL;
  int rc = ac_region_host_spawned(&self->region, k, id);
  if (rc == -EBUSY) Py_RETURN_FALSE;
  if (rc) return raise_rc(self, rc, "host_spawned");
  Py_RETURN_TRUE;
}

static PyObject *Region_host_exited(PyObject *op, PyObject *args) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned int k;
  int status;
  if (!PyArg_ParseTuple(args, "Ii:host_exited", &k, &status)) return NULL;
  if (check_worker(self, k) < 0) return NULL;
  ac_region_host_exited(&self->region, k, status);
  Py_RETURN_NONE;
}

static PyObject *Region_request_kill(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned long k = PyLong_AsUnsignedLong(arg);
  if (PyErr_Occurred() || check_worker(self, (unsigned int)k) < 0) return NULL;
  ac_region_request_kill(&self->region, (uint32_t)k);
  Py_RETURN_NONE;
}

PyDoc_STRVAR(Region_shutdown__doc__,
"shutdown($self, mode, /)\n--\n\n"
"mode 1: close the task ring; workers finish what is queued and exit. mode 2: workers are\n"
"killed now. The caller then wakes the template.");

static PyObject *Region_shutdown(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  long mode = PyLong_AsLong(arg);
  if (PyErr_Occurred()) return NULL;
  if (!self->region.base) Py_RETURN_NONE;
  uint32_t cur = atomic_load(&self->region.hdr->shutdown);
  if ((uint32_t)mode > cur) atomic_store(&self->region.hdr->shutdown, (uint32_t)mode);
  if (mode >= AC_SHUTDOWN_DRAIN) ac_ring_close(self->region.tasks);
  Py_RETURN_NONE;
}

PyDoc_STRVAR(Region_drain_tasks__doc__,
"drain_tasks($self, /)\n--\n\n"
"Parent: take every queued task off the ring (they will not run); returns their ids.");

static PyObject *Region_drain_tasks(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  RegionObject *self = RegionObject_CAST(op);
  ac_region *r = &self->region;
  PyObject *out = PyList_New(0);
  if (!out || !r->base) return out;
  uint8_t buf[AC_SLOT_INLINE];
  ac_msg m;
  while (ac_ring_try_pop(r->tasks, &m, buf, NULL) == 0) {
    if (m.block && ac_region_check_msg(r, &m) == 0) ac_region_release(r, m.block);
    PyObject *id = PyLong_FromUnsignedLongLong(m.id);
    if (!id || PyList_Append(out, id) < 0) {
      Py_XDECREF(id);
      Py_DECREF(out);
      return NULL;
    }
    Py_DECREF(id);
  }
  return out;
}

static PyObject *Region_template_serve(PyObject *op, PyObject *arg);

static PyObject *Region_get_event(PyObject *op, void *closure) {
  RegionObject *self = RegionObject_CAST(op);
  if (!self->region.base) return PyLong_FromLong(0);
  return PyLong_FromUnsignedLong(atomic_load(&self->region.hdr->event_word));
}

static PyObject *Region_get_poke(PyObject *op, void *closure) {
  return PyLong_FromUnsignedLong(atomic_load(&RegionObject_CAST(op)->poke));
}

static PyObject *Region_get_nworkers(PyObject *op, void *closure) {
  RegionObject *self = RegionObject_CAST(op);
  return PyLong_FromUnsignedLong(self->region.base ? self->region.hdr->nworkers : 0);
}

static PyObject *Region_get_max_payload(PyObject *op, void *closure) {
  RegionObject *self = RegionObject_CAST(op);
  if (!self->region.base) return PyLong_FromLong(0);
  return PyLong_FromUnsignedLongLong(ac_arena_max_payload(&self->region.hdr->arena));
}

static PyObject *Region_stats(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  RegionObject *self = RegionObject_CAST(op);
  ac_region *r = &self->region;
  if (!r->base) return PyDict_New();
  ac_arena *a = &r->hdr->arena;
  return Py_BuildValue(
      "{sKsKsKsKsKsKsKsKsKsK}", "task_wakes",
      (unsigned long long)atomic_load(&r->tasks->consumer_wakes), "task_sleeps",
      (unsigned long long)atomic_load(&r->tasks->consumer_sleeps), "result_wakes",
      (unsigned long long)atomic_load(&r->results->consumer_wakes), "result_sleeps",
      (unsigned long long)atomic_load(&r->results->consumer_sleeps), "arena_allocs", (unsigned long long)atomic_load(&a->allocs),
      "arena_frees", (unsigned long long)atomic_load(&a->frees), "arena_bytes_in_use",
      (unsigned long long)atomic_load(&a->bytes_in_use), "arena_pages_touched",
      (unsigned long long)atomic_load(&a->bump), "tasks_queued",
      (unsigned long long)ac_ring_len(r->tasks), "results_queued",
      (unsigned long long)ac_ring_len(r->results));
}

static PyObject *Region_set_lazy_wake(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  int lazy = PyObject_IsTrue(arg);
  if (lazy < 0) return NULL;
  if (self->region.base) ac_ring_set_lazy_wake(self->region.tasks, lazy);
  Py_RETURN_NONE;
}

static PyObject *Region_kick(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  RegionObject *self = RegionObject_CAST(op);
  if (!self->region.base) Py_RETURN_FALSE;
  return PyBool_FromLong(ac_ring_kick(self->region.tasks));
}

static PyObject *Region_wake_results(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  RegionObject *self = RegionObject_CAST(op);
  atomic_fetch_add(&self->poke, 1);
  if (self->region.base) ac_ring_wake_consumers(self->region.results);
  Py_RETURN_NONE;
}

static PyObject *Region_destroy(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  region_release(RegionObject_CAST(op));
  Py_RETURN_NONE;
}

static PyMethodDef Region_methods[] = {
    {"push_task", (PyCFunction)(void (*)(void))Region_push_task, METH_FASTCALL, Region_push_task__doc__},
    {"pop_results", (PyCFunction)(void (*)(void))Region_pop_results, METH_FASTCALL, Region_pop_results__doc__},
    {"pop_done", Region_pop_done, METH_NOARGS,
     "pop_done(): the results of a pop_results() call that returned some are all completed."},
    {"popping", Region_popping, METH_NOARGS,
     "popping(): how many threads of this process hold results taken off the ring and not yet "
     "completed (0: every published result is either on the ring or completed)."},
    {"next_task", (PyCFunction)(void (*)(void))Region_next_task, METH_FASTCALL, Region_next_task__doc__},
    {"send_result", (PyCFunction)(void (*)(void))Region_send_result, METH_FASTCALL, Region_send_result__doc__},
    {"set_item", (PyCFunction)(void (*)(void))Region_set_item, METH_FASTCALL, "set_item(k, i): worker k starts item i of a chunk."},
    {"worker_state", Region_worker_state, METH_O, Region_worker_state__doc__},
    {"reap", Region_reap, METH_O, Region_reap__doc__},
    {"orphaned", Region_orphaned, METH_VARARGS, Region_orphaned__doc__},
    {"request_spawn", Region_request_spawn, METH_O, "request_spawn(k): ask for a process in slot k."},
    {"request_kill", Region_request_kill, METH_O, "request_kill(k): ask the template to kill worker k."},
    {"host_spawned", Region_host_spawned, METH_VARARGS,
     "host_spawned(k, id): a thread or interpreter now serves requested slot k (False if the "
     "slot was not requested)."},
    {"host_exited", Region_host_exited, METH_VARARGS,
     "host_exited(k, status): the worker serving slot k ended with wait status `status`."},
    {"shutdown", Region_shutdown, METH_O, Region_shutdown__doc__},
    {"drain_tasks", Region_drain_tasks, METH_NOARGS, Region_drain_tasks__doc__},
    {"template_serve", Region_template_serve, METH_O,
     "template_serve(request_fd): run the template loop; returns a worker index in a new worker, "
     "None in the template when it must exit."},
    {"stats", Region_stats, METH_NOARGS, "Arena and ring counters."},
    {"wake_results", Region_wake_results, METH_NOARGS,
     "wake_results(): end the waits of pop_results() calls given poke_seen (their callers "
     "re-check their state) and wake every thread sleeping on the result ring."},
    {"set_lazy_wake", Region_set_lazy_wake, METH_O,
     "set_lazy_wake(flag): tasks are short, so pushes need not wake a sleeper while a worker is "
     "busy (it will be back at once)."},
    {"kick", Region_kick, METH_NOARGS,
     "kick(): wake a sleeping worker if tasks are queued and none spins (safety net)."},
    {"destroy", Region_destroy, METH_NOARGS, "Unmap the region in this process."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Region_getset[] = {
    {"event", Region_get_event, NULL, "The event word: changes when a worker changes state.", NULL},
    {"nworkers", Region_get_nworkers, NULL, "Number of worker slots.", NULL},
    {"poke", Region_get_poke, NULL,
     "Bumped by wake_results(); pass the value read before checking your condition to "
     "pop_results(), which then returns (empty) as soon as it changes.", NULL},
    {"max_payload", Region_get_max_payload, NULL, "Largest payload one message can carry.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Region_slots[] = {
    {Py_tp_new, Region_new},
    {Py_tp_dealloc, Region_dealloc},
    {Py_tp_methods, Region_methods},
    {Py_tp_getset, Region_getset},
    {Py_tp_doc, "Region(nworkers, task_slots=1024, result_slots=1024, arena_bytes=16 GiB)\n--\n\n"
                "A pool's shared memory region: rings, worker records and arena."},
    {0, NULL},
};

static PyType_Spec Region_spec = {
    .name = "allcores._core.Region",
    .basicsize = sizeof(RegionObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Region_slots,
};

/* --- the template loop, with CPython's fork hooks --- */

static void hook_prepare(void *ctx) { PyOS_BeforeFork(); }
static void hook_parent(void *ctx) { PyOS_AfterFork_Parent(); }
static void hook_child(void *ctx) { PyOS_AfterFork_Child(); }

static PyObject *Region_template_serve(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  int fd = (int)PyLong_AsLong(arg);
  if (fd == -1 && PyErr_Occurred()) return NULL;
  if (!self->region.base) return raise_rc(self, AC_ECLOSED, "template_serve");
  ac_fork_hooks hooks = {hook_prepare, hook_parent, hook_child, NULL};
  /* The template is single-threaded and holds the GIL throughout: the fork hooks need it. */
  int rc = ac_template_serve(&self->region, fd, &hooks);
  if (rc >= 0) return PyLong_FromLong(rc);
  if (rc == AC_ECLOSED || rc == AC_EDEAD) Py_RETURN_NONE;
  return raise_rc(self, rc, "template_serve");
}

/* --- for interp_host.c: a subinterpreter's worker gets its own Region object on the same mapping --- */

struct ac_region *acx_region_of(PyObject *obj) {
  /* PyType_GetModuleByDef fails (TypeError) for a type that is not one of this module's. */
  ac_module_state *st = ac_state_from_type(Py_TYPE(obj));
  if (!st || !PyObject_TypeCheck(obj, st->Region)) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "expected an allcores._core.Region, not %.100s",
                 Py_TYPE(obj)->tp_name);
    return NULL;
  }
  RegionObject *self = RegionObject_CAST(obj);
  if (!self->region.base) {
    raise_rc(self, AC_ECLOSED, "Region");
    return NULL;
  }
  return &self->region;
}

PyObject *acx_region_view(PyObject *module, const struct ac_region *r) {
  RegionObject *self = (RegionObject *)ac_get_state(module)->Region->tp_alloc(
      ac_get_state(module)->Region, 0);
  if (!self) return NULL;
  self->region = *r;
  self->owner_pid = getpid();
  self->is_view = 1;
  return (PyObject *)self;
}

int acx_register_region(PyObject *m) {
  PyObject *bb = PyType_FromModuleAndSpec(m, &BlockBuffer_spec, NULL);
  if (!bb) return -1;
  ac_get_state(m)->BlockBuffer = (PyTypeObject *)bb; /* the state owns this reference */
  if (PyModule_AddObjectRef(m, "BlockBuffer", bb) < 0) return -1;
  PyObject *type = PyType_FromModuleAndSpec(m, &Region_spec, NULL);
  if (!type) return -1;
  ac_get_state(m)->Region = (PyTypeObject *)type;
  Py_INCREF(type);
  if (PyModule_AddObjectRef(m, "Region", type) < 0) {
    Py_DECREF(type);
    return -1;
  }
  Py_DECREF(type);
  return 0;
}
