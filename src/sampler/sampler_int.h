/* sampler_int.h: what the sampler's files share: its state and the functions one file calls in
 * another. Contract: no Python.h; internal to src/sampler (ac__ names). Every function here runs
 * on the sampling thread with the sampler's lock held, except where it says otherwise. */
#ifndef ALLCORES_SAMPLER_INT_H
#define ALLCORES_SAMPLER_INT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "sampler.h"

#define MAX_THREADS 4096
#define TID_TABLE 8192 /* a power of two, at least twice MAX_THREADS */
#define MAX_INTERPS 64
#define SCAN_PERIOD_NS 50000000LL /* look for threads that have not held the GIL yet */
#define CPU_PERIOD_NS 10000000LL  /* per-thread CPU, schedstat, one point of cores used */
/* Reading /proc costs a few microseconds per thread; proc ticks are spaced out so that they use
 * at most this fraction of one CPU (programs with many threads get fewer state readings). */
#define PROC_BUDGET 0.01
#define MAX_PROC_EVERY 64
#define STOP_LATENCY_NS 20000000LL
/* A tick this late was probably delayed by busy CPUs rather than by the timer. */
#define LATE_NS 50000LL
#define SHORT_SLICE_NS 100000ULL
/* With a cost budget, the interval is re-fitted every BUDGET_WINDOW_NS, up to MAX_STRETCH times
 * the requested one. */
#define BUDGET_WINDOW_NS 50000000LL
#define MAX_STRETCH 10

typedef struct {
  ac_thread_stats st;
  int fd_sys, fd_sched;
  int state;            /* last recorded state (timeline) */
  int obs_state;        /* last observed state, for the look-ahead (sampler_threads.c) */
  int64_t cpu_first;    /* CPU clock when sampling began; 0 for threads born since */
  int64_t runq_first;
  int64_t cpu_obs;      /* CPU clock at the last observation that read it */
  int64_t t_obs;        /* time of the last observation */
  uint64_t sub_tick;    /* the tick at which it last held a subinterpreter's GIL */
  uint32_t pending;     /* readings held back by the look-ahead (see classify) */
  int64_t pending_t;    /* when the first of them was taken */
} slot_t;

typedef struct {
  ac_interp_stats st;
  unsigned long sw0;
  ac_addr_range ranges[4];
  uint64_t seen_tick;
} interp_t;

struct ac_sampler {
  ac_sampler_config cfg;
  ac_gil_layout layout;
  int have_gil;
  long futex_nr;

  pthread_t thread;
  int started, stopped;
  pid_t owner;             /* the process that started the thread: a fork child has no thread */
  int stop_flag;
  pthread_mutex_t lock;    /* guards everything below against snapshot readers */

  pid_t self_tid;
  int64_t t0, t_end;
  int64_t proc_cpu0, proc_cpu_end, self_cpu, self_cpu0;
  uint64_t tick_no, rng;

  /* The main GIL. */
  uint64_t ticks, locked, unresolved, drop_req, proc_ticks, holder_changes;
  unsigned long sw0, sw_last, interval_us;
  int have_sw;
  void *cur_ptr;          /* the holder's thread state and switch number at the last sample */
  unsigned long cur_sw;
  int cur_slot;
  unsigned long ident_sw;  /* the switch number at the last identified hold */
  int have_ident;
  int64_t now;             /* the current tick's time */
  int64_t hold_start, hold_last;
  int hold_pressed;
  int64_t max_hold_pressed;

  int proc_every;
  double proc_cost_ns;
  int64_t interval_ns;            /* the current mean interval: cfg's, stretched by the budget */
  int64_t win_t0, win_cpu0;       /* the budget's current window */
  int priority;                   /* AC_PRIO_*: what raise_priority obtained */
  int64_t late_sum;               /* how late the ticks ran after their timers were due */
  uint64_t late_n, late_over;

  slot_t *slots;
  int nslots;
  int32_t tid_table[TID_TABLE]; /* tid -> newest slot index + 1, linear probing */
  interp_t interps[MAX_INTERPS];
  int ninterps;

  int64_t last_scan, last_cpu;
  ac_buf events, cpu;
};

/* sampler_threads.c: the thread table, thread states, CPU accounting. */
void ac__set_state(ac_sampler *s, int i, int state, int64_t now);
void ac__mark_gone(ac_sampler *s, int i, int64_t now);
/* Returns the slot of a live thread, creating it on first sight; -1 if it is not ours (a stale
 * thread id read from freed memory) or the table is full. */
int ac__slot_for_tid(ac_sampler *s, pid_t tid, int64_t now, int first_scan);
void ac__scan_tasks(ac_sampler *s, int64_t now, int first_scan);
void ac__account_cpu(ac_sampler *s, int64_t now);
/* Reads every live thread's state; `holder` is the main GIL's holder slot (or < 0). */
void ac__observe_threads(ac_sampler *s, int64_t now, int holder);
/* Counts readings held back by the look-ahead as `state`. */
void ac__resolve(ac_sampler *s, int i, int state);

/* sampler_gil.c: reading the GILs. */
/* Samples the main GIL; returns the holder's slot, -1 when free, -2 when held by someone unknown. */
int ac__sample_main(ac_sampler *s, int64_t now);
/* The callback of ac_gil_layout.visit_subinterpreters: samples one own-GIL interpreter. */
void ac__visit_sub(const ac_gil_view *v, void *ctx);
/* Ends the current hold of the main GIL (for the longest-pressed-hold figure). */
void ac__end_hold(ac_sampler *s);

#endif
