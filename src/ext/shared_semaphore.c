/* shared_semaphore.c: allcores._core.Semaphore, a counting semaphore in shared memory (with an
 * optional bound, for BoundedSemaphore). */
#include "shared.h"

#include "allcores/shared_sync.h"

typedef struct {
  ACX_VIEW_HEAD
  ac_ssem *s;
} SemaphoreObject;

#define SemaphoreObject_CAST(op) ((SemaphoreObject *)(op))

static PyObject *Semaphore_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"segment", "offset", "value", "bound", NULL};
  PyObject *segment, *value = Py_None;
  Py_ssize_t offset;
  unsigned int bound = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|OI:Semaphore", kwlist, &segment, &offset,
                                   &value, &bound))
    return NULL;
  char *at = acx__view_at(segment, offset, sizeof(ac_ssem), 8);
  if (!at) return NULL;
  if (value != Py_None) {
    long v = PyLong_AsLong(value);
    if (v == -1 && PyErr_Occurred()) return NULL;
    if (v < 0 || ac_ssem_init((ac_ssem *)at, (uint32_t)v, bound) != 0) {
      PyErr_Format(PyExc_ValueError, "semaphore value must be 0..%u (and at most its bound)",
                   AC_SSEM_MAX);
      return NULL;
    }
  }
  SemaphoreObject *self = (SemaphoreObject *)acx__view_new(type, segment, offset);
  if (!self) return NULL;
  self->s = (ac_ssem *)at;
  return (PyObject *)self;
}

static int take_step(void *arg, int64_t timeout_ns, int gil_held) {
  return ac_ssem_acquire((ac_ssem *)arg, gil_held ? 0 : timeout_ns);
}

/* Returns 1, 0 (not acquired in time) or -1 with an exception. */
static int do_acquire(SemaphoreObject *self, int block, int64_t timeout_ns) {
  int rc = acx_wait(take_step, self->s, block ? timeout_ns : 0);
  if (rc == -EAGAIN || rc == -ETIMEDOUT) return 0;
  if (rc < 0) {
    ac_py_raise_for((PyObject *)self, rc, "acquire");
    return -1;
  }
  return 1;
}

PyDoc_STRVAR(Semaphore_acquire__doc__,
"acquire($self, block=True, timeout=None)\n--\n\n"
"Take one unit, waiting at most timeout seconds (None: no limit) when block is true.\n"
"Return True when taken. `blocking` is accepted for block, as in threading.");

static PyObject *Semaphore_acquire(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
  int block;
  int64_t t;
  if (acx__parse_acquire(args, nargs, kwnames, &block, &t) < 0) return NULL;
  int rc = do_acquire(SemaphoreObject_CAST(op), block, t);
  return rc < 0 ? NULL : PyBool_FromLong(rc);
}

PyDoc_STRVAR(Semaphore_release__doc__,
"release($self, n=1)\n--\n\nGive back n units, waking up to n waiters. A bounded semaphore raises\n"
"ValueError rather than exceed its bound.");

static PyObject *Semaphore_release(PyObject *op, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"n", NULL};
  unsigned int n = 1;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|I:release", kwlist, &n)) return NULL;
  if (n < 1) {
    PyErr_SetString(PyExc_ValueError, "n must be one or more");
    return NULL;
  }
  int rc = ac_ssem_release(SemaphoreObject_CAST(op)->s, n);
  if (rc) return ac_py_raise_for(op, rc, "release");
  Py_RETURN_NONE;
}

static PyObject *Semaphore_enter(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  int rc = do_acquire(SemaphoreObject_CAST(op), 1, -1);
  return rc < 0 ? NULL : PyBool_FromLong(rc);
}

static PyObject *Semaphore_exit(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  int rc = ac_ssem_release(SemaphoreObject_CAST(op)->s, 1);
  if (rc) return ac_py_raise_for(op, rc, "release");
  Py_RETURN_NONE;
}

static PyObject *Semaphore_get_value(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  return PyLong_FromUnsignedLong(ac_ssem_value(SemaphoreObject_CAST(op)->s));
}

static PyObject *Semaphore_get_bound(PyObject *op, void *closure) {
  uint32_t b = SemaphoreObject_CAST(op)->s->bound;
  if (!b) Py_RETURN_NONE;
  return PyLong_FromUnsignedLong(b);
}

static PyMethodDef Semaphore_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Semaphore_acquire, METH_FASTCALL | METH_KEYWORDS,
     Semaphore_acquire__doc__},
    {"release", (PyCFunction)(void (*)(void))Semaphore_release, METH_VARARGS | METH_KEYWORDS,
     Semaphore_release__doc__},
    {"__enter__", Semaphore_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Semaphore_exit, METH_FASTCALL, NULL},
    {"get_value", Semaphore_get_value, METH_NOARGS,
     "get_value($self)\n--\n\nThe number of units available now (a snapshot)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Semaphore_getset[] = {
    {"bound", Semaphore_get_bound, NULL, "The most units it may hold, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Semaphore__doc__,
"Semaphore(segment, offset, value=None, bound=0)\n--\n\n"
"A counting semaphore at offset of a Segment; value (not None) initializes it, with a bound\n"
"when bound > 0.");

static PyType_Slot Semaphore_slots[] = {
    {Py_tp_new, Semaphore_new},
    {Py_tp_dealloc, acx__view_dealloc},
    {Py_tp_methods, Semaphore_methods},
    {Py_tp_getset, Semaphore_getset},
    {Py_tp_members, acx__view_members},
    {Py_tp_doc, (void *)Semaphore__doc__},
    {0, NULL},
};

static PyType_Spec Semaphore_spec = {
    .name = "allcores._core.Semaphore",
    .basicsize = sizeof(SemaphoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Semaphore_slots,
};

int acx__register_semaphore(PyObject *m) {
  PyObject *tp = PyType_FromModuleAndSpec(m, &Semaphore_spec, NULL);
  if (!tp) return -1;
  int rc = PyModule_AddObjectRef(m, "Semaphore", tp);
  Py_DECREF(tp);
  if (rc < 0) return -1;
  return PyModule_AddIntConstant(m, "SEMAPHORE_BYTES", sizeof(ac_ssem));
}
