/* region_view.c: for interp_host.c (binding.h): the mapping behind a Region object, and a new
 * Region object of another interpreter's module that views that mapping without owning it. */
#include "region_object.h"

#include <unistd.h>

struct ac_region *acx_region_of(PyObject *obj) {
  /* PyType_GetModuleByDef fails (TypeError) for a type that is not one of this module's. */
  ac_module_state *st = ac_state_from_type(Py_TYPE(obj));
  if (!st || !PyObject_TypeCheck(obj, st->Region)) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "expected an allcores._core.Region, not %.100s",
                 Py_TYPE(obj)->tp_name);
    return NULL;
  }
  RegionObject *self = RegionObject_CAST(obj);
  if (!self->region.base) {
    raise_rc(self, AC_ECLOSED, "Region");
    return NULL;
  }
  return &self->region;
}

PyObject *acx_region_view(PyObject *module, const struct ac_region *r) {
  RegionObject *self = (RegionObject *)ac_get_state(module)->Region->tp_alloc(
      ac_get_state(module)->Region, 0);
  if (!self) return NULL;
  self->region = *r;
  self->owner_pid = getpid();
  self->is_view = 1;
  return (PyObject *)self;
}
