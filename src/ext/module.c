/* module.c: the allcores._core module: state, multi-phase init, per-interpreter GIL support. */
#include "binding.h"

static int module_exec(PyObject *m) {
  ac_module_state *st = ac_get_state(m);
  st->ClosedError = PyErr_NewExceptionWithDoc(
      "allcores._core.ClosedError", "The pool's shared region was shut down.", PyExc_RuntimeError, NULL);
  if (!st->ClosedError || PyModule_AddObjectRef(m, "ClosedError", st->ClosedError) < 0) return -1;
  st->CorruptError = PyErr_NewExceptionWithDoc(
      "allcores._core.CorruptError", "Invalid data was found in shared memory.", PyExc_RuntimeError, NULL);
  if (!st->CorruptError || PyModule_AddObjectRef(m, "CorruptError", st->CorruptError) < 0) return -1;
  if (acx_register_region(m) < 0) return -1;
  if (acx_register_process(m) < 0) return -1;
  if (acx_register_copy(m) < 0) return -1;
  if (acx_register_oob_scan(m) < 0) return -1;
  if (acx_register_oob_frame(m) < 0) return -1;
  if (acx_register_protocol(m) < 0) return -1;
  if (acx_register_shared && acx_register_shared(m) < 0) return -1;
  if (acx_register_interp && acx_register_interp(m) < 0) return -1;
  return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg) {
  ac_module_state *st = ac_get_state(m);
  Py_VISIT(st->ClosedError);
  Py_VISIT(st->CorruptError);
  Py_VISIT(st->Region);
  Py_VISIT(st->BlockBuffer);
  Py_VISIT(st->SharedBytes);
  return 0;
}

static int module_clear(PyObject *m) {
  ac_module_state *st = ac_get_state(m);
  Py_CLEAR(st->ClosedError);
  Py_CLEAR(st->CorruptError);
  Py_CLEAR(st->Region);
  Py_CLEAR(st->BlockBuffer);
  Py_CLEAR(st->SharedBytes);
  return 0;
}

static void module_free(void *m) { module_clear((PyObject *)m); }

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* Safe without the GIL: the state it shares between threads lives in the C core (atomics
     * and futexes, made for processes), and what it reads of Python objects that another thread
     * can change is read under their critical section or through strong references (see
     * binding.h). A free-threaded build keeps its GIL off when it imports this module. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "allcores._core",
    .m_doc = "The allcores C core: shared region, rings, arena, worker processes.",
    .m_size = sizeof(ac_module_state),
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

ac_module_state *ac_get_state(PyObject *module) { return (ac_module_state *)PyModule_GetState(module); }

ac_module_state *ac_state_from_type(PyTypeObject *tp) {
  PyObject *m = PyType_GetModuleByDef(tp, &module_def);
  return m ? ac_get_state(m) : NULL;
}

PyObject *ac_module_from_type(PyTypeObject *tp) { return PyType_GetModuleByDef(tp, &module_def); }

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&module_def); }
