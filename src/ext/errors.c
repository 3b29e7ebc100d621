/* errors.c: the one translator from core return codes (errors.h, -errno) to Python exceptions.
 * The codes that the shared primitives give a meaning of their own (shared_mutex.h,
 * shared_sync.h, shared_segment.h) are said in those words; a payload that can never fit
 * (AC_ETOOBIG) is a MemoryError, as the arena being full is. */
#include "binding.h"

#include "allcores/errors.h"

PyObject *ac_py_raise(PyObject *module, int rc, const char *context) {
  if (rc == ACX_PYERR || PyErr_Occurred()) return NULL;
  ac_module_state *st = module ? ac_get_state(module) : NULL;
  PyObject *type = PyExc_RuntimeError;
  const char *what = NULL; /* NULL: ac_strerror's words */
  switch (rc) {
  case AC_ECLOSED:
    if (st) type = st->ClosedError;
    break;
  case AC_ECORRUPT:
    if (st) type = st->CorruptError;
    break;
  case AC_ETOOBIG:
  case AC_ENOSPACE:
  case -ENOMEM:
    type = PyExc_MemoryError;
    break;
  case -ETIMEDOUT:
    type = PyExc_TimeoutError;
    what = "timed out";
    break;
  case -EINVAL:
    type = PyExc_ValueError;
    what = "invalid argument";
    break;
  case -ESTALE:
    type = PyExc_FileNotFoundError;
    what = "the shared object is gone: every process that had it open (its creator and the "
           "sender of this reference) closed it or exited";
    break;
  case -EACCES:
    type = PyExc_PermissionError;
    what = "cannot open the shared object through /proc/<pid>/fd (another user's process, or "
           "ptrace access is restricted)";
    break;
  case -EDEADLK:
    what = "the calling thread already holds this lock";
    break;
  case -EPERM:
    what = "the lock is not held by the calling thread";
    break;
  case -EOVERFLOW:
    type = PyExc_ValueError;
    what = "released too many times";
    break;
  default:
    if (rc < 0 && rc > -4096) {
      errno = -rc;
      PyErr_SetFromErrno(PyExc_OSError);
      return NULL;
    }
    PyErr_Format(type, "%s: %s (%d)", context, ac_strerror(rc), rc);
    return NULL;
  }
  PyErr_Format(type, "%s: %s", context, what ? what : ac_strerror(rc));
  return NULL;
}

PyObject *ac_py_raise_for(PyObject *self, int rc, const char *context) {
  if (rc == ACX_PYERR || PyErr_Occurred()) return NULL;
  PyObject *module = self ? ac_module_from_type(Py_TYPE(self)) : NULL;
  if (self && !module) PyErr_Clear(); /* not one of this module's types: no module state */
  return ac_py_raise(module, rc, context);
}
