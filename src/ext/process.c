/* process.c: process-level helpers of allcores._core: forking the template, waking it. */
#include "binding.h"

#include <sys/wait.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/template.h"

PyDoc_STRVAR(fork_template__doc__,
"fork_template()\n--\n\n"
"Fork the calling process with CPython's fork hooks (like os.fork) and return the pid, 0 in the\n"
"child. Unlike os.fork it does not warn about other threads: the child only ever runs the C\n"
"template loop and the workers it forks, never code that needs another thread's locks.");

static PyObject *fork_template(PyObject *module, PyObject *Py_UNUSED(ignored)) {
  PyOS_BeforeFork();
  pid_t pid = fork();
  int saved = errno;
  if (pid == 0) {
    PyOS_AfterFork_Child();
    return PyLong_FromLong(0);
  }
  PyOS_AfterFork_Parent();
  if (pid < 0) {
    errno = saved;
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  return PyLong_FromLong(pid);
}

PyDoc_STRVAR(isolate_fds__doc__,
"isolate_fds(keep)\n--\n\n"
"In a template process: replace every pipe and socket but stdin/out/err and the descriptors in\n"
"keep (a sequence of ints) by /dev/null, so the program's pipes and sockets see their peers\n"
"close. Returns how many were replaced.");

static PyObject *isolate_fds(PyObject *module, PyObject *arg) {
  PyObject *seq = PySequence_Fast(arg, "isolate_fds: keep must be a sequence of ints");
  if (!seq) return NULL;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  if (n > 64) n = 64;
  int keep[64];
  for (Py_ssize_t i = 0; i < n; i++) {
    keep[i] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
    if (keep[i] == -1 && PyErr_Occurred()) {
      Py_DECREF(seq);
      return NULL;
    }
  }
  Py_DECREF(seq);
  int rc = ac_template_isolate_fds(keep, (int)n);
  if (rc < 0) return ac_py_raise(module, rc, "isolate_fds");
  return PyLong_FromLong(rc);
}

static PyObject *notify(PyObject *module, PyObject *arg) {
  int fd = (int)PyLong_AsLong(arg);
  if (fd == -1 && PyErr_Occurred()) return NULL;
  int rc = ac_template_notify(fd);
  if (rc) return ac_py_raise(module, rc, "notify");
  Py_RETURN_NONE;
}

static PyObject *now_ns(PyObject *module, PyObject *Py_UNUSED(ignored)) {
  return PyLong_FromLongLong(ac_now_ns());
}

static PyMethodDef process_methods[] = {
    {"fork_template", fork_template, METH_NOARGS, fork_template__doc__},
    {"isolate_fds", isolate_fds, METH_O, isolate_fds__doc__},
    {"notify", notify, METH_O, "notify(fd): wake the template process listening on eventfd fd."},
    {"now_ns", now_ns, METH_NOARGS, "CLOCK_MONOTONIC in nanoseconds (the clock worker records use)."},
    {NULL, NULL, 0, NULL},
};

int acx_register_process(PyObject *m) { return PyModule_AddFunctions(m, process_methods); }
