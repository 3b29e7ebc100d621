/* interp_host.c: allcores._core.InterpWorker, a pool worker that runs in a subinterpreter with its
 * own GIL (PEP 684) on the calling OS thread, for Pool(backend="interpreter").
 *
 * Contract: run() creates an isolated interpreter on the calling thread, gives it a Region that
 * views the caller's shared region, runs allcores._interp.sub_main there (the same worker loop as
 * a process worker, on the same rings), ends the interpreter and returns. The caller's GIL is
 * released for the whole run. No object crosses between interpreters: only the region's mapping
 * (plain C memory) and bytes copied into C buffers. interrupt() schedules KeyboardInterrupt in the
 * task the worker is running, from any thread. disown_arg_parsers(), called at exit, works around
 * a CPython 3.12.0-3.12.3 bug that made the process abort there (see below).
 * Python 3.12 and later; on 3.11 the type exists and run() raises RuntimeError. */
#include "binding.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "allcores/region.h"

#define EXIT_BOOT_FAILED 70 /* EX_SOFTWARE: the interpreter could not start the worker loop */

/* Creating and ending interpreters one at a time, process-wide: CPython 3.12 and 3.13 have had
 * races between concurrent creations and finalizations (gh-105699, pybind11#5779), and both are
 * rare (a pool's start, maxtasksperchild). Never waited for while holding a GIL: creation needs
 * the main GIL, which another thread waiting here may hold otherwise. */
#if PY_VERSION_HEX >= 0x030C0000
static pthread_mutex_t lifecycle_lock = PTHREAD_MUTEX_INITIALIZER;
#endif

typedef struct {
  PyObject_HEAD
  /* Guards interp and thread_id. Never taken while holding a subinterpreter's GIL: interrupt()
   * holds it while it waits for that GIL. */
  pthread_mutex_t lock;
  PyInterpreterState *interp; /* non-NULL while a run's interpreter is alive */
  unsigned long thread_id;    /* the OS thread running it */
  int running;                /* a run() is in progress (a worker runs once at a time) */
} InterpWorkerObject;

#define InterpWorkerObject_CAST(op) ((InterpWorkerObject *)(op))

static PyObject *InterpWorker_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
    PyErr_SetString(PyExc_TypeError, "InterpWorker() takes no arguments");
    return NULL;
  }
  InterpWorkerObject *self = (InterpWorkerObject *)type->tp_alloc(type, 0);
  if (!self) return NULL;
  pthread_mutex_init(&self->lock, NULL);
  return (PyObject *)self;
}

static void InterpWorker_dealloc(PyObject *op) {
  InterpWorkerObject *self = InterpWorkerObject_CAST(op);
  PyTypeObject *tp = Py_TYPE(op);
  pthread_mutex_destroy(&self->lock);
  tp->tp_free(op);
  Py_DECREF(tp);
}

#if PY_VERSION_HEX >= 0x030C0000

#if PY_VERSION_HEX >= 0x030D0000
#define current_tstate_unchecked PyThreadState_GetUnchecked
#else
#define current_tstate_unchecked _PyThreadState_UncheckedGet
#endif

/* Publishes (or clears) the running interpreter. Called with the interpreter's GIL held: it is
 * released while the lock is taken, so that an interrupt() waiting for that GIL can finish. */
static void publish(InterpWorkerObject *self, PyInterpreterState *interp) {
  PyThreadState *ts = PyEval_SaveThread();
  pthread_mutex_lock(&self->lock);
  self->interp = interp;
  self->thread_id = PyThread_get_thread_ident();
  pthread_mutex_unlock(&self->lock);
  PyEval_RestoreThread(ts);
}

/* CPython 3.12.0-3.12.3 (gh-119213; fixed by gh-119425, merged before 3.12.4): the keyword
 * tuple of an Argument Clinic parser (`_PyArg_Parser.kwtuple`, a static of a shared stdlib
 * module such as _pickle or _hashlib) is created on the first call that passes keywords, by the
 * interpreter making that call. When that is an isolated subinterpreter, the tuple comes from its
 * own object allocator; at exit the main interpreter frees it (_PyArg_Fini) with the main one,
 * which hands the foreign pointer to libc: "free(): invalid pointer", exit status 134. Our
 * workers make such first calls (pickle.loads(stream, buffers=...) on a big argument) and so do
 * tasks (hashlib, zlib.compress(data, level=1)). The memory itself stays valid (3.12 never
 * frees a subinterpreter's arenas, gh-113055), so the cure is to keep the main interpreter from
 * freeing those tuples: a parser whose `initialized` is -1 does not own its tuple, and
 * _PyArg_Fini leaves it alone. What is disowned: every parser initialized since the first worker
 * interpreter started (a few hundred bytes each, left to the process's end).
 *
 * The parsers initialized so far form a list whose newest node is the head (under CPython's
 * getargs lock; a node's `next` never changes until _PyArg_Fini). A probe, a parser without
 * keywords whose tuple is the static empty one (so the probe never owns it), is linked at the
 * head by its first use: the nodes after it are those initialized before it. */
#if PY_VERSION_HEX < 0x030D0000
#define PARSERS_NEED_CARE() (Py_Version < 0x030C0400)

static _PyArg_Parser *parsers_before_workers; /* the probe linked before the first worker */

/* Links a new probe at the head of CPython's parser list and returns it (NULL with an exception
 * set). The probe stays in the list, so it is never freed. The caller holds a GIL. */
static _PyArg_Parser *link_probe(void) {
  static const char *const no_keywords[] = {NULL};
  _PyArg_Parser *probe = PyMem_RawCalloc(1, sizeof *probe);
  if (!probe) {
    PyErr_NoMemory();
    return NULL;
  }
  probe->keywords = no_keywords;
  probe->fname = "allcores parser probe";
  probe->kwtuple = PyTuple_New(0); /* the immortal empty tuple, shared by every interpreter */
  PyObject *unused[1];
  if (!probe->kwtuple || !_PyArg_UnpackKeywords(NULL, 0, NULL, NULL, probe, 0, 0, 0, unused)) {
    PyMem_RawFree(probe); /* not linked: parser_init failed before linking it */
    return NULL;
  }
  return probe;
}

/* Before a worker's interpreter starts (the main GIL held, which orders the workers' calls). */
static int mark_parsers(void) {
  if (!PARSERS_NEED_CARE() || parsers_before_workers) return 0;
  parsers_before_workers = link_probe();
  return parsers_before_workers ? 0 : -1;
}

/* At exit, once the worker interpreters ended: disowns the parsers initialized since the first
 * worker started. Returns how many, or -1 with an exception set. */
static long disown_parsers(void) {
  if (!PARSERS_NEED_CARE() || !parsers_before_workers) return 0;
  _PyArg_Parser *probe = link_probe();
  if (!probe) return -1;
  long n = 0;
  for (_PyArg_Parser *p = probe->next; p && p != parsers_before_workers; p = p->next) {
    if (p->initialized == 1) { /* it owns its tuple: _PyArg_Fini would free it */
      p->initialized = -1;     /* still nonzero, "initialized", to every reader */
      n++;
    }
  }
  return n;
}
#else
static int mark_parsers(void) { return 0; }
static long disown_parsers(void) { return 0; }
#endif

/* The pending exception with its traceback, as a malloc'ed UTF-8 string; clears it. */
static char *take_error_text(void) {
  PyObject *exc = PyErr_GetRaisedException();
  PyObject *tb = PyImport_ImportModule("traceback");
  PyObject *lines = tb && exc ? PyObject_CallMethod(tb, "format_exception", "O", exc) : NULL;
  PyObject *empty = lines ? PyUnicode_FromString("") : NULL;
  PyObject *text = empty ? PyUnicode_Join(empty, lines) : NULL;
  const char *s = text ? PyUnicode_AsUTF8(text) : NULL;
  char *out = strdup(s ? s : "the subinterpreter failed and its error could not be formatted");
  PyErr_Clear();
  Py_XDECREF(text);
  Py_XDECREF(empty);
  Py_XDECREF(lines);
  Py_XDECREF(tb);
  Py_XDECREF(exc);
  return out;
}

/* Runs in the new interpreter (its GIL held): boot is pickle.dumps((sys.path, payload)) from the
 * parent; sys.path first, so that the worker imports what the parent would. Returns the worker's
 * wait status; *error gets a malloc'ed traceback when the worker could not run. */
static int run_worker(const ac_region *r, unsigned int k, const char *boot, Py_ssize_t boot_len,
                      char **error) {
  int status = EXIT_BOOT_FAILED << 8;
  long code;
  PyObject *pickle = NULL, *loaded = NULL, *core = NULL, *view = NULL, *mod = NULL, *ret = NULL;
  PyObject *path, *payload; /* borrowed from loaded */
  if (!(pickle = PyImport_ImportModule("pickle"))) goto error;
  if (!(loaded = PyObject_CallMethod(pickle, "loads", "y#", boot, boot_len))) goto error;
  if (!PyArg_ParseTuple(loaded, "O!O:boot", &PyList_Type, &path, &payload)) goto error;
  if (PySys_SetObject("path", path) < 0) goto error;
  if (!(core = PyImport_ImportModule("allcores._core"))) goto error;
  if (!(view = acx_region_view(core, r))) goto error;
  if (!(mod = PyImport_ImportModule("allcores._interp"))) goto error;
  if (!(ret = PyObject_CallMethod(mod, "sub_main", "OIO", view, k, payload))) goto error;
  code = PyLong_AsLong(ret);
  if (code == -1 && PyErr_Occurred()) goto error;
  status = (int)(code & 0xff) << 8;
  goto done;
error:
  if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
    /* An interrupt() that reached the worker between tasks: it ends, and is replaced if the
     * pool goes on. */
    PyErr_Clear();
    status = 0;
  } else {
    *error = take_error_text();
  }
done:
  Py_XDECREF(ret);
  Py_XDECREF(mod);
  Py_XDECREF(view);
  Py_XDECREF(core);
  Py_XDECREF(loaded);
  Py_XDECREF(pickle);
  return status;
}

PyDoc_STRVAR(InterpWorker_run__doc__,
"run($self, region, k, boot, /)\n--\n\n"
"Run worker slot k of region in a new isolated subinterpreter (its own GIL) on this thread, until\n"
"the worker loop returns; then end the interpreter. boot is pickle.dumps((sys.path, payload)).\n"
"Returns (wait_status, error) where error is None or the traceback of a worker that could not run.");

static PyObject *InterpWorker_run(PyObject *op, PyObject *args) {
  InterpWorkerObject *self = InterpWorkerObject_CAST(op);
  PyObject *region;
  unsigned int k;
  Py_buffer boot;
  if (!PyArg_ParseTuple(args, "OIy*:run", &region, &k, &boot)) return NULL;
  struct ac_region *owner = acx_region_of(region);
  if (!owner) {
    PyBuffer_Release(&boot);
    return NULL;
  }
  if (k >= owner->hdr->nworkers) {
    PyBuffer_Release(&boot);
    return PyErr_Format(PyExc_IndexError, "worker index %u out of range", k);
  }
  if (mark_parsers() < 0) {
    PyBuffer_Release(&boot);
    return NULL;
  }
  /* Copies: nothing of this interpreter may be touched from the other one. `region` itself stays
   * alive (the caller's reference), so the mapping outlives the run. */
  ac_region r = *owner;
  Py_ssize_t boot_len = boot.len;
  char *boot_copy = malloc(boot_len ? (size_t)boot_len : 1);
  if (!boot_copy) {
    PyBuffer_Release(&boot);
    return PyErr_NoMemory();
  }
  memcpy(boot_copy, boot.buf, (size_t)boot_len);
  PyBuffer_Release(&boot);

  pthread_mutex_lock(&self->lock);
  int busy = self->running;
  self->running = 1;
  pthread_mutex_unlock(&self->lock);
  if (busy) {
    free(boot_copy);
    PyErr_SetString(PyExc_RuntimeError, "this InterpWorker is already running");
    return NULL;
  }

  /* The values of CPython's private _PyInterpreterConfig_INIT (isolated): own GIL and object
   * allocator, so only extensions declaring per-interpreter GIL support load. */
  const PyInterpreterConfig cfg = {
      .use_main_obmalloc = 0,
      .allow_fork = 0,
      .allow_exec = 0,
      .allow_threads = 1,
      .allow_daemon_threads = 0,
      .check_multi_interp_extensions = 1,
      .gil = PyInterpreterConfig_OWN_GIL,
  };
  PyThreadState *main_ts = PyThreadState_Get();
  PyThreadState *sub = NULL;
  Py_BEGIN_ALLOW_THREADS
  pthread_mutex_lock(&lifecycle_lock);
  Py_END_ALLOW_THREADS
  PyStatus st = Py_NewInterpreterFromConfig(&sub, &cfg);
  pthread_mutex_unlock(&lifecycle_lock);
  if (PyStatus_Exception(st)) {
    /* CPython swaps back to the caller's thread state on failure; make sure of it. */
    if (current_tstate_unchecked() != main_ts) PyEval_RestoreThread(main_ts);
    free(boot_copy);
    pthread_mutex_lock(&self->lock);
    self->running = 0;
    pthread_mutex_unlock(&self->lock);
    return PyErr_Format(PyExc_RuntimeError, "cannot create a subinterpreter: %s",
                        st.err_msg ? st.err_msg : "unknown error");
  }
  /* Here: the caller's GIL is released, the new interpreter's GIL is held, `sub` is current. */
  publish(self, PyThreadState_GetInterpreter(sub));
  char *error = NULL;
  int status = run_worker(&r, k, boot_copy, boot_len, &error);
  publish(self, NULL);
  /* An interrupt() that came too late for the worker must not fire while the interpreter ends. */
  PyThreadState_SetAsyncExc(PyThread_get_thread_ident(), NULL);
  PyThreadState *ts = PyEval_SaveThread();
  pthread_mutex_lock(&lifecycle_lock);
  PyEval_RestoreThread(ts);
  Py_EndInterpreter(sub); /* returns with no thread state and no GIL */
  pthread_mutex_unlock(&lifecycle_lock);
  PyEval_RestoreThread(main_ts);
  free(boot_copy);
  pthread_mutex_lock(&self->lock);
  self->running = 0;
  pthread_mutex_unlock(&self->lock);
  PyObject *out = Py_BuildValue("(is)", status, error);
  free(error);
  return out;
}

PyDoc_STRVAR(InterpWorker_interrupt__doc__,
"interrupt($self, /)\n--\n\n"
"Raise KeyboardInterrupt in the worker's interpreter at its next bytecode (a task blocked in C\n"
"code sees it when the call returns). Returns False when no interpreter is running.");

static PyObject *InterpWorker_interrupt(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  InterpWorkerObject *self = InterpWorkerObject_CAST(op);
  int done = 0;
  PyThreadState *main_ts = PyEval_SaveThread();
  pthread_mutex_lock(&self->lock);
  if (self->interp) {
    /* A thread state of our own in that interpreter (never the worker's: a thread state belongs
     * to one OS thread); the interpreter cannot end meanwhile, its worker needs the lock first. */
    PyThreadState *ts = PyThreadState_New(self->interp);
    if (ts) {
      PyEval_RestoreThread(ts);
      /* KeyboardInterrupt is a static type, shared by every interpreter. */
      done = PyThreadState_SetAsyncExc(self->thread_id, PyExc_KeyboardInterrupt) > 0;
      PyThreadState_Clear(ts);
      PyThreadState_DeleteCurrent();
    }
  }
  pthread_mutex_unlock(&self->lock);
  PyEval_RestoreThread(main_ts);
  return PyBool_FromLong(done);
}

#else /* Python 3.11: no per-interpreter GIL */

static long disown_parsers(void) { return 0; }

static PyObject *InterpWorker_run(PyObject *op, PyObject *args) {
  PyErr_SetString(PyExc_RuntimeError, "subinterpreters with their own GIL need Python 3.12+");
  return NULL;
}

static PyObject *InterpWorker_interrupt(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  Py_RETURN_FALSE;
}

PyDoc_STRVAR(InterpWorker_run__doc__, "run($self, region, k, boot, /)\n--\n\nNeeds Python 3.12+.");
PyDoc_STRVAR(InterpWorker_interrupt__doc__, "interrupt($self, /)\n--\n\nNeeds Python 3.12+.");

#endif

PyDoc_STRVAR(disown_arg_parsers__doc__,
"disown_arg_parsers()\n--\n\n"
"Python 3.12.0-3.12.3 (a no-op elsewhere): keeps the main interpreter from freeing at exit the\n"
"keyword tuples of argument parsers initialized since the first worker interpreter started (a\n"
"subinterpreter made some with its own allocator: CPython gh-119213). Call it at exit, after the\n"
"worker interpreters ended. Returns how many parsers it disowned.");

static PyObject *disown_arg_parsers(PyObject *module, PyObject *Py_UNUSED(ignored)) {
  long n = disown_parsers();
  return n < 0 ? NULL : PyLong_FromLong(n);
}

static PyMethodDef interp_functions[] = {
    {"disown_arg_parsers", disown_arg_parsers, METH_NOARGS, disown_arg_parsers__doc__},
    {NULL, NULL, 0, NULL},
};

static PyObject *InterpWorker_get_running(PyObject *op, void *closure) {
  InterpWorkerObject *self = InterpWorkerObject_CAST(op);
  pthread_mutex_lock(&self->lock);
  int running = self->running;
  pthread_mutex_unlock(&self->lock);
  return PyBool_FromLong(running);
}

static PyMethodDef InterpWorker_methods[] = {
    {"run", InterpWorker_run, METH_VARARGS, InterpWorker_run__doc__},
    {"interrupt", InterpWorker_interrupt, METH_NOARGS, InterpWorker_interrupt__doc__},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef InterpWorker_getset[] = {
    {"running", InterpWorker_get_running, NULL, "True while run() is in progress.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot InterpWorker_slots[] = {
    {Py_tp_new, InterpWorker_new},
    {Py_tp_dealloc, InterpWorker_dealloc},
    {Py_tp_methods, InterpWorker_methods},
    {Py_tp_getset, InterpWorker_getset},
    {Py_tp_doc, "InterpWorker()\n--\n\n"
                "A pool worker slot served by a subinterpreter with its own GIL (Python 3.12+)."},
    {0, NULL},
};

static PyType_Spec InterpWorker_spec = {
    .name = "allcores._core.InterpWorker",
    .basicsize = sizeof(InterpWorkerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = InterpWorker_slots,
};

int acx_register_interp(PyObject *m) {
  PyObject *type = PyType_FromModuleAndSpec(m, &InterpWorker_spec, NULL);
  if (!type) return -1;
  int rc = PyModule_AddObjectRef(m, "InterpWorker", type);
  Py_DECREF(type);
  return rc < 0 ? rc : PyModule_AddFunctions(m, interp_functions);
}
