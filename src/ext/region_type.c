/* region_type.c: allcores._core.Region, the Python face of a pool's shared region (region.h):
 * its lifecycle, the parent's methods, and the method table of the methods the files of
 * region_object.h serve. Every wait is acx_wait's (binding.h): one try with the GIL held, then
 * slices without it with signals handled between them. */
#include "region_object.h"

#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/errors.h"
#include "allcores/template.h"
#include "args.h"

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

int acx_check_worker(RegionObject *self, unsigned int k) {
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
  if (acx_get_parts(payload, views, iov, &n, &total) < 0) return NULL;
  acx_send_arg a = {&self->region, -1, {.id = id, .kind = kind, .aux = aux}, iov, n, total};
  int rc = acx_wait(acx_send_step, &a, acx_seconds_ns(timeout));
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
    a->claim = acx_claim_acquire(a->self, &a->bit);
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
  acx_claim_release(self, a.claim, a.bit);
  if (rc == ACX_PYERR) {
    Py_DECREF(out);
    return NULL;
  }
  unsigned int got = 0;
  while (rc == 0) {
    PyObject *t = acx_message_tuple(self, &m, buf, NULL);
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
  return PyLong_FromLong(atomic_load(&self->inflight) + acx_claims_held(self));
}

PyDoc_STRVAR(Region_worker_state__doc__,
"worker_state($self, k, /)\n--\n\n"
"(state, pid, gen, task_id, started_ns, tasks_done, item) of worker slot k.");

static PyObject *Region_worker_state(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned long k = PyLong_AsUnsignedLong(arg);
  if (PyErr_Occurred() || acx_check_worker(self, (unsigned int)k) < 0) return NULL;
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
  if (PyErr_Occurred() || acx_check_worker(self, (unsigned int)k) < 0) return NULL;
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  int rc = ac_region_reap(&self->region, (uint32_t)k, &out, buf);
  if (rc < 0) return raise_rc(self, rc, "reap");
  if (rc == 0) Py_RETURN_NONE;
  PyObject *recovered = Py_None;
  Py_INCREF(recovered);
  if (out.recovered) {
    Py_DECREF(recovered);
    recovered = acx_message_tuple(self, &out.msg, buf, NULL);
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
  if (acx_check_worker(self, k) < 0) return NULL;
  int rc = ac_template_orphaned(&self->region, k, status);
  if (rc < 0) return raise_rc(self, rc, "orphaned");
  return PyBool_FromLong(rc);
}

static PyObject *Region_request_spawn(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned long k = PyLong_AsUnsignedLong(arg);
  if (PyErr_Occurred() || acx_check_worker(self, (unsigned int)k) < 0) return NULL;
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
  if (acx_check_worker(self, k) < 0) return NULL;
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
  if (acx_check_worker(self, k) < 0) return NULL;
  ac_region_host_exited(&self->region, k, status);
  Py_RETURN_NONE;
}

static PyObject *Region_request_kill(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  unsigned long k = PyLong_AsUnsignedLong(arg);
  if (PyErr_Occurred() || acx_check_worker(self, (unsigned int)k) < 0) return NULL;
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
  ac_region_shutdown(&self->region, (uint32_t)mode);
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
  uint64_t task_id;
  while (ac_region_drain_task(r, &task_id) == 0) {
    PyObject *id = PyLong_FromUnsignedLongLong(task_id);
    if (!id || PyList_Append(out, id) < 0) {
      Py_XDECREF(id);
      Py_DECREF(out);
      return NULL;
    }
    Py_DECREF(id);
  }
  return out;
}

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
    {"next_task", (PyCFunction)(void (*)(void))acx_region_next_task, METH_FASTCALL,
     acx_region_next_task_doc},
    {"send_result", (PyCFunction)(void (*)(void))acx_region_send_result, METH_FASTCALL,
     acx_region_send_result_doc},
    {"set_item", (PyCFunction)(void (*)(void))acx_region_set_item, METH_FASTCALL, "set_item(k, i): worker k starts item i of a chunk."},
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
    {"template_serve", acx_region_template_serve, METH_O,
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

int acx_register_region(PyObject *m) {
  if (acx_register_block_buffer(m) < 0) return -1;
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
