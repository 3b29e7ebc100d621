/* shared_counter.c: allcores._core.Counter, a lock-free 64-bit integer in shared memory. Every
 * operation is one atomic instruction with the GIL held: none ever waits. */
#include "shared.h"

#include "allcores/shared_sync.h"

typedef struct {
  ACX_VIEW_HEAD
  ac_scounter *c;
} CounterObject;

#define CounterObject_CAST(op) ((CounterObject *)(op))

static PyObject *Counter_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"segment", "offset", "initial", NULL};
  PyObject *segment, *initial = Py_None;
  Py_ssize_t offset;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|O:Counter", kwlist, &segment, &offset,
                                   &initial))
    return NULL;
  long long init = 0;
  if (initial != Py_None && (init = PyLong_AsLongLong(initial)) == -1 && PyErr_Occurred())
    return NULL;
  char *at = acx__view_at(segment, offset, sizeof(ac_scounter), 8);
  if (!at) return NULL;
  CounterObject *self = (CounterObject *)acx__view_new(type, segment, offset);
  if (!self) return NULL;
  self->c = (ac_scounter *)at;
  if (initial != Py_None) ac_scounter_store(self->c, init);
  return (PyObject *)self;
}

static int as_int64(PyObject *obj, long long *out) {
  if (PyLong_CheckExact(obj)) {
    *out = PyLong_AsLongLong(obj);
  } else {
    PyObject *i = PyNumber_Index(obj); /* TypeError for floats and other non-integers */
    if (!i) return -1;
    *out = PyLong_AsLongLong(i);
    Py_DECREF(i);
  }
  return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(Counter_add__doc__,
"add($self, n=1, /)\n--\n\nAtomically add n (may be negative) and return the new value.");

static PyObject *Counter_add(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  long long n = 1;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "add() takes at most 1 argument");
    return NULL;
  }
  if (nargs == 1 && as_int64(args[0], &n) < 0) return NULL;
  return PyLong_FromLongLong(ac_scounter_add(CounterObject_CAST(op)->c, n));
}

PyDoc_STRVAR(Counter_compare_exchange__doc__,
"compare_exchange($self, expected, desired, /)\n--\n\n"
"Atomically set the value to desired if it equals expected. Return True if it did.");

static PyObject *Counter_compare_exchange(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
  long long expected, desired;
  int64_t seen;
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "compare_exchange() takes exactly 2 arguments");
    return NULL;
  }
  if (as_int64(args[0], &expected) < 0 || as_int64(args[1], &desired) < 0) return NULL;
  return PyBool_FromLong(ac_scounter_cas(CounterObject_CAST(op)->c, expected, desired, &seen));
}

PyDoc_STRVAR(Counter_exchange__doc__,
"exchange($self, value, /)\n--\n\nAtomically set the value and return the previous one.");

static PyObject *Counter_exchange(PyObject *op, PyObject *arg) {
  long long v;
  if (as_int64(arg, &v) < 0) return NULL;
  return PyLong_FromLongLong(ac_scounter_exchange(CounterObject_CAST(op)->c, v));
}

static PyObject *Counter_get_value(PyObject *op, void *closure) {
  return PyLong_FromLongLong(ac_scounter_load(CounterObject_CAST(op)->c));
}

static int Counter_set_value(PyObject *op, PyObject *value, void *closure) {
  long long v;
  if (!value) {
    PyErr_SetString(PyExc_AttributeError, "cannot delete a Counter's value");
    return -1;
  }
  if (as_int64(value, &v) < 0) return -1;
  ac_scounter_store(CounterObject_CAST(op)->c, v);
  return 0;
}

/* c += n and c -= n: the atomic add, then the counter itself, so the name stays bound to it.
 * A non-integer raises here rather than return NotImplemented: Python subclasses would otherwise
 * fall back to their sequence slots and bind the name to NotImplemented. */
static PyObject *inplace(PyObject *op, PyObject *other, int sign) {
  long long n;
  if (as_int64(other, &n) < 0) return NULL;
  if (sign < 0) n = (long long)(0ULL - (unsigned long long)n);
  ac_scounter_add(CounterObject_CAST(op)->c, n);
  return Py_NewRef(op);
}

static PyObject *Counter_iadd(PyObject *op, PyObject *other) { return inplace(op, other, 1); }
static PyObject *Counter_isub(PyObject *op, PyObject *other) { return inplace(op, other, -1); }

static PyObject *Counter_int(PyObject *op) { return Counter_get_value(op, NULL); }

static PyObject *Counter_repr(PyObject *op) {
  PyObject *name = PyType_GetName(Py_TYPE(op));
  if (!name) return NULL;
  PyObject *r = PyUnicode_FromFormat("%U(%lld)", name,
                                     (long long)ac_scounter_load(CounterObject_CAST(op)->c));
  Py_DECREF(name);
  return r;
}

static PyMethodDef Counter_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Counter_add, METH_FASTCALL, Counter_add__doc__},
    {"compare_exchange", (PyCFunction)(void (*)(void))Counter_compare_exchange, METH_FASTCALL,
     Counter_compare_exchange__doc__},
    {"exchange", Counter_exchange, METH_O, Counter_exchange__doc__},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Counter_getset[] = {
    {"value", Counter_get_value, Counter_set_value, "The current value (a plain read or store).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Counter__doc__,
"Counter(segment, offset, initial=None)\n--\n\n"
"A lock-free 64-bit signed integer at offset of a Segment (8-byte aligned); c += n is one\n"
"atomic add, in any process that maps it. Wraps around on overflow.");

static PyType_Slot Counter_slots[] = {
    {Py_tp_new, Counter_new},
    {Py_tp_dealloc, acx__view_dealloc},
    {Py_tp_methods, Counter_methods},
    {Py_tp_getset, Counter_getset},
    {Py_tp_members, acx__view_members},
    {Py_tp_repr, Counter_repr},
    {Py_nb_inplace_add, Counter_iadd},
    {Py_nb_inplace_subtract, Counter_isub},
    {Py_nb_int, Counter_int},
    {Py_nb_index, Counter_int},
    {Py_tp_doc, (void *)Counter__doc__},
    {0, NULL},
};

static PyType_Spec Counter_spec = {
    .name = "allcores._core.Counter",
    .basicsize = sizeof(CounterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Counter_slots,
};

int acx__register_counter(PyObject *m) {
  PyObject *tp = PyType_FromModuleAndSpec(m, &Counter_spec, NULL);
  if (!tp) return -1;
  int rc = PyModule_AddObjectRef(m, "Counter", tp);
  Py_DECREF(tp);
  if (rc < 0) return -1;
  return PyModule_AddIntConstant(m, "COUNTER_BYTES", sizeof(ac_scounter));
}
