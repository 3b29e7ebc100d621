/* sampler.c: the sampling thread and its life: a tick every interval (jittered), the cost budget,
 * the thread's priority, start/stop (fork-safe), and snapshots for the binding. It never takes the
 * GIL and never calls into Python: it reads the GIL's words through the addresses of a gil_view
 * (sampler_gil.c) and everything else from the kernel (sampler_threads.c).
 *
 * Per tick: who holds the main GIL (and each own-GIL subinterpreter's); on proc ticks, what every
 * other thread is doing; every CPU_PERIOD_NS each thread's CPU clock and schedstat, and one point
 * of the process's CPU for the timeline; every SCAN_PERIOD_NS a look for new threads. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cpuclock.h"
#include "proc_task.h"
#include "sampler_int.h"

static void tick(ac_sampler *s, int64_t now) {
  s->tick_no++;
  s->now = now;
  int holder = -1;
  if (s->have_gil) {
    int prev = s->cur_slot;
    holder = ac__sample_main(s, now);
    if (s->layout.visit_subinterpreters && s->layout.has_subinterpreters()) {
      s->layout.visit_subinterpreters(ac__visit_sub, s);
    }
    if (s->tick_no % (uint64_t)s->proc_every != 0 && holder != prev) {
      /* Between proc ticks only the holder is known; the previous one is unknown until read. */
      if (prev >= 0 && s->slots[prev].st.alive) ac__set_state(s, prev, AC_ST_UNKNOWN, now);
      if (holder >= 0) {
        ac__resolve(s, holder, AC_ST_WAITING); /* it took the GIL: it was on its way to it */
        ac__set_state(s, holder, AC_ST_HELD, now);
      }
    }
  }
  if (s->tick_no % (uint64_t)s->proc_every == 0) ac__observe_threads(s, now, holder);
  if (now - s->last_scan >= SCAN_PERIOD_NS) {
    ac__scan_tasks(s, now, 0);
    s->last_scan = now;
  }
  if (now - s->last_cpu >= CPU_PERIOD_NS) {
    ac__account_cpu(s, now);
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
 * short holds (measured: 1-5% held where the threads held it 5-7%). Two remedies, the first that
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
  /* Named so that whoever counts the program's threads (the doctor's poller, top -H) can tell
   * the sampler from them. */
  prctl(PR_SET_NAME, "allcores-gil", 0, 0, 0);
  s->priority = raise_priority(s->cfg.realtime);
  pthread_mutex_lock(&s->lock);
  s->self_tid = (pid_t)syscall(SYS_gettid);
  s->self_cpu0 = ac_self_cpu_ns();
  int64_t now = ac_mono_ns();
  ac__scan_tasks(s, now, 1);
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
      if (until == next) break;
    }
    if (__atomic_load_n(&s->stop_flag, __ATOMIC_ACQUIRE)) break;
    int64_t late = ac_mono_ns() - next;
    pthread_mutex_lock(&s->lock);
    s->late_sum += late;
    s->late_n++;
    if (late > LATE_NS) s->late_over++;
    tick(s, ac_mono_ns());
    pthread_mutex_unlock(&s->lock);
  }
  pthread_mutex_lock(&s->lock);
  now = ac_mono_ns();
  for (int i = 0; i < s->nslots; i++) ac__resolve(s, i, AC_ST_RUNNING); /* the run ended before the next reading */
  ac__account_cpu(s, now);
  if (s->have_gil) ac__end_hold(s);
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
