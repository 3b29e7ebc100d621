/* sampler_threads.c: the sampler's table of this process's threads: finding them, reading what
 * each is doing from /proc (the futex match, with a look-ahead for "running" readings), their
 * CPU clocks and schedstat, and the state changes recorded for the timeline. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpuclock.h"
#include "proc_task.h"
#include "sampler_int.h"

/* ---- the thread table ---- */

static int32_t *tid_cell(ac_sampler *s, pid_t tid) {
  uint32_t h = ((uint32_t)tid * 2654435761u) & (TID_TABLE - 1);
  for (;;) {
    int32_t v = s->tid_table[h];
    if (v == 0 || s->slots[v - 1].st.tid == tid) return &s->tid_table[h];
    h = (h + 1) & (TID_TABLE - 1);
  }
}

void ac__set_state(ac_sampler *s, int i, int state, int64_t now) {
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

void ac__mark_gone(ac_sampler *s, int i, int64_t now) {
  slot_t *sl = &s->slots[i];
  if (!sl->st.alive) return;
  sl->st.alive = 0;
  close(sl->fd_sys);
  if (sl->fd_sched >= 0) close(sl->fd_sched);
  sl->fd_sys = sl->fd_sched = -1;
  ac__set_state(s, i, AC_ST_GONE, now);
}

/* Returns the slot of a live thread, creating it on first sight; -1 if it is not ours (a stale
 * thread id read from freed memory) or the table is full. */
int ac__slot_for_tid(ac_sampler *s, pid_t tid, int64_t now, int first_scan) {
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

void ac__scan_tasks(ac_sampler *s, int64_t now, int first_scan) {
  pid_t tids[MAX_THREADS];
  int n = ac_task_list(tids, MAX_THREADS);
  if (n < 0) return;
  for (int k = 0; k < n; k++) ac__slot_for_tid(s, tids[k], now, first_scan);
}

void ac__account_cpu(ac_sampler *s, int64_t now) {
  for (int i = 0; i < s->nslots; i++) {
    slot_t *sl = &s->slots[i];
    if (!sl->st.alive) continue;
    int64_t c = ac_thread_cpu_ns(sl->st.tid);
    if (c < 0) {
      ac__resolve(s, i, AC_ST_RUNNING);
      ac__mark_gone(s, i, now);
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
void ac__resolve(ac_sampler *s, int i, int state) {
  slot_t *sl = &s->slots[i];
  if (sl->pending == 0) return;
  if (state == AC_ST_WAITING) sl->st.waiting += sl->pending;
  else sl->st.running += sl->pending;
  ac__set_state(s, i, state, sl->pending_t);
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
    ac__resolve(s, i, AC_ST_WAITING);
    return raw == RAW_WAITING ? AC_ST_WAITING : AC_ST_HELD;
  case RAW_BLOCKED:
    ac__resolve(s, i, AC_ST_RUNNING);
    return AC_ST_BLOCKED;
  default:
    /* CPU progress measured from a reading that was itself not holding the GIL is real work. */
    if (raw == RAW_PROGRESS && sl->obs_state != AC_ST_HELD) {
      ac__resolve(s, i, AC_ST_RUNNING);
      return AC_ST_RUNNING;
    }
    if (!after_gil) return AC_ST_RUNNING;
    if (sl->pending++ == 0) sl->pending_t = now;
    return ST_PENDING;
  }
}

void ac__observe_threads(ac_sampler *s, int64_t now, int holder) {
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
        ac__resolve(s, i, AC_ST_RUNNING);
        ac__mark_gone(s, i, now);
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
    if (state != ST_PENDING) ac__set_state(s, i, state, now);
  }
  /* Space proc ticks out when they cost more than the budget. */
  if (!measure) return;
  double cost = (double)(ac_self_cpu_ns() - c0);
  s->proc_cost_ns = s->proc_cost_ns == 0 ? cost : 0.7 * s->proc_cost_ns + 0.3 * cost;
  double budget = PROC_BUDGET * (double)s->interval_ns;
  int every = (int)(s->proc_cost_ns / budget) + 1;
  s->proc_every = every > MAX_PROC_EVERY ? MAX_PROC_EVERY : every;
}
