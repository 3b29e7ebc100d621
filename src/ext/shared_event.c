/* shared_event.c: allcores._core.Event, a flag in shared memory that processes wait on. */
#include "shared.h"

#include "allcores/shared_sync.h"

typedef struct {
  ACX_VIEW_HEAD
  ac_sevent *e;
} EventObject;

#define EventObject_CAST(op) ((EventObject *)(op))

static PyObject *Event_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"segment", "offset", NULL};
  PyObject *segment;
  Py_ssize_t offset;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "On:Event", kwlist, &segment, &offset)) return NULL;
  char *at = acx__view_at(segment, offset, sizeof(ac_sevent), 8);
  if (!at) return NULL;
  EventObject *self = (EventObject *)acx__view_new(type, segment, offset);
  if (!self) return NULL;
  self->e = (ac_sevent *)at; /* zero is a clear event: nothing to initialize */
  return (PyObject *)self;
}

typedef struct {
  ac_sevent *e;
  uint32_t seen;
} wait_arg;

static int wait_step(void *arg, int64_t timeout_ns, int gil_held) {
  wait_arg *w = arg;
  int rc = ac_sevent_wait(w->e, w->seen, gil_held ? 0 : timeout_ns);
  return rc == 0 ? -EAGAIN : rc;
}

PyDoc_STRVAR(Event_wait__doc__,
"wait($self, timeout=None)\n--\n\n"
"Wait until the event is set, at most timeout seconds (None: no limit). Return True when it\n"
"is set, or was set while waiting; False on timeout.");

static PyObject *Event_wait(PyObject *op, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"timeout", NULL};
  PyObject *timeout = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:wait", kwlist, &timeout)) return NULL;
  int64_t t = acx__timeout_ns(timeout, ACX_NEGATIVE_ZERO);
  if (t == -2) return NULL;
  wait_arg w = {EventObject_CAST(op)->e, ac_sevent_snapshot(EventObject_CAST(op)->e)};
  int rc = acx_wait(wait_step, &w, t);
  if (rc == -EAGAIN || rc == -ETIMEDOUT) Py_RETURN_FALSE;
  if (rc < 0) return ac_py_raise_for(op, rc, "wait");
  Py_RETURN_TRUE;
}

static PyObject *Event_set(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  ac_sevent_set(EventObject_CAST(op)->e);
  Py_RETURN_NONE;
}

static PyObject *Event_clear(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  ac_sevent_clear(EventObject_CAST(op)->e);
  Py_RETURN_NONE;
}

static PyObject *Event_is_set(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  return PyBool_FromLong(ac_sevent_is_set(EventObject_CAST(op)->e));
}

static PyMethodDef Event_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))Event_wait, METH_VARARGS | METH_KEYWORDS,
     Event_wait__doc__},
    {"set", Event_set, METH_NOARGS, "set($self)\n--\n\nSet the flag and wake every waiter."},
    {"clear", Event_clear, METH_NOARGS, "clear($self)\n--\n\nClear the flag."},
    {"is_set", Event_is_set, METH_NOARGS, "is_set($self)\n--\n\nTrue when the flag is set."},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(Event__doc__,
"Event(segment, offset)\n--\n\nAn event flag at offset of a Segment (zeroed memory: clear).");

static PyType_Slot Event_slots[] = {
    {Py_tp_new, Event_new},
    {Py_tp_dealloc, acx__view_dealloc},
    {Py_tp_methods, Event_methods},
    {Py_tp_members, acx__view_members},
    {Py_tp_doc, (void *)Event__doc__},
    {0, NULL},
};

static PyType_Spec Event_spec = {
    .name = "allcores._core.Event",
    .basicsize = sizeof(EventObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Event_slots,
};

int acx__register_event(PyObject *m) {
  PyObject *tp = PyType_FromModuleAndSpec(m, &Event_spec, NULL);
  if (!tp) return -1;
  int rc = PyModule_AddObjectRef(m, "Event", tp);
  Py_DECREF(tp);
  if (rc < 0) return -1;
  return PyModule_AddIntConstant(m, "EVENT_BYTES", sizeof(ac_sevent));
}
