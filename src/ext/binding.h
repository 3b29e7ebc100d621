/* binding.h: what the files of the allcores._core extension share. This is the only place that
 * sees both Python.h and the C core; it owns no logic, only translation.
 * Contract: ac_py_raise() (errors.c) turns a core return code into the matching Python exception
 * (passing an already-set exception through); acx_wait() (wait.c) is the one way a call blocks;
 * each subsystem's type registers itself in the module from module.c's exec slot through an
 * acx_register_* function. */
#ifndef ALLCORES_BINDING_H
#define ALLCORES_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdint.h>

/* Free-threaded builds (3.13t+) run this module without a GIL (module.c declares
 * Py_MOD_GIL_NOT_USED): whatever it reads of an object another thread can change is read under
 * that object's critical section or through a strong reference. Before 3.13 the GIL is the
 * critical section. */
#ifndef Py_BEGIN_CRITICAL_SECTION
#define Py_BEGIN_CRITICAL_SECTION(op) {
#define Py_END_CRITICAL_SECTION() }
#endif
#if PY_VERSION_HEX < 0x030D0000
static inline PyObject *PyList_GetItemRef(PyObject *list, Py_ssize_t i) {
  if (i < 0 || i >= PyList_GET_SIZE(list)) {
    PyErr_SetString(PyExc_IndexError, "list index out of range");
    return NULL;
  }
  return Py_NewRef(PyList_GET_ITEM(list, i));
}
#endif

typedef struct {
  PyObject *ClosedError;  /* the region was shut down */
  PyObject *CorruptError; /* invalid data met in shared memory */
  PyTypeObject *Region;
  PyTypeObject *BlockBuffer;
  PyTypeObject *SharedBytes; /* bytes received without a copy (received_bytes.c) */
} ac_module_state;

ac_module_state *ac_get_state(PyObject *module);
ac_module_state *ac_state_from_type(PyTypeObject *tp);
/* The module that defined type tp (a borrowed reference), for ac_py_raise. */
PyObject *ac_module_from_type(PyTypeObject *tp);

/* A return code of the binding's own: a Python exception is set. Never a core code (those are
 * -errno or errors.h's, all above -4200), so no code means both. */
#define ACX_PYERR INT_MIN

/* Sets a Python exception for core code `rc` (ACX_PYERR: leaves the one set); context names what
 * failed. Returns NULL. ac_py_raise_for finds the module (its exception types) from an object of
 * one of its types; self may be NULL. */
PyObject *ac_py_raise(PyObject *module, int rc, const char *context);
PyObject *ac_py_raise_for(PyObject *self, int rc, const char *context);

/* The one blocking rule. A step is one attempt at a blocking operation: timeout_ns 0 = do not
 * wait; gil_held = the caller holds the GIL (the step must not block). It returns 0 or a positive
 * value on success, -EAGAIN/-EBUSY when it cannot proceed without waiting (-EBUSY: not even a
 * try can be made with the GIL held), -ETIMEDOUT/-EINTR after a wait, or another code.
 * acx_wait runs step once with the GIL held, then without it in slices of at most
 * ACX_WAIT_SLICE_NS, running signal handlers between them, until it succeeds, fails, or
 * timeout_ns passes (< 0: never; 0: one try, but a step that said -EBUSY gets one slice without
 * the GIL). Returns the step's result, -ETIMEDOUT when the time ran out (-EAGAIN when
 * timeout_ns was 0), or ACX_PYERR when a signal handler raised. */
#define ACX_WAIT_SLICE_NS 50000000LL /* 50 ms between signal checks while blocked */
typedef int (*acx_step_fn)(void *arg, int64_t timeout_ns, int gil_held);
int acx_wait(acx_step_fn step, void *arg, int64_t timeout_ns);
/* A timeout in seconds as acx_wait's nanoseconds: negative means no limit. */
int64_t acx_seconds_ns(double seconds);

/* Registration hooks, one per file that defines types or functions. Weak ones are optional
 * subsystems that may be absent from a build. */
int acx_register_region(PyObject *module);
int acx_register_block_buffer(PyObject *module); /* called by acx_register_region */
int acx_register_process(PyObject *module);
int acx_register_copy(PyObject *module);
int acx_register_oob_scan(PyObject *module);
int acx_register_oob_frame(PyObject *module);
int acx_register_protocol(PyObject *module);
__attribute__((weak)) int acx_register_shared(PyObject *module);
__attribute__((weak)) int acx_register_interp(PyObject *module);

/* For interp_host.c: the mapping behind a Region (NULL with TypeError otherwise), and a new Region
 * object of `module` that views that mapping without owning it (a subinterpreter's worker). */
struct ac_region;
/* For received_bytes.c: when obj is a BlockBuffer of the module whose state is st, sets *r to the
 * region its block is in and returns 0; else returns -1 (no exception set). */
int acx_block_buffer_region(ac_module_state *st, PyObject *obj, const struct ac_region **r);

struct ac_region *acx_region_of(PyObject *obj);
PyObject *acx_region_view(PyObject *module, const struct ac_region *r);

#endif
