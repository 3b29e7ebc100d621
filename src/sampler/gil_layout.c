/* gil_layout.c: the only file that sees CPython's internal structures. It is compiled against the
 * headers of the Python being built (one build per minor version) and exports plain addresses and
 * offsets, so the sampler itself never includes Python.h.
 *
 * Py_BUILD_CORE_MODULE, not Py_BUILD_CORE: with the latter, internal inlines that touch the
 * current thread state reference _Py_tss_tstate, which libpython does not export (3.12, 3.13),
 * and the module fails to import. */
#define Py_BUILD_CORE_MODULE 1
#include <Python.h>
#include <stddef.h> /* 3.11's internal headers use offsetof without including it */

#include "internal/pycore_gil.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_pystate.h"
#include "internal/pycore_runtime.h"
#if PY_VERSION_HEX >= 0x030D0000
#include "internal/pycore_ceval.h"
/* The sampler reads the drop request as bit 0 of the holder's eval_breaker (3.13, 3.14, 3.15):
 * a version that moves it must fail to build here, not mislead the meter. */
_Static_assert(_PY_GIL_DROP_REQUEST_BIT == 1, "the GIL drop request is no longer eval_breaker bit 0");
#endif

#include <stdio.h>

#include "gil_layout.h"

#define RANGE(field) ((ac_addr_range){(uintptr_t) & (field), sizeof(field)})

static struct _gil_runtime_state *gil_of(PyInterpreterState *interp) {
#if PY_VERSION_HEX >= 0x030C0000
  return interp->ceval.gil;
#else
  (void)interp;
  return &_PyRuntime.ceval.gil; /* one GIL per process before 3.12 */
#endif
}

static void fill_view(ac_gil_view *v, PyInterpreterState *interp, struct _gil_runtime_state *g) {
  /* The atomic wrapper types of 3.11/3.12 hold the plain value as their only member, so a
   * pointer to the wrapper is a pointer to the value. */
  v->locked = (const int *)&g->locked;
  v->last_holder = (void *const *)&g->last_holder;
  v->switch_number = &g->switch_number;
  v->interval_us = &g->interval;
#if PY_VERSION_HEX >= 0x030D0000
  v->drop_request = NULL; /* moved to the holder's eval_breaker */
#else
  v->drop_request = (const int *)&interp->ceval.gil_drop_request;
#endif
  v->cond = RANGE(g->cond);
  v->mutex = RANGE(g->mutex);
#ifdef FORCE_SWITCHING
  v->switch_cond = RANGE(g->switch_cond);
  v->switch_mutex = RANGE(g->switch_mutex);
#else
  v->switch_cond = (ac_addr_range){0, 0};
  v->switch_mutex = (ac_addr_range){0, 0};
#endif
  v->interp_id = (int64_t)interp->id;
}

static int has_subinterpreters(void) {
  _PyRuntimeState *rt = &_PyRuntime;
  PyInterpreterState *head = __atomic_load_n(&rt->interpreters.head, __ATOMIC_RELAXED);
  return head != NULL && head != rt->interpreters.main;
}

#if PY_VERSION_HEX >= 0x030C0000
/* The interpreter list is freed under this lock, so views stay valid while it is held. The
 * internal HEAD_LOCK of 3.13 inlines a call to an unexported function; PyMutex_Lock is exported
 * and does not need a thread state. */
static void list_lock(_PyRuntimeState *rt) {
#if PY_VERSION_HEX >= 0x030D0000
  PyMutex_Lock(&rt->interpreters.mutex);
#else
  PyThread_acquire_lock(rt->interpreters.mutex, WAIT_LOCK);
#endif
}

static void list_unlock(_PyRuntimeState *rt) {
#if PY_VERSION_HEX >= 0x030D0000
  PyMutex_Unlock(&rt->interpreters.mutex);
#else
  PyThread_release_lock(rt->interpreters.mutex);
#endif
}

static int visit_subinterpreters(ac_gil_visit_fn visit, void *ctx) {
  _PyRuntimeState *rt = &_PyRuntime;
  int n = 0;
  list_lock(rt);
  for (PyInterpreterState *i = rt->interpreters.head; i != NULL; i = i->next) {
    if (i == rt->interpreters.main || !i->ceval.own_gil || i->ceval.gil == NULL) continue;
    ac_gil_view v;
    fill_view(&v, i, i->ceval.gil);
    visit(&v, ctx);
    n++;
  }
  list_unlock(rt);
  return n;
}
#endif

int ac_gil_layout_py_minor(void) { return PY_MINOR_VERSION; }

int ac_gil_layout_init(ac_gil_layout *out, unsigned long expected_interval_us, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->py_minor = PY_MINOR_VERSION;
  out->off_native_tid = offsetof(PyThreadState, native_thread_id);
#if PY_VERSION_HEX >= 0x030D0000
  out->off_eval_breaker = offsetof(PyThreadState, eval_breaker);
  out->has_eval_breaker = 1;
#endif
  out->has_subinterpreters = has_subinterpreters;
#if PY_VERSION_HEX >= 0x030C0000
  out->visit_subinterpreters = visit_subinterpreters;
#endif

  PyThreadState *me = PyThreadState_Get();
  PyInterpreterState *interp = PyInterpreterState_Get();
  if (interp != PyInterpreterState_Main()) {
    snprintf(err, errlen, "the meter must be started from the main interpreter");
    return -1;
  }
  struct _gil_runtime_state *g = gil_of(interp);
  if (g == NULL) {
    snprintf(err, errlen, "the interpreter has no GIL state");
    return -1;
  }
#ifdef Py_GIL_DISABLED
  if (__atomic_load_n(&g->enabled, __ATOMIC_RELAXED) == 0) {
    out->gil_disabled = 1;
    return 0;
  }
#endif
  fill_view(&out->main, interp, g);

  /* The self-test: the calling thread holds the GIL, so each word must say so. A layout that
   * compiled against other headers than the running interpreter's fails here. */
  int locked = __atomic_load_n(out->main.locked, __ATOMIC_ACQUIRE);
  void *holder = __atomic_load_n(out->main.last_holder, __ATOMIC_RELAXED);
  unsigned long interval = __atomic_load_n(out->main.interval_us, __ATOMIC_RELAXED);
  unsigned long tid = *(const unsigned long *)((const char *)me + out->off_native_tid);
  if (locked != 1) {
    snprintf(err, errlen, "self-test: gil->locked is %d while this thread holds the GIL", locked);
    return -1;
  }
  if (holder != (void *)me) {
    snprintf(err, errlen, "self-test: gil->last_holder is not the current thread state");
    return -1;
  }
  if (interval != expected_interval_us) {
    snprintf(err, errlen, "self-test: gil->interval is %lu, sys.getswitchinterval() says %lu", interval,
             expected_interval_us);
    return -1;
  }
  if (tid != PyThread_get_thread_native_id()) {
    snprintf(err, errlen, "self-test: native_thread_id offset does not match this thread");
    return -1;
  }
  if (out->main.drop_request != NULL) {
    int dr = __atomic_load_n(out->main.drop_request, __ATOMIC_RELAXED);
    if (dr != 0 && dr != 1) {
      snprintf(err, errlen, "self-test: gil_drop_request holds %d", dr);
      return -1;
    }
  }
  return 0;
}
