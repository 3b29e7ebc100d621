/* errors.c: the one translator from core return codes to Python exceptions. */
#include "binding.h"

#include "allcores/errors.h"
#include "allcores/ring.h"

PyObject *ac_py_raise(PyObject *module, int rc, const char *context) {
  if (PyErr_Occurred()) return NULL;
  ac_module_state *st = module ? ac_get_state(module) : NULL;
  switch (rc) {
  case AC_ECLOSED:
    PyErr_Format(st ? st->ClosedError : PyExc_RuntimeError, "%s: %s", context, ac_strerror(rc));
    break;
  case AC_ECORRUPT:
    PyErr_Format(st ? st->CorruptError : PyExc_RuntimeError, "%s: %s", context, ac_strerror(rc));
    break;
  case AC_ETOOBIG:
  case AC_ENOSPACE:
    PyErr_Format(PyExc_MemoryError, "%s: %s", context, ac_strerror(rc));
    break;
  case -ETIMEDOUT:
    PyErr_Format(PyExc_TimeoutError, "%s: timed out", context);
    break;
  case -EINVAL:
    PyErr_Format(PyExc_ValueError, "%s: invalid argument", context);
    break;
  default:
    if (rc < 0 && rc > -4096) {
      errno = -rc;
      PyErr_SetFromErrno(PyExc_OSError);
    } else {
      PyErr_Format(PyExc_RuntimeError, "%s: %s (%d)", context, ac_strerror(rc), rc);
    }
  }
  return NULL;
}
