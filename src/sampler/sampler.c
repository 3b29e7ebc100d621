/* sampler.c: the sampling thread. It never takes the GIL and never calls into Python: it reads the
 * GIL's words through the addresses of a gil_view, and everything else from the kernel.
 *
 * Per sample (a "tick"): who holds the main GIL (and each own-GIL subinterpreter's); on proc
 * ticks, what every other thread is doing, from /proc/self/task/TID/syscall: a futex on the
 * GIL's condition or mutex means waiting for the GIL. A waiter that was just woken shows
 * "running" before it gets a CPU, so a thread last seen waiting stays waiting until it holds the
 * GIL, enters another system call, or its CPU clock advances by more than half the time since it
 * was last observed (the sticky rule). Every CPU_PERIOD_NS it also reads each thread's CPU clock
 * and schedstat (time runnable without a CPU), and records the process's CPU for the timeline. */
#include "sampler.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cpuclock.h"
#include "proc_task.h"

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
  int obs_state;        /* last observed state, for the sticky rule */
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

static void resolve(ac_sampler *s, int i, int state);

/* ---- the thread table ---- */

static int32_t *tid_cell(ac_sampler *s, pid_t tid) {
  uint32_t h = ((uint32_t)tid * 2654435761u) & (TID_TABLE - 1);
  for (;;) {
    int32_t v = s->tid_table[h];
    if (v == 0 || s->slots[v - 1].st.tid == tid) return &s->tid_table[h];
    h = (h + 1) & (TID_TABLE - 1);
  }
}

static void set_state(ac_sampler *s, int i, int state, int64_t now) {
  slot_t *sl = &s->slots[i];
  if (sl->state == state) return;
  sl->state = state;
  if (!s->cfg.timeline) return;
  ac_tl_event *e = ac_buf_push(&s->events);
  if (e) {
    e->t_ns = now - s->t0;
    e->slot = i;
    e->state = state;
  }
}

static void mark_gone(ac_sampler *s, int i, int64_t now) {
  slot_t *sl = &s->slots[i];
  if (!sl->st.alive) return;
  sl->st.alive = 0;
  close(sl->fd_sys);
  if (sl->fd_sched >= 0) close(sl->fd_sched);
  sl->fd_sys = sl->fd_sched = -1;
  set_state(s, i, AC_ST_GONE, now);
}

/* Returns the slot of a live thread, creating it on first sight; -1 if it is not ours (a stale
 * thread id read from freed memory) or the table is full. */
static int slot_for_tid(ac_sampler *s, pid_t tid, int64_t now, int first_scan) {
  if (tid <= 0 || tid == s->self_tid) return -1;
  int32_t *cell = tid_cell(s, tid);
  if (*cell && s->slots[*cell - 1].st.alive) return *cell - 1;
  if (s->nslots >= MAX_THREADS) return -1;
  int fd = ac_task_open(tid, "syscall");
  if (fd < 0) return -1;
  slot_t *sl = &s->slots[s->nslots];
  memset(sl, 0, sizeof *sl);
  sl->fd_sys = fd;
  sl->fd_sched = ac_task_open(tid, "schedstat");
  sl->st.tid = tid;
  sl->st.alive = 1;
  sl->st.in_first_scan = first_scan;
  sl->st.first_ns = sl->st.last_ns = now - s->t0;
  if (ac_task_comm(tid, sl->st.comm, sizeof sl->st.comm) < 0) sl->st.comm[0] = '\0';
  sl->state = -1;
  /* A thread found after the first scan was born during the run: its clocks started at zero. */
  if (first_scan) {
    int64_t c = ac_thread_cpu_ns(tid), run, runq;
    sl->cpu_first = c > 0 ? c : 0;
    if (sl->fd_sched >= 0 && ac_task_schedstat(sl->fd_sched, &run, &runq) == 0) sl->runq_first = runq;
  }
  sl->cpu_obs = sl->cpu_first;
  sl->t_obs = now;
  *cell = s->nslots + 1;
  return s->nslots++;
}

static void scan_tasks(ac_sampler *s, int64_t now, int first_scan) {
  pid_t tids[MAX_THREADS];
  int n = ac_task_list(tids, MAX_THREADS);
  if (n < 0) return;
  for (int k = 0; k < n; k++) slot_for_tid(s, tids[k], now, first_scan);
}

static void account_cpu(ac_sampler *s, int64_t now) {
  for (int i = 0; i < s->nslots; i++) {
    slot_t *sl = &s->slots[i];
    if (!sl->st.alive) continue;
    int64_t c = ac_thread_cpu_ns(sl->st.tid);
    if (c < 0) {
      resolve(s, i, AC_ST_RUNNING);
      mark_gone(s, i, now);
      continue;
    }
    sl->st.cpu_ns = c - sl->cpu_first;
    int64_t run, runq;
    if (sl->fd_sched >= 0 && ac_task_schedstat(sl->fd_sched, &run, &runq) == 0)
      sl->st.runq_ns = runq - sl->runq_first;
    sl->st.last_ns = now - s->t0;
  }
  int64_t pc = ac_process_cpu_ns();
  s->self_cpu = ac_self_cpu_ns() - s->self_cpu0;
  if (s->cfg.cost_budget > 0 && now - s->win_t0 >= BUDGET_WINDOW_NS) {
    /* Fit the interval so that the sampler's share of one CPU stays near 80% of the budget:
     * a timer wake-up costs 20 us on some VMs and 2 us on bare metal. */
    double share = (double)(s->self_cpu - s->win_cpu0) / (double)(now - s->win_t0);
    double target = (double)s->interval_ns * share / (0.8 * s->cfg.cost_budget);
    double lo = (double)s->cfg.interval_ns, hi = lo * MAX_STRETCH;
    target = target < lo ? lo : target > hi ? hi : target;
    s->interval_ns = (int64_t)(0.5 * (double)s->interval_ns + 0.5 * target);
    s->win_t0 = now;
    s->win_cpu0 = s->self_cpu;
  }
  if (s->cfg.timeline) {
    ac_tl_cpu *p = ac_buf_push(&s->cpu);
    if (p) {
      p->t_ns = now - s->t0;
      p->process_cpu_ns = pc - s->proc_cpu0;
      p->sampler_cpu_ns = s->self_cpu;
    }
  }
}

/* ---- reading a GIL ---- */

/* Identifies the holder of a GIL that was seen locked. A thread state is freed right after its
 * thread's last release, so the thread id read through it counts only if the GIL was still held
 * by the same state, with the same switch count, after the read (a seqlock-style check).
 * Returns 0 and the tid (and eval_breaker word, if wanted), or -1 if the holder moved. */
static int read_holder(const ac_gil_layout *L, const ac_gil_view *v, void **pp, unsigned long *psw, pid_t *tid,
                       uintptr_t *eb) {
  for (int attempt = 0; attempt < 2; attempt++) {
    unsigned long sw = __atomic_load_n(v->switch_number, __ATOMIC_ACQUIRE);
    void *p = __atomic_load_n(v->last_holder, __ATOMIC_ACQUIRE);
    if (p == NULL) continue;
    unsigned long t = __atomic_load_n((const unsigned long *)((const char *)p + L->off_native_tid), __ATOMIC_RELAXED);
    uintptr_t e = 0;
    if (eb && L->has_eval_breaker)
      e = __atomic_load_n((const uintptr_t *)((const char *)p + L->off_eval_breaker), __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(v->locked, __ATOMIC_RELAXED) == 1 && __atomic_load_n(v->last_holder, __ATOMIC_RELAXED) == p &&
        __atomic_load_n(v->switch_number, __ATOMIC_RELAXED) == sw) {
      *pp = p;
      *psw = sw;
      *tid = (pid_t)t;
      if (eb) *eb = e;
      return 0;
    }
  }
  return -1;
}

static void end_hold(ac_sampler *s) {
  if (s->cur_ptr && s->hold_pressed && s->hold_last - s->hold_start > s->max_hold_pressed)
    s->max_hold_pressed = s->hold_last - s->hold_start;
  s->cur_ptr = NULL;
  s->cur_slot = -1;
  s->hold_pressed = 0;
}

/* Samples the main GIL; returns the holder's slot, -1 when free, -2 when held by someone unknown. */
static int sample_main(ac_sampler *s, int64_t now) {
  const ac_gil_layout *L = &s->layout;
  const ac_gil_view *v = &L->main;
  s->ticks++;
  int locked = __atomic_load_n(v->locked, __ATOMIC_ACQUIRE);
  unsigned long sw = __atomic_load_n(v->switch_number, __ATOMIC_RELAXED);
  if (!s->have_sw) {
    s->sw0 = sw;
    s->have_sw = 1;
  }
  s->sw_last = sw;
  s->interval_us = __atomic_load_n(v->interval_us, __ATOMIC_RELAXED);
  if (locked != 1) {
    end_hold(s);
    return -1;
  }
  s->locked++;
  void *p = __atomic_load_n(v->last_holder, __ATOMIC_ACQUIRE);
  int slot;
  uintptr_t eb = 0;
  if (p == s->cur_ptr && sw == s->cur_sw && s->cur_slot >= 0 && !L->has_eval_breaker) {
    slot = s->cur_slot; /* the same hold as last time: the state is alive, no need to re-read */
  } else {
    pid_t tid;
    if (read_holder(L, v, &p, &sw, &tid, &eb) < 0) {
      s->unresolved++;
      return -2;
    }
    slot = slot_for_tid(s, tid, now, 0);
    if (slot < 0) {
      s->unresolved++;
      return -2;
    }
    if (s->have_ident && sw != s->ident_sw) s->holder_changes++;
    s->ident_sw = sw;
    s->have_ident = 1;
    if (p != s->cur_ptr || sw != s->cur_sw) {
      end_hold(s);
      s->cur_ptr = p;
      s->cur_sw = sw;
      s->hold_start = now;
    }
    s->cur_slot = slot;
  }
  s->hold_last = now;
  int drop = v->drop_request ? __atomic_load_n(v->drop_request, __ATOMIC_RELAXED) != 0 : (int)(eb & 1);
  slot_t *sl = &s->slots[slot];
  if (drop) {
    s->drop_req++;
    sl->st.hog++;
    s->hold_pressed = 1;
  }
  sl->st.held++;
  sl->st.held_gil = 1;
  sl->st.interp_id = 0;
  return slot;
}

static void visit_sub(const ac_gil_view *v, void *ctx) {
  ac_sampler *s = ctx;
  interp_t *it = NULL;
  for (int k = 0; k < s->ninterps; k++)
    if (s->interps[k].st.interp_id == v->interp_id) it = &s->interps[k];
  unsigned long sw = __atomic_load_n(v->switch_number, __ATOMIC_RELAXED);
  if (it == NULL) {
    if (s->ninterps >= MAX_INTERPS) return;
    it = &s->interps[s->ninterps++];
    memset(it, 0, sizeof *it);
    it->st.interp_id = v->interp_id;
    it->sw0 = sw;
  }
  it->ranges[0] = v->cond;
  it->ranges[1] = v->mutex;
  it->ranges[2] = v->switch_cond;
  it->ranges[3] = v->switch_mutex;
  it->seen_tick = s->tick_no;
  it->st.ticks++;
  it->st.switches = sw - it->sw0;
  if (__atomic_load_n(v->locked, __ATOMIC_ACQUIRE) != 1) return;
  it->st.locked++;
  void *p;
  pid_t tid;
  if (read_holder(&s->layout, v, &p, &sw, &tid, NULL) < 0) return;
  int slot = slot_for_tid(s, tid, s->now, 0);
  if (slot < 0) return;
  slot_t *sl = &s->slots[slot];
  sl->st.held_sub++;
  sl->st.held_gil = 1;
  sl->st.interp_id = v->interp_id;
  sl->sub_tick = s->tick_no;
}

/* ---- thread states ---- */

static int in_range(ac_addr_range r, uintptr_t a) { return r.len && a >= r.start && a - r.start < r.len; }

/* Whether a futex address belongs to a GIL; *handoff is set for a forced hand-off's wait. */
static int gil_futex(ac_sampler *s, uintptr_t a, int *handoff) {
  const ac_gil_view *v = &s->layout.main;
  *handoff = 0;
  if (in_range(v->cond, a) || in_range(v->mutex, a)) return 1;
  if (in_range(v->switch_cond, a) || in_range(v->switch_mutex, a)) return *handoff = 1;
  for (int k = 0; k < s->ninterps; k++) {
    interp_t *it = &s->interps[k];
    if (it->seen_tick + 1000 < s->tick_no) continue; /* an interpreter that is gone */
    if (in_range(it->ranges[0], a) || in_range(it->ranges[1], a)) return 1;
    if (in_range(it->ranges[2], a) || in_range(it->ranges[3], a)) return *handoff = 1;
  }
  return 0;
}

/* Raw readings of a thread that does not hold a GIL, before the look-ahead below. */
enum { RAW_WAITING = 10, RAW_BLOCKED, RAW_PROGRESS, RAW_STALLED }; /* apart from AC_ST_* */

/* Internal state of a thread whose "running" reading waits for the next one to be classified. */
#define ST_PENDING 100

static int observe(ac_sampler *s, int i, int64_t now) {
  slot_t *sl = &s->slots[i];
  long nr = 0;
  uintptr_t a0 = 0;
  int rc = ac_task_syscall(sl->fd_sys, &nr, &a0);
  if (rc < 0) return -1;
  int handoff = 0;
  if (rc == AC_TASK_SYSCALL && nr == s->futex_nr && s->have_gil && gil_futex(s, a0, &handoff)) {
    if (handoff) sl->st.handoff++;
    if (sl->obs_state != AC_ST_WAITING) {
      int64_t c = ac_thread_cpu_ns(sl->st.tid);
      if (c >= 0) sl->cpu_obs = c;
    }
    return RAW_WAITING;
  }
  if (rc != AC_TASK_RUNNING) return RAW_BLOCKED;
  int64_t c = ac_thread_cpu_ns(sl->st.tid);
  if (c < 0) return RAW_STALLED;
  int raw = c - sl->cpu_obs >= (now - sl->t_obs) / 2 ? RAW_PROGRESS : RAW_STALLED;
  sl->cpu_obs = c;
  return raw;
}

/* Counts the readings held back by the look-ahead as `state`, and draws them from their start. */
static void resolve(ac_sampler *s, int i, int state) {
  slot_t *sl = &s->slots[i];
  if (sl->pending == 0) return;
  if (state == AC_ST_WAITING) sl->st.waiting += sl->pending;
  else sl->st.running += sl->pending;
  set_state(s, i, state, sl->pending_t);
  sl->pending = 0;
}

/* Classifies one reading. A thread seen "running" right after it held or waited for the GIL is
 * usually on its way between the two (woken but not yet on a CPU, or a forced dropper going back
 * to wait), and its CPU clock cannot tell, since it ran while it held the GIL. Such readings are
 * held back until the next one: waiting or holding then means they were waiting; CPU progress
 * without the GIL, or another system call, means the thread was running C code without it. */
static int classify(ac_sampler *s, int i, int raw, int64_t now) {
  slot_t *sl = &s->slots[i];
  int after_gil = sl->pending > 0 || sl->obs_state == AC_ST_HELD || sl->obs_state == AC_ST_WAITING;
  switch (raw) {
  case AC_ST_HELD:
  case RAW_WAITING:
    resolve(s, i, AC_ST_WAITING);
    return raw == RAW_WAITING ? AC_ST_WAITING : AC_ST_HELD;
  case RAW_BLOCKED:
    resolve(s, i, AC_ST_RUNNING);
    return AC_ST_BLOCKED;
  default:
    /* CPU progress measured from a reading that was itself not holding the GIL is real work. */
    if (raw == RAW_PROGRESS && sl->obs_state != AC_ST_HELD) {
      resolve(s, i, AC_ST_RUNNING);
      return AC_ST_RUNNING;
    }
    if (!after_gil) return AC_ST_RUNNING;
    if (sl->pending++ == 0) sl->pending_t = now;
    return ST_PENDING;
  }
}

static void observe_threads(ac_sampler *s, int64_t now, int holder) {
  /* Measure the cost now and then (CPU, not wall: being preempted costs others nothing). */
  int measure = (s->proc_ticks & 7) == 0;
  int64_t c0 = measure ? ac_self_cpu_ns() : 0;
  s->proc_ticks++;
  for (int i = 0; i < s->nslots; i++) {
    slot_t *sl = &s->slots[i];
    if (!sl->st.alive) continue;
    int raw;
    if (i == holder || sl->sub_tick == s->tick_no) {
      raw = AC_ST_HELD;
    } else {
      raw = observe(s, i, now);
      if (raw < 0) {
        resolve(s, i, AC_ST_RUNNING);
        mark_gone(s, i, now);
        continue;
      }
    }
    int state = classify(s, i, raw, now);
    sl->st.obs++;
    if (state == AC_ST_WAITING) sl->st.waiting++;
    else if (state == AC_ST_RUNNING) sl->st.running++;
    else if (state == AC_ST_BLOCKED) sl->st.blocked++;
    sl->obs_state = state;
    sl->t_obs = now;
    if (state != ST_PENDING) set_state(s, i, state, now);
  }
  /* Space proc ticks out when they cost more than the budget. */
  if (!measure) return;
  double cost = (double)(ac_self_cpu_ns() - c0);
  s->proc_cost_ns = s->proc_cost_ns == 0 ? cost : 0.7 * s->proc_cost_ns + 0.3 * cost;
  double budget = PROC_BUDGET * (double)s->interval_ns;
  int every = (int)(s->proc_cost_ns / budget) + 1;
  s->proc_every = every > MAX_PROC_EVERY ? MAX_PROC_EVERY : every;
}

static void tick(ac_sampler *s, int64_t now) {
  s->tick_no++;
  s->now = now;
  int holder = -1;
  if (s->have_gil) {
    int prev = s->cur_slot;
    holder = sample_main(s, now);
    if (s->layout.visit_subinterpreters && s->layout.has_subinterpreters()) {
      s->layout.visit_subinterpreters(visit_sub, s);
    }
    if (s->tick_no % (uint64_t)s->proc_every != 0 && holder != prev) {
      /* Between proc ticks only the holder is known; the previous one is unknown until read. */
      if (prev >= 0 && s->slots[prev].st.alive) set_state(s, prev, AC_ST_UNKNOWN, now);
      if (holder >= 0) {
        resolve(s, holder, AC_ST_WAITING); /* it took the GIL: it was on its way to it */
        set_state(s, holder, AC_ST_HELD, now);
      }
    }
  }
  if (s->tick_no % (uint64_t)s->proc_every == 0) observe_threads(s, now, holder);
  if (now - s->last_scan >= SCAN_PERIOD_NS) {
    scan_tasks(s, now, 0);
    s->last_scan = now;
  }
  if (now - s->last_cpu >= CPU_PERIOD_NS) {
    account_cpu(s, now);
    s->last_cpu = now;
  }
}

/* ---- the thread ---- */

/* sched_setattr(2)'s argument; glibc has no wrapper before 2.41. */
struct sched_attr_v1 {
  uint32_t size, policy;
  uint64_t flags;
  int32_t nice;
  uint32_t priority;
  uint64_t runtime, deadline, period;
};

/* A woken thread of normal priority does not always preempt the running one, so on busy CPUs
 * the sampler ran after a short GIL hold had ended instead of during it, and under-counted
 * short holds (measured: 1-4% held where the threads held it 6%). Two remedies, the first that
 * is allowed: the lowest real-time priority (root, CAP_SYS_NICE, RLIMIT_RTPRIO >= 1), or, for
 * anyone on Linux 6.12+, a 100 us time slice, which lets EEVDF preempt for it on wake-up. Each
 * tick runs a few microseconds, so neither takes CPU from the program. Returns the AC_PRIO_*
 * obtained. */
static int raise_priority(int allow_realtime) {
  if (allow_realtime) {
    struct sched_param sp = {.sched_priority = 1};
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0) return AC_PRIO_REALTIME;
  }
#ifdef SYS_sched_setattr
  struct sched_attr_v1 a = {.size = sizeof a, .policy = SCHED_OTHER, .runtime = SHORT_SLICE_NS};
  if (syscall(SYS_sched_setattr, 0, &a, 0) == 0) {
    struct sched_attr_v1 got = {0};
    /* Kernels before custom slices accept the call and ignore the slice. */
    if (syscall(SYS_sched_getattr, 0, &got, sizeof got, 0) == 0 && got.runtime == SHORT_SLICE_NS)
      return AC_PRIO_SHORT_SLICE;
  }
#endif
  return AC_PRIO_NORMAL;
}

static uint64_t next_random(ac_sampler *s) {
  uint64_t x = s->rng; /* xorshift64: jitter only, so that periodic programs do not alias */
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return s->rng = x;
}

static void *run(void *arg) {
  ac_sampler *s = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are Python's main thread's business */
  /* The default 50 us timer slack lets the kernel fire this thread's timer together with other
   * threads' timers, which lines samples up with the wake-ups of the program's own sleeping
   * threads, before they take the GIL. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  s->priority = raise_priority(s->cfg.realtime);
  pthread_mutex_lock(&s->lock);
  s->self_tid = (pid_t)syscall(SYS_gettid);
  s->self_cpu0 = ac_self_cpu_ns();
  int64_t now = ac_mono_ns();
  scan_tasks(s, now, 1);
  s->last_scan = s->last_cpu = s->win_t0 = now;
  pthread_mutex_unlock(&s->lock);

  int64_t next = now;
  for (;;) {
    /* Each gap is uniform in [0.5, 1.5) intervals: the mean rate is kept, the phase is not. */
    int64_t iv = s->interval_ns;
    int64_t gap = iv / 2 + (int64_t)(next_random(s) % (uint64_t)iv);
    next += gap;
    now = ac_mono_ns();
    if (next < now - 2 * iv) next = now; /* fell behind: do not burst to catch up */
    /* clock_nanosleep costs one system call per tick (a condition variable's timed wait costs
     * two); stop() is noticed within STOP_LATENCY_NS, since long sleeps are cut into pieces. */
    while (!__atomic_load_n(&s->stop_flag, __ATOMIC_ACQUIRE)) {
      int64_t until = next, t = ac_mono_ns();
      if (until - t > STOP_LATENCY_NS) until = t + STOP_LATENCY_NS;
      struct timespec ts = {until / 1000000000LL, until % 1000000000LL};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
      }
      if (until == next) {
        int64_t late = ac_mono_ns() - next;
        s->late_sum += late;
        s->late_n++;
        if (late > LATE_NS) s->late_over++;
        break;
      }
    }
    if (__atomic_load_n(&s->stop_flag, __ATOMIC_ACQUIRE)) break;
    pthread_mutex_lock(&s->lock);
    tick(s, ac_mono_ns());
    pthread_mutex_unlock(&s->lock);
  }
  pthread_mutex_lock(&s->lock);
  now = ac_mono_ns();
  for (int i = 0; i < s->nslots; i++) resolve(s, i, AC_ST_RUNNING); /* the run ended before the next reading */
  account_cpu(s, now);
  if (s->have_gil) end_hold(s);
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

int ac_sampler_create(ac_sampler **out, const ac_gil_layout *layout, const ac_sampler_config *cfg) {
  ac_sampler *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  s->slots = calloc(MAX_THREADS, sizeof *s->slots);
  if (!s->slots) {
    free(s);
    return -ENOMEM;
  }
  s->cfg = *cfg;
  if (s->cfg.interval_ns < 10000) s->cfg.interval_ns = 10000;
  if (s->cfg.max_events == 0) s->cfg.max_events = (size_t)1 << 22;
  if (layout) {
    s->layout = *layout;
    s->have_gil = !layout->gil_disabled && layout->main.locked != NULL;
  }
  s->futex_nr = ac_task_futex_nr();
  s->cur_slot = -1;
  s->proc_every = 1;
  s->interval_ns = s->cfg.interval_ns;
  s->rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)ac_mono_ns();
  ac_buf_init(&s->events, sizeof(ac_tl_event), s->cfg.max_events);
  ac_buf_init(&s->cpu, sizeof(ac_tl_cpu), (size_t)1 << 20);
  pthread_mutex_init(&s->lock, NULL);
  *out = s;
  return 0;
}

int ac_sampler_start(ac_sampler *s) {
  if (s->started) return -EALREADY;
  s->t0 = ac_mono_ns();
  s->proc_cpu0 = ac_process_cpu_ns();
  s->owner = getpid();
  int rc = pthread_create(&s->thread, NULL, run, s);
  if (rc != 0) return -rc;
  s->started = 1;
  return 0;
}

/* In a child forked while sampling, the thread does not exist and the lock may have been copied
 * held: the child neither joins nor locks, and sees the records as they were at the fork. */
static int forked(ac_sampler *s) { return s->started && s->owner != getpid(); }

static void lock(ac_sampler *s) {
  if (!forked(s)) pthread_mutex_lock(&s->lock);
}

static void unlock(ac_sampler *s) {
  if (!forked(s)) pthread_mutex_unlock(&s->lock);
}

int ac_sampler_stop(ac_sampler *s) {
  if (!s->started || s->stopped) return 0;
  if (forked(s)) {
    s->t_end = ac_mono_ns();
    s->proc_cpu_end = s->proc_cpu0; /* the parent's CPU is not this process's */
    s->stopped = 1;
    return 0;
  }
  __atomic_store_n(&s->stop_flag, 1, __ATOMIC_RELEASE);
  pthread_join(s->thread, NULL);
  s->t_end = ac_mono_ns();
  s->proc_cpu_end = ac_process_cpu_ns();
  s->stopped = 1;
  return 0;
}

void ac_sampler_destroy(ac_sampler *s) {
  if (!s) return;
  ac_sampler_stop(s);
  for (int i = 0; i < s->nslots; i++)
    if (s->slots[i].st.alive) {
      close(s->slots[i].fd_sys);
      if (s->slots[i].fd_sched >= 0) close(s->slots[i].fd_sched);
    }
  ac_buf_free(&s->events);
  ac_buf_free(&s->cpu);
  if (!forked(s)) pthread_mutex_destroy(&s->lock);
  free(s->slots);
  free(s);
}

/* ---- snapshots ---- */

void ac_sampler_totals_get(ac_sampler *s, ac_sampler_totals *t) {
  memset(t, 0, sizeof *t);
  lock(s);
  int64_t end = s->stopped ? s->t_end : ac_mono_ns();
  int64_t pc = s->stopped ? s->proc_cpu_end : ac_process_cpu_ns();
  t->wall_ns = s->started ? end - s->t0 : 0;
  t->process_cpu_ns = s->started ? pc - s->proc_cpu0 : 0;
  t->sampler_cpu_ns = s->self_cpu;
  t->ticks = s->ticks;
  t->locked = s->locked;
  t->unresolved = s->unresolved;
  t->drop_request = s->drop_req;
  t->proc_ticks = s->proc_ticks;
  t->holder_changes = s->holder_changes;
  t->switches = s->sw_last - s->sw0;
  t->switch_interval_us = s->interval_us;
  t->mean_interval_ns = s->ticks ? (double)(s->stopped ? s->t_end - s->t0 : ac_mono_ns() - s->t0) / (double)s->ticks : 0;
  t->proc_every = s->proc_every;
  t->priority = s->priority;
  t->late_mean_ns = s->late_n ? (double)s->late_sum / (double)s->late_n : 0;
  t->late_share = s->late_n ? (double)s->late_over / (double)s->late_n : 0;
  t->max_hold_pressed_ns = s->max_hold_pressed;
  t->nthreads = s->nslots;
  t->ninterps = s->ninterps;
  t->have_gil = s->have_gil;
  t->nevents = s->events.count;
  t->ncpu = s->cpu.count;
  t->events_truncated = s->events.truncated;
  t->sampler_tid = s->self_tid;
  unlock(s);
}

int ac_sampler_threads_get(ac_sampler *s, ac_thread_stats *out, int max) {
  lock(s);
  int n = s->nslots < max ? s->nslots : max;
  for (int i = 0; i < n; i++) out[i] = s->slots[i].st;
  unlock(s);
  return n;
}

int ac_sampler_interps_get(ac_sampler *s, ac_interp_stats *out, int max) {
  lock(s);
  int n = s->ninterps < max ? s->ninterps : max;
  for (int i = 0; i < n; i++) out[i] = s->interps[i].st;
  unlock(s);
  return n;
}

static size_t copy_buf(ac_sampler *s, ac_buf *b, void *out, size_t max) {
  lock(s);
  size_t n = b->count < max ? b->count : max;
  if (n) memcpy(out, b->data, n * b->elem);
  unlock(s);
  return n;
}

size_t ac_sampler_events_get(ac_sampler *s, ac_tl_event *out, size_t max) { return copy_buf(s, &s->events, out, max); }
size_t ac_sampler_cpu_get(ac_sampler *s, ac_tl_cpu *out, size_t max) { return copy_buf(s, &s->cpu, out, max); }
