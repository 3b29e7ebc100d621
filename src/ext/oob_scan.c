/* oob_scan.c: allcores._core.wants_oob and is_big, the look every payload gets before it is
 * pickled: does it carry a buffer big enough to travel out of band (see allcores/_oob.py)?
 *
 * Contract:
 * - is_big(obj): True for a bytes (SharedBytes included), bytearray or memoryview of at least
 *   OOB_MIN_BYTES bytes, for a numpy.ndarray whose nbytes is at least that, and for any
 *   numpy.memmap (it travels as a reference to its file, whatever its size: allcores/_memmap.py);
 *   False for anything else, subclasses included (they may pickle in their own way).
 * - wants_oob(*objs): True when one of objs, or an element one level inside a tuple or list of
 *   them, or a value of a dict of them, is big. The look is shallow on purpose: tiny tasks must
 *   not pay for a walk of their arguments.
 * Every task and every result passes here, in the parent and in the workers: written in C, it
 * costs tens of nanoseconds where the Python version cost 0.7 µs a task. */
#include "binding.h"

#include <string.h>

#define OOB_MIN_BYTES (64 * 1024)

/* numpy.ndarray is a static type, whose tp_name carries its module; numpy.memmap is a class
 * written in Python, whose tp_name is its bare name (its __module__ says "numpy").
 * 1 numpy.ndarray, 2 numpy.memmap, 0 anything else. */
static int numpy_array_type(PyTypeObject *t) {
  if (strcmp(t->tp_name, "numpy.ndarray") == 0) return 1;
  if (strcmp(t->tp_name, "memmap") != 0) return 0;
  PyObject *module = PyObject_GetAttrString((PyObject *)t, "__module__");
  if (!module) {
    PyErr_Clear();
    return 0;
  }
  int is_numpy = PyUnicode_Check(module) && PyUnicode_CompareWithASCIIString(module, "numpy") == 0;
  Py_DECREF(module);
  return is_numpy ? 2 : 0;
}

/* 1 big, 0 not, -1 error (numpy's nbytes raised). */
static int is_big(ac_module_state *st, PyObject *obj) {
  PyTypeObject *t = Py_TYPE(obj);
  if (t == &PyBytes_Type || t == st->SharedBytes) return PyBytes_GET_SIZE(obj) >= OOB_MIN_BYTES;
  if (t == &PyByteArray_Type) return PyByteArray_GET_SIZE(obj) >= OOB_MIN_BYTES;
  if (t == &PyMemoryView_Type) return PyMemoryView_GET_BUFFER(obj)->len >= OOB_MIN_BYTES;
  int numpy_kind = numpy_array_type(t);
  if (numpy_kind != 1) return numpy_kind == 2;
  PyObject *nbytes = PyObject_GetAttrString(obj, "nbytes");
  if (!nbytes) return -1;
  Py_ssize_t n = PyLong_AsSsize_t(nbytes);
  Py_DECREF(nbytes);
  if (n == -1 && PyErr_Occurred()) return -1;
  return n >= OOB_MIN_BYTES;
}

/* One object and, one level down, the elements of a tuple or list or the values of a dict. */
static int holds_big(ac_module_state *st, PyObject *obj) {
  int big = is_big(st, obj);
  if (big) return big;
  if (PyTuple_CheckExact(obj)) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(obj); i++)
      if ((big = is_big(st, PyTuple_GET_ITEM(obj, i))) != 0) return big;
  } else if (PyList_CheckExact(obj)) {
    /* The list may change under a numpy nbytes call, or in another thread without a GIL: each
     * item is taken as a strong reference, by a fresh index; one that went away ends the look. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(obj); i++) {
      PyObject *item = PyList_GetItemRef(obj, i);
      if (!item) { /* shrunk by another thread since the size was read */
        PyErr_Clear();
        return 0;
      }
      big = is_big(st, item);
      Py_DECREF(item);
      if (big) return big;
    }
  } else if (PyDict_CheckExact(obj)) {
    /* PyDict_Next hands out borrowed references: the dict's critical section keeps another
     * thread from freeing a value before it is held. */
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    Py_BEGIN_CRITICAL_SECTION(obj);
    while (PyDict_Next(obj, &pos, &key, &value)) {
      Py_INCREF(value);
      big = is_big(st, value);
      Py_DECREF(value);
      if (big) break;
    }
    Py_END_CRITICAL_SECTION();
    return big;
  }
  return 0;
}

static PyObject *wants_oob(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
  ac_module_state *st = ac_get_state(m);
  for (Py_ssize_t i = 0; i < nargs; i++) {
    int big = holds_big(st, args[i]);
    if (big < 0) return NULL;
    if (big) Py_RETURN_TRUE;
  }
  Py_RETURN_FALSE;
}

static PyObject *is_big_py(PyObject *m, PyObject *obj) {
  int big = is_big(ac_get_state(m), obj);
  if (big < 0) return NULL;
  return PyBool_FromLong(big);
}

static PyMethodDef oob_scan_methods[] = {
    {"wants_oob", (PyCFunction)(void (*)(void))wants_oob, METH_FASTCALL,
     "wants_oob(*objs): True when one of objs, or an element one level inside a tuple, list or "
     "dict of them, is a buffer big enough to travel out of band."},
    {"is_big", is_big_py, METH_O,
     "is_big(obj): True for a bytes, bytearray, memoryview or numpy array of at least "
     "OOB_MIN_BYTES bytes."},
    {NULL, NULL, 0, NULL},
};

int acx_register_oob_scan(PyObject *m) {
  if (PyModule_AddIntConstant(m, "OOB_MIN_BYTES", OOB_MIN_BYTES) < 0) return -1;
  return PyModule_AddFunctions(m, oob_scan_methods);
}
