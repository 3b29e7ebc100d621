/* region_template.c: Region.template_serve, the template loop (template.h) run with CPython's
 * fork hooks, so that every worker it forks is a sound CPython process. */
#include "region_object.h"

#include "allcores/template.h"

static void hook_prepare(void *ctx) { PyOS_BeforeFork(); }
static void hook_parent(void *ctx) { PyOS_AfterFork_Parent(); }
static void hook_child(void *ctx) { PyOS_AfterFork_Child(); }

PyObject *acx_region_template_serve(PyObject *op, PyObject *arg) {
  RegionObject *self = RegionObject_CAST(op);
  int fd = (int)PyLong_AsLong(arg);
  if (fd == -1 && PyErr_Occurred()) return NULL;
  if (!self->region.base) return raise_rc(self, AC_ECLOSED, "template_serve");
  ac_fork_hooks hooks = {hook_prepare, hook_parent, hook_child, NULL};
  /* The template is single-threaded and holds the GIL throughout: the fork hooks need it. */
  int rc = ac_template_serve(&self->region, fd, &hooks);
  if (rc >= 0) return PyLong_FromLong(rc);
  if (rc == AC_ECLOSED || rc == AC_EDEAD) Py_RETURN_NONE;
  return raise_rc(self, rc, "template_serve");
}
