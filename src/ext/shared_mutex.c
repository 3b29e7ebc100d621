/* shared_mutex.c: allcores._core.Mutex, the robust mutex behind Lock and RLock. When its owner
 * died, the next acquire succeeds, sets `recovered` and warns with OwnerDiedWarning. */
#include "shared.h"

#include <structmember.h>

#include "allcores/shared_mutex.h"

typedef struct {
  ACX_VIEW_HEAD
  ac_smutex *mu;
  int recovered; /* the holding that began with the last outermost acquire took over a dead
                  * owner's lock */
} MutexObject;

#define MutexObject_CAST(op) ((MutexObject *)(op))

static PyObject *Mutex_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"segment", "offset", "recursive", "init", NULL};
  PyObject *segment;
  Py_ssize_t offset;
  int recursive = 0, init = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|pp:Mutex", kwlist, &segment, &offset,
                                   &recursive, &init))
    return NULL;
  char *at = acx__view_at(segment, offset, sizeof(ac_smutex), 8);
  if (!at) return NULL;
  if (init) {
    int rc = ac_smutex_init((ac_smutex *)at, recursive);
    if (rc) return ac_py_raise_for(NULL, rc, "cannot initialize a shared mutex");
  }
  MutexObject *self = (MutexObject *)acx__view_new(type, segment, offset);
  if (!self) return NULL;
  self->mu = (ac_smutex *)at;
  return (PyObject *)self;
}

static int lock_step(void *arg, int64_t timeout_ns, int gil_held) {
  return ac_smutex_lock((ac_smutex *)arg, gil_held ? 0 : timeout_ns);
}

/* Records a successful lock (rc >= 0); tells of a recovery. Returns -1 (lock released again)
 * when the warning was turned into an exception. */
static int acquired(MutexObject *self, int rc) {
  acx__segment_hold(self->segment, 1);
  if (rc != AC_SMUTEX_RECOVERED) {
    /* reentries keep the news; relaxed atomics: the getter may run in another thread (no GIL) */
    if (ac_smutex_depth(self->mu) == 1) __atomic_store_n(&self->recovered, 0, __ATOMIC_RELAXED);
    return 0;
  }
  __atomic_store_n(&self->recovered, 1, __ATOMIC_RELAXED);
  PyObject *module = ac_module_from_type(Py_TYPE(self));
  PyObject *category = module ? PyObject_GetAttrString(module, "OwnerDiedWarning") : NULL;
  if (!category) {
    PyErr_Clear();
    category = Py_NewRef(PyExc_RuntimeWarning);
  }
  int w = PyErr_WarnEx(category,
                       "a process or thread died holding this lock; it is yours now, but what it "
                       "guarded may be half-updated (lock.recovered is True)", 1);
  Py_DECREF(category);
  if (w < 0) {
    acx__segment_hold(self->segment, -1);
    ac_smutex_unlock(self->mu);
    return -1;
  }
  return 0;
}

/* Acquires; returns 1, 0 (not acquired in time) or -1 with an exception. */
static int do_acquire(MutexObject *self, int block, int64_t timeout_ns) {
  int rc = block ? acx_wait(lock_step, self->mu, timeout_ns) : ac_smutex_lock(self->mu, 0);
  if (rc == -EBUSY || rc == -ETIMEDOUT || rc == -EAGAIN) return 0;
  if (rc < 0) {
    ac_py_raise_for((PyObject *)self, rc, "acquire");
    return -1;
  }
  return acquired(self, rc) < 0 ? -1 : 1;
}

PyDoc_STRVAR(Mutex_acquire__doc__,
"acquire($self, block=True, timeout=None)\n--\n\n"
"Acquire the lock, waiting at most timeout seconds (None: no limit) when block is true.\n"
"Return True when acquired. `blocking` is accepted for block, as in threading.");

static PyObject *Mutex_acquire(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
  int block;
  int64_t t;
  if (acx__parse_acquire(args, nargs, kwnames, &block, &t) < 0) return NULL;
  int rc = do_acquire(MutexObject_CAST(op), block, t);
  return rc < 0 ? NULL : PyBool_FromLong(rc);
}

static PyObject *Mutex_release(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  MutexObject *self = MutexObject_CAST(op);
  int rc = ac_smutex_unlock(self->mu);
  if (rc) return ac_py_raise_for(op, rc, "release");
  acx__segment_hold(self->segment, -1);
  Py_RETURN_NONE;
}

static PyObject *Mutex_enter(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  int rc = do_acquire(MutexObject_CAST(op), 1, -1);
  return rc < 0 ? NULL : PyBool_FromLong(rc);
}

static PyObject *Mutex_exit(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  return Mutex_release(op, NULL);
}

static PyObject *Mutex_locked(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  return PyBool_FromLong(ac_smutex_locked(MutexObject_CAST(op)->mu));
}

static PyObject *Mutex_is_mine(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  return PyBool_FromLong(ac_smutex_is_mine(MutexObject_CAST(op)->mu));
}

static PyObject *Mutex_get_recovered(PyObject *op, void *closure) {
  return PyBool_FromLong(__atomic_load_n(&MutexObject_CAST(op)->recovered, __ATOMIC_RELAXED));
}

static PyMethodDef Mutex_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Mutex_acquire, METH_FASTCALL | METH_KEYWORDS,
     Mutex_acquire__doc__},
    {"release", Mutex_release, METH_NOARGS,
     "release($self)\n--\n\nRelease the lock; only the thread holding it may (RuntimeError)."},
    {"__enter__", Mutex_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Mutex_exit, METH_FASTCALL, NULL},
    {"locked", Mutex_locked, METH_NOARGS,
     "locked($self)\n--\n\nTrue when some thread of some process holds the lock."},
    {"_is_owned", Mutex_is_mine, METH_NOARGS,
     "_is_owned()\n--\n\nTrue when the calling thread holds the lock."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Mutex_getset[] = {
    {"recovered", Mutex_get_recovered, NULL,
     "True when the current (or last) holding of the lock, from its outermost acquire through\n"
     "this object, began by taking it over from an owner that died holding it.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Mutex__doc__,
"Mutex(segment, offset, recursive=False, init=False)\n--\n\n"
"A robust process-shared mutex at offset of a Segment; init=True initializes it there.");

static PyType_Slot Mutex_slots[] = {
    {Py_tp_new, Mutex_new},
    {Py_tp_dealloc, acx__view_dealloc},
    {Py_tp_methods, Mutex_methods},
    {Py_tp_getset, Mutex_getset},
    {Py_tp_members, acx__view_members},
    {Py_tp_doc, (void *)Mutex__doc__},
    {0, NULL},
};

static PyType_Spec Mutex_spec = {
    .name = "allcores._core.Mutex",
    .basicsize = sizeof(MutexObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Mutex_slots,
};

int acx__register_mutex(PyObject *m) {
  PyObject *warning = PyErr_NewExceptionWithDoc(
      "allcores._core.OwnerDiedWarning",
      "A lock was acquired from a process or thread that died holding it.", PyExc_RuntimeWarning,
      NULL);
  if (!warning) return -1;
  int rc = PyModule_AddObjectRef(m, "OwnerDiedWarning", warning);
  Py_DECREF(warning);
  if (rc < 0) return -1;
  PyObject *tp = PyType_FromModuleAndSpec(m, &Mutex_spec, NULL);
  if (!tp) return -1;
  rc = PyModule_AddObjectRef(m, "Mutex", tp);
  Py_DECREF(tp);
  if (rc < 0) return -1;
  return PyModule_AddIntConstant(m, "MUTEX_BYTES", sizeof(ac_smutex));
}
