/* binding.h: what the files of the allcores._core extension share. This is the only place that
 * sees both Python.h and the C core; it owns no logic, only translation.
 * Contract: ac_py_raise() turns a core return code into the matching Python exception (passing an
 * already-set exception through); each subsystem's type registers itself in the module from
 * module.c's exec slot through an acx_register_* function. */
#ifndef ALLCORES_BINDING_H
#define ALLCORES_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

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

/* Sets a Python exception for core code `rc`; context names what failed. Returns NULL. */
PyObject *ac_py_raise(PyObject *module, int rc, const char *context);

/* Registration hooks, one per file that defines types or functions. Weak ones are optional
 * subsystems that may be absent from a build. */
int acx_register_region(PyObject *module);
int acx_register_process(PyObject *module);
int acx_register_copy(PyObject *module);
int acx_register_oob_scan(PyObject *module);
int acx_register_oob_frame(PyObject *module);
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
