/* protocol.c: exports the wire protocol's numbers (protocol.h) and the worker states (region.h)
 * to Python, so that allcores._protocol never writes a number of its own. */
#include "binding.h"

#include "allcores/protocol.h"
#include "allcores/region.h"

int acx_register_protocol(PyObject *m) {
  static const struct {
    const char *name;
    long value;
  } constants[] = {
      {"MSG_KIND_MASK", AC_MSG_KIND_MASK}, {"MSG_TRACK", AC_MSG_TRACK},
      {"MSG_OOB", AC_MSG_OOB},             {"TASK_CALL", AC_TASK_CALL},
      {"TASK_CHUNK", AC_TASK_CHUNK},       {"RESULT_OK", AC_RESULT_OK},
      {"RESULT_ERR", AC_RESULT_ERR},       {"RESULT_CHUNK", AC_RESULT_CHUNK},
      {"RESULT_INIT_ERR", AC_RESULT_INIT_ERR}, {"RESULT_UNREADABLE", AC_RESULT_UNREADABLE},
      {"MSG_SEG", AC_MSG_SEG},             {"WORKER_EMPTY", AC_W_EMPTY},
      {"WORKER_SPAWN", AC_W_SPAWN},        {"WORKER_STARTING", AC_W_STARTING},
      {"WORKER_IDLE", AC_W_IDLE},          {"WORKER_EXITED", AC_W_EXITED},
  };
  for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
    if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0) return -1;
  return 0;
}
