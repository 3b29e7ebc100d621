/* gil_module.c: the allcores._gil extension: a Sampler type over sampler.c. It only translates:
 * it runs the layout's self-test with the GIL held, starts and stops the sampling thread, and
 * turns snapshots into Python objects (timelines as raw bytes, parsed by allcores.gil). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>

#include "gil_layout.h"
#include "sampler.h"

typedef struct {
  PyTypeObject *Sampler;
} gil_state;

typedef struct {
  PyObject_HEAD
  ac_sampler *s;
  int layout_ok;
  char layout_error[256];
  ac_gil_layout layout;
  int started;
} SamplerObject;

#define SamplerObject_CAST(op) ((SamplerObject *)(op))

static PyObject *raise_rc(int rc, const char *what) {
  errno = -rc;
  PyErr_SetFromErrno(PyExc_OSError);
  (void)what;
  return NULL;
}

static int Sampler_init(PyObject *op, PyObject *args, PyObject *kw) {
  SamplerObject *self = SamplerObject_CAST(op);
  static char *kwlist[] = {"interval_us", "switch_interval_us", "timeline", "use_layout", "max_events", "cost_budget",
                           "realtime", NULL};
  double interval_us = 1000;
  unsigned long switch_us = 0;
  int timeline = 1, use_layout = 1;
  Py_ssize_t max_events = 0;
  double budget = 0;
  int realtime = 1;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|dkppndp:Sampler", kwlist, &interval_us, &switch_us, &timeline,
                                   &use_layout, &max_events, &budget, &realtime))
    return -1;
  if (self->s) {
    PyErr_SetString(PyExc_RuntimeError, "Sampler already initialized");
    return -1;
  }
  if (!(interval_us >= 10 && interval_us <= 10e6)) {
    PyErr_SetString(PyExc_ValueError, "interval_us must be between 10 and 10,000,000");
    return -1;
  }
  if (use_layout) {
    self->layout_ok = ac_gil_layout_init(&self->layout, switch_us, self->layout_error, sizeof self->layout_error) == 0;
  } else {
    snprintf(self->layout_error, sizeof self->layout_error, "the GIL layout was not requested");
  }
  ac_sampler_config cfg = {.interval_ns = (int64_t)(interval_us * 1000), .timeline = timeline,
                           .max_events = (size_t)(max_events > 0 ? max_events : 0),
                           .cost_budget = budget > 0 && budget < 1 ? budget : 0,
                           .realtime = realtime};
  int rc = ac_sampler_create(&self->s, self->layout_ok ? &self->layout : NULL, &cfg);
  if (rc < 0) {
    raise_rc(rc, "Sampler");
    return -1;
  }
  return 0;
}

static void Sampler_dealloc(PyObject *op) {
  SamplerObject *self = SamplerObject_CAST(op);
  PyTypeObject *tp = Py_TYPE(op);
  if (self->s) {
    ac_sampler *s = self->s;
    self->s = NULL;
    Py_BEGIN_ALLOW_THREADS
    ac_sampler_destroy(s);
    Py_END_ALLOW_THREADS
  }
  tp->tp_free(op);
  Py_DECREF(tp);
}

static ac_sampler *get(SamplerObject *self) {
  if (!self->s) PyErr_SetString(PyExc_RuntimeError, "Sampler is not initialized");
  return self->s;
}

PyDoc_STRVAR(Sampler_start__doc__, "start($self, /)\n--\n\nStarts the sampling thread (once).");
static PyObject *Sampler_start(PyObject *op, PyObject *unused) {
  SamplerObject *self = SamplerObject_CAST(op);
  ac_sampler *s = get(self);
  if (!s) return NULL;
  int rc = ac_sampler_start(s);
  if (rc == -EALREADY) {
    PyErr_SetString(PyExc_RuntimeError, "a Sampler can be started only once");
    return NULL;
  }
  if (rc < 0) return raise_rc(rc, "start");
  Py_RETURN_NONE;
}

PyDoc_STRVAR(Sampler_stop__doc__, "stop($self, /)\n--\n\nStops and joins the sampling thread; the data stay.");
static PyObject *Sampler_stop(PyObject *op, PyObject *unused) {
  ac_sampler *s = get(SamplerObject_CAST(op));
  if (!s) return NULL;
  Py_BEGIN_ALLOW_THREADS
  ac_sampler_stop(s);
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

#define SET(d, key, expr)                                   \
  do {                                                      \
    PyObject *v_ = (expr);                                  \
    if (!v_ || PyDict_SetItemString(d, key, v_) < 0) {      \
      Py_XDECREF(v_);                                       \
      Py_DECREF(d);                                         \
      return NULL;                                          \
    }                                                       \
    Py_DECREF(v_);                                          \
  } while (0)

PyDoc_STRVAR(Sampler_totals__doc__, "totals($self, /)\n--\n\nThe run's counters so far, as a dict.");
static PyObject *Sampler_totals(PyObject *op, PyObject *unused) {
  ac_sampler *s = get(SamplerObject_CAST(op));
  if (!s) return NULL;
  ac_sampler_totals t;
  ac_sampler_totals_get(s, &t);
  PyObject *d = PyDict_New();
  if (!d) return NULL;
  SET(d, "wall_ns", PyLong_FromLongLong(t.wall_ns));
  SET(d, "process_cpu_ns", PyLong_FromLongLong(t.process_cpu_ns));
  SET(d, "sampler_cpu_ns", PyLong_FromLongLong(t.sampler_cpu_ns));
  SET(d, "ticks", PyLong_FromUnsignedLongLong(t.ticks));
  SET(d, "locked", PyLong_FromUnsignedLongLong(t.locked));
  SET(d, "unresolved", PyLong_FromUnsignedLongLong(t.unresolved));
  SET(d, "drop_request", PyLong_FromUnsignedLongLong(t.drop_request));
  SET(d, "proc_ticks", PyLong_FromUnsignedLongLong(t.proc_ticks));
  SET(d, "holder_changes", PyLong_FromUnsignedLongLong(t.holder_changes));
  SET(d, "switches", PyLong_FromUnsignedLongLong(t.switches));
  SET(d, "switch_interval_us", PyLong_FromUnsignedLongLong(t.switch_interval_us));
  SET(d, "mean_interval_ns", PyFloat_FromDouble(t.mean_interval_ns));
  SET(d, "proc_every", PyLong_FromLong(t.proc_every));
  SET(d, "priority", PyUnicode_FromString(t.priority == AC_PRIO_REALTIME      ? "realtime"
                                           : t.priority == AC_PRIO_SHORT_SLICE ? "short-slice"
                                                                               : "normal"));
  SET(d, "late_mean_ns", PyFloat_FromDouble(t.late_mean_ns));
  SET(d, "late_share", PyFloat_FromDouble(t.late_share));
  SET(d, "max_hold_pressed_ns", PyLong_FromLongLong(t.max_hold_pressed_ns));
  SET(d, "have_gil", PyBool_FromLong(t.have_gil));
  SET(d, "events_truncated", PyBool_FromLong(t.events_truncated));
  SET(d, "sampler_tid", PyLong_FromLong(t.sampler_tid));
  return d;
}

PyDoc_STRVAR(Sampler_threads__doc__, "threads($self, /)\n--\n\nPer-thread counters, one dict per thread seen.");
static PyObject *Sampler_threads(PyObject *op, PyObject *unused) {
  ac_sampler *s = get(SamplerObject_CAST(op));
  if (!s) return NULL;
  ac_sampler_totals t;
  ac_sampler_totals_get(s, &t);
  int cap = t.nthreads + 64; /* threads may appear between the two calls */
  ac_thread_stats *buf = PyMem_Malloc(sizeof *buf * (size_t)cap);
  if (!buf) return PyErr_NoMemory();
  int n = ac_sampler_threads_get(s, buf, cap);
  PyObject *list = PyList_New(0);
  for (int i = 0; list && i < n; i++) {
    ac_thread_stats *x = &buf[i];
    PyObject *d = Py_BuildValue(
        "{s:i,s:O,s:O,s:O,s:s,s:L,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:L,s:L,s:L,s:L}", "tid", (int)x->tid, "alive",
        x->alive ? Py_True : Py_False, "held_gil", x->held_gil ? Py_True : Py_False, "in_first_scan",
        x->in_first_scan ? Py_True : Py_False, "comm", x->comm, "interp_id", (long long)x->interp_id, "held",
        (unsigned long long)x->held, "held_sub", (unsigned long long)x->held_sub, "hog", (unsigned long long)x->hog,
        "obs", (unsigned long long)x->obs, "waiting", (unsigned long long)x->waiting, "handoff",
        (unsigned long long)x->handoff, "running", (unsigned long long)x->running, "blocked",
        (unsigned long long)x->blocked, "cpu_ns", (long long)x->cpu_ns, "runq_ns", (long long)x->runq_ns, "first_ns",
        (long long)x->first_ns, "last_ns", (long long)x->last_ns);
    if (!d || PyList_Append(list, d) < 0) Py_CLEAR(list);
    Py_XDECREF(d);
  }
  PyMem_Free(buf);
  return list;
}

PyDoc_STRVAR(Sampler_interpreters__doc__,
             "interpreters($self, /)\n--\n\nOwn-GIL subinterpreters seen: dicts of id, ticks, locked, switches.");
static PyObject *Sampler_interpreters(PyObject *op, PyObject *unused) {
  ac_sampler *s = get(SamplerObject_CAST(op));
  if (!s) return NULL;
  ac_interp_stats buf[64];
  int n = ac_sampler_interps_get(s, buf, 64);
  PyObject *list = PyList_New(0);
  for (int i = 0; list && i < n; i++) {
    PyObject *d = Py_BuildValue("{s:L,s:K,s:K,s:K}", "id", (long long)buf[i].interp_id, "ticks",
                                (unsigned long long)buf[i].ticks, "locked", (unsigned long long)buf[i].locked,
                                "switches", (unsigned long long)buf[i].switches);
    if (!d || PyList_Append(list, d) < 0) Py_CLEAR(list);
    Py_XDECREF(d);
  }
  return list;
}

/* Copies a record buffer into a bytes object sized by a first count, re-trimmed to what came. */
static PyObject *records(SamplerObject *self, int cpu) {
  ac_sampler *s = get(self);
  if (!s) return NULL;
  ac_sampler_totals t;
  ac_sampler_totals_get(s, &t);
  size_t elem = cpu ? sizeof(ac_tl_cpu) : sizeof(ac_tl_event);
  size_t cap = (cpu ? t.ncpu : t.nevents) + 4096;
  PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(cap * elem));
  if (!b) return NULL;
  size_t n = cpu ? ac_sampler_cpu_get(s, (ac_tl_cpu *)PyBytes_AS_STRING(b), cap)
                 : ac_sampler_events_get(s, (ac_tl_event *)PyBytes_AS_STRING(b), cap);
  if (_PyBytes_Resize(&b, (Py_ssize_t)(n * elem)) < 0) return NULL;
  return b;
}

PyDoc_STRVAR(Sampler_events__doc__,
             "events($self, /)\n--\n\nState changes as packed native (int64 t_ns, int32 slot, int32 state) records.");
static PyObject *Sampler_events(PyObject *op, PyObject *unused) { return records(SamplerObject_CAST(op), 0); }

PyDoc_STRVAR(Sampler_cpu_points__doc__,
             "cpu_points($self, /)\n--\n\nCPU over time as packed (int64 t_ns, process_cpu_ns, sampler_cpu_ns).");
static PyObject *Sampler_cpu_points(PyObject *op, PyObject *unused) { return records(SamplerObject_CAST(op), 1); }

static PyObject *Sampler_get_layout_ok(PyObject *op, void *c) { return PyBool_FromLong(SamplerObject_CAST(op)->layout_ok); }

static PyObject *Sampler_get_layout_error(PyObject *op, void *c) {
  SamplerObject *self = SamplerObject_CAST(op);
  if (self->layout_ok) Py_RETURN_NONE;
  return PyUnicode_FromString(self->layout_error);
}

static PyObject *Sampler_get_gil_disabled(PyObject *op, void *c) {
  SamplerObject *self = SamplerObject_CAST(op);
  return PyBool_FromLong(self->layout_ok && self->layout.gil_disabled);
}

static PyMethodDef Sampler_methods[] = {
    {"start", Sampler_start, METH_NOARGS, Sampler_start__doc__},
    {"stop", Sampler_stop, METH_NOARGS, Sampler_stop__doc__},
    {"totals", Sampler_totals, METH_NOARGS, Sampler_totals__doc__},
    {"threads", Sampler_threads, METH_NOARGS, Sampler_threads__doc__},
    {"interpreters", Sampler_interpreters, METH_NOARGS, Sampler_interpreters__doc__},
    {"events", Sampler_events, METH_NOARGS, Sampler_events__doc__},
    {"cpu_points", Sampler_cpu_points, METH_NOARGS, Sampler_cpu_points__doc__},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Sampler_getset[] = {
    {"layout_ok", Sampler_get_layout_ok, NULL, "Whether the GIL layout passed its self-test.", NULL},
    {"layout_error", Sampler_get_layout_error, NULL, "Why the layout is not used (None when it is).", NULL},
    {"gil_disabled", Sampler_get_gil_disabled, NULL, "A free-threaded build running without the GIL.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Sampler__doc__,
             "Sampler(interval_us=1000, switch_interval_us=0, timeline=True, use_layout=True, max_events=0,\n"
             "        cost_budget=0.0, realtime=True)\n--\n\n"
             "A thread that samples the GIL and this process's threads without taking the GIL.\n"
             "switch_interval_us is sys.getswitchinterval() in microseconds, for the layout's self-test;\n"
             "cost_budget > 0 stretches the interval to keep the sampler under that share of one CPU;\n"
             "realtime tries the lowest real-time priority for the sampling thread.");

static PyType_Slot Sampler_slots[] = {
    {Py_tp_doc, (void *)Sampler__doc__},
    {Py_tp_init, Sampler_init},
    {Py_tp_dealloc, Sampler_dealloc},
    {Py_tp_methods, Sampler_methods},
    {Py_tp_getset, Sampler_getset},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec Sampler_spec = {
    .name = "allcores._gil.Sampler",
    .basicsize = sizeof(SamplerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Sampler_slots,
};

static int module_exec(PyObject *m) {
  gil_state *st = PyModule_GetState(m);
  st->Sampler = (PyTypeObject *)PyType_FromModuleAndSpec(m, &Sampler_spec, NULL);
  if (!st->Sampler || PyModule_AddType(m, st->Sampler) < 0) return -1;
  if (PyModule_AddIntConstant(m, "PY_MINOR", ac_gil_layout_py_minor()) < 0) return -1;
  if (PyModule_AddIntConstant(m, "ST_UNKNOWN", AC_ST_UNKNOWN) < 0 || PyModule_AddIntConstant(m, "ST_HELD", AC_ST_HELD) < 0 ||
      PyModule_AddIntConstant(m, "ST_WAITING", AC_ST_WAITING) < 0 ||
      PyModule_AddIntConstant(m, "ST_RUNNING", AC_ST_RUNNING) < 0 ||
      PyModule_AddIntConstant(m, "ST_BLOCKED", AC_ST_BLOCKED) < 0 || PyModule_AddIntConstant(m, "ST_GONE", AC_ST_GONE) < 0)
    return -1;
  return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg) {
  gil_state *st = PyModule_GetState(m);
  Py_VISIT(st->Sampler);
  return 0;
}

static int module_clear(PyObject *m) {
  gil_state *st = PyModule_GetState(m);
  Py_CLEAR(st->Sampler);
  return 0;
}

static void module_free(void *m) { module_clear((PyObject *)m); }

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "allcores._gil",
    .m_doc = "The GIL sampler: a C thread that reads the GIL's state without taking it.",
    .m_size = sizeof(gil_state),
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__gil(void) { return PyModuleDef_Init(&module_def); }
