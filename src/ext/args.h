/* args.h: argument converters for the binding's hot METH_FASTCALL methods.
 * Contract: each converts as PyArg_ParseTuple's I, K, L and d would (I and K without overflow
 * checks, as there) and returns 0, or -1 with an exception set. Why by hand: building and
 * parsing an argument tuple cost about 90 ns a call, on methods called several times per task. */
#ifndef ALLCORES_EXT_ARGS_H
#define ALLCORES_EXT_ARGS_H

#include "binding.h"

static inline int nargs_ok(const char *name, Py_ssize_t nargs, Py_ssize_t min, Py_ssize_t max) {
  if (nargs >= min && nargs <= max) return 0;
  PyErr_Format(PyExc_TypeError, "%s() takes %zd to %zd arguments (%zd given)", name, min, max,
               nargs);
  return -1;
}

static inline int arg_uint(PyObject *o, unsigned int *out) {
  unsigned long v = PyLong_AsUnsignedLongMask(o);
  if (v == (unsigned long)-1 && PyErr_Occurred()) return -1;
  *out = (unsigned int)v;
  return 0;
}

static inline int arg_ull(PyObject *o, unsigned long long *out) {
  unsigned long long v = PyLong_AsUnsignedLongLongMask(o);
  if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
  *out = v;
  return 0;
}

static inline int arg_ll(PyObject *o, long long *out) {
  long long v = PyLong_AsLongLong(o);
  if (v == -1 && PyErr_Occurred()) return -1;
  *out = v;
  return 0;
}

static inline int arg_double(PyObject *o, double *out) {
  double v = PyFloat_AsDouble(o);
  if (v == -1.0 && PyErr_Occurred()) return -1;
  *out = v;
  return 0;
}

#endif
