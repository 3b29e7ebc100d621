/* sampler.h: a thread that never takes the GIL and samples, at a jittered interval, who holds the
 * GIL (through a gil_view), what every other thread of the process is doing (the /proc futex
 * match), and how much CPU each thread and the whole process use.
 * Contract: no Python.h. All functions return 0 or -errno. Counters and records are written by
 * the sampling thread under the sampler's lock; the snapshot functions copy them under the same
 * lock, so they may be called while it runs. A sampler without a layout (layout == NULL, or a
 * layout whose GIL is disabled) still measures per-thread CPU, states and cores used. */
#ifndef ALLCORES_SAMPLER_H
#define ALLCORES_SAMPLER_H

#include <stdint.h>
#include <sys/types.h>

#include "gil_view.h"
#include "timeline.h"

/* What a thread was doing at a sample. */
enum {
  AC_ST_UNKNOWN = 0,
  AC_ST_HELD = 1,    /* holds its interpreter's GIL */
  AC_ST_WAITING = 2, /* blocked on the GIL (its condition, its mutex, or a forced hand-off) */
  AC_ST_RUNNING = 3, /* on a CPU without the GIL: C code that released it */
  AC_ST_BLOCKED = 4, /* in another system call: I/O, sleep, a lock, a join */
  AC_ST_GONE = 5,    /* the thread exited */
};

typedef struct ac_sampler ac_sampler;

typedef struct {
  int64_t interval_ns; /* mean time between samples; each gap is drawn from [0.5, 1.5) of it */
  int timeline;        /* record state changes and CPU points for a timeline */
  size_t max_events;   /* ceiling on recorded state changes */
  double cost_budget;  /* > 0: stretch the interval (up to 10x) to keep the sampler's CPU under
                          this share of one CPU; 0: keep the interval as given */
  int realtime;        /* try the lowest real-time priority (SCHED_FIFO 1) for the thread */
} ac_sampler_config;

/* How the sampling thread is scheduled (see raise_priority in sampler.c). */
enum {
  AC_PRIO_NORMAL = 0,      /* plain: on busy CPUs its samples come late and miss short holds */
  AC_PRIO_SHORT_SLICE = 1, /* a 100 us EEVDF slice (Linux 6.12+): preempts on wake-up */
  AC_PRIO_REALTIME = 2,    /* SCHED_FIFO 1 */
};

/* Totals over the whole run so far. Fractions are computed by the reader. */
typedef struct {
  int64_t wall_ns;            /* since start (to stop, once stopped) */
  int64_t process_cpu_ns;     /* the process's CPU over the same span, the sampler's included */
  int64_t sampler_cpu_ns;     /* the sampler thread's own CPU */
  uint64_t ticks;             /* samples of the main GIL */
  uint64_t locked;            /* samples where it was held */
  uint64_t unresolved;        /* held, but the holder changed while being identified */
  uint64_t drop_request;      /* held with a drop request pending: someone waited >= interval */
  uint64_t proc_ticks;        /* samples that also read every thread's state */
  uint64_t holder_changes;    /* holder changes the sampler saw (<= switches) */
  uint64_t switches;          /* the interpreter's own count over the run */
  uint64_t switch_interval_us; /* the switch interval at the last sample */
  double mean_interval_ns;    /* the sampling interval achieved: wall time over samples */
  int proc_every;             /* samples per thread-state reading, at the end */
  int priority;               /* AC_PRIO_* */
  double late_mean_ns;        /* mean delay of a tick after its timer was due */
  double late_share;          /* share of ticks more than 50 us late (busy CPUs) */
  int64_t max_hold_pressed_ns;/* longest hold during which a drop request was seen */
  int nthreads;               /* entries in the thread table */
  int ninterps;               /* own-GIL subinterpreters seen */
  int have_gil;               /* GIL words were sampled */
  size_t nevents, ncpu;
  int events_truncated;
  pid_t sampler_tid;
} ac_sampler_totals;

typedef struct {
  pid_t tid;
  int alive;
  int held_gil;               /* seen holding some GIL: a Python thread */
  int in_first_scan;          /* existed when sampling started */
  char comm[16];
  int64_t interp_id;          /* interpreter whose GIL it last held */
  uint64_t held, held_sub;    /* samples holding the main GIL / an own-GIL subinterpreter's */
  uint64_t hog;               /* samples holding the main GIL with a drop request pending */
  uint64_t obs, waiting, handoff, running, blocked;  /* per state, over proc ticks */
  int64_t cpu_ns;             /* CPU used while sampled */
  int64_t runq_ns;            /* runnable but not running: starved of a CPU */
  int64_t first_ns, last_ns;  /* when the thread was first and last seen alive */
} ac_thread_stats;

typedef struct {
  int64_t interp_id;
  uint64_t ticks, locked, switches;
} ac_interp_stats;

int ac_sampler_create(ac_sampler **out, const ac_gil_layout *layout, const ac_sampler_config *cfg);
int ac_sampler_start(ac_sampler *s);
/* Stops and joins the sampling thread; the records stay readable. */
int ac_sampler_stop(ac_sampler *s);
void ac_sampler_destroy(ac_sampler *s);

void ac_sampler_totals_get(ac_sampler *s, ac_sampler_totals *t);
/* Copies up to max entries; returns how many were copied. */
int ac_sampler_threads_get(ac_sampler *s, ac_thread_stats *out, int max);
int ac_sampler_interps_get(ac_sampler *s, ac_interp_stats *out, int max);
size_t ac_sampler_events_get(ac_sampler *s, ac_tl_event *out, size_t max);
size_t ac_sampler_cpu_get(ac_sampler *s, ac_tl_cpu *out, size_t max);

#endif
