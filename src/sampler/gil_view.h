/* gil_view.h: where one interpreter's GIL lives, as plain addresses and offsets.
 * Contract: no Python.h. The per-version layout (gil_layout.c) fills these structures while the
 * GIL is held; the sampler reads the words they point to from a thread that never takes the
 * GIL, with atomic loads, and never dereferences a thread-state pointer without validating it
 * afterwards (see sampler.c). Address ranges are only compared, never dereferenced. */
#ifndef ALLCORES_GIL_VIEW_H
#define ALLCORES_GIL_VIEW_H

#include <stddef.h>
#include <stdint.h>

/* A [start, start+len) range of addresses that a waiter passes to futex(). */
typedef struct {
  uintptr_t start;
  size_t len;
} ac_addr_range;

typedef struct ac_gil_view {
  const int *locked;                  /* 1 held, 0 free, -1 not created yet */
  void *const *last_holder;           /* a PyThreadState*, valid only while locked == 1 */
  const unsigned long *switch_number; /* incremented when a different thread takes the GIL */
  const unsigned long *interval_us;   /* sys.getswitchinterval() in microseconds */
  const int *drop_request;            /* 3.11/3.12: the interpreter's gil_drop_request; NULL on 3.13+ */
  ac_addr_range cond;                 /* waiters for the GIL sleep here */
  ac_addr_range mutex;                /* contention on the GIL's mutex is waiting too */
  ac_addr_range switch_cond;          /* a forced hand-off: the dropper waits for the taker */
  ac_addr_range switch_mutex;
  int64_t interp_id;                  /* 0 for the main interpreter */
} ac_gil_view;

typedef struct ac_gil_layout ac_gil_layout;

/* Called once per own-GIL subinterpreter by ac_gil_layout.visit_subinterpreters, while the
 * runtime's interpreter list is locked (so the view's memory stays valid during the call). */
typedef void (*ac_gil_visit_fn)(const ac_gil_view *view, void *ctx);

struct ac_gil_layout {
  int py_minor;               /* the CPython 3.x this layout was compiled against */
  int gil_disabled;           /* 1 on a free-threaded build running without the GIL */
  ac_gil_view main;           /* the main interpreter's GIL */
  size_t off_native_tid;      /* offsetof(PyThreadState, native_thread_id) */
  size_t off_eval_breaker;    /* 3.13+: the holder's eval_breaker, whose bit 0 is the drop request */
  int has_eval_breaker;       /* whether off_eval_breaker is meaningful */
  /* Returns 1 when subinterpreters exist besides the main one (a racy, safe read). */
  int (*has_subinterpreters)(void);
  /* Locks the runtime's interpreter list, calls visit for each own-GIL subinterpreter, unlocks.
   * Returns how many were visited. NULL where subinterpreters cannot own a GIL (3.11). */
  int (*visit_subinterpreters)(ac_gil_visit_fn visit, void *ctx);
};

#endif
