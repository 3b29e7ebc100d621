/* sampler_gil.c: reading a GIL's words from the sampling thread, which never holds it: who holds
 * it (validated against the switch count, since a holder's thread state may be freed), the drop
 * request (GIL-hog pressure), and own-GIL subinterpreters' GILs. */
#include <string.h>

#include "sampler_int.h"

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

void ac__end_hold(ac_sampler *s) {
  if (s->cur_ptr && s->hold_pressed && s->hold_last - s->hold_start > s->max_hold_pressed)
    s->max_hold_pressed = s->hold_last - s->hold_start;
  s->cur_ptr = NULL;
  s->cur_slot = -1;
  s->hold_pressed = 0;
}

/* Samples the main GIL; returns the holder's slot, -1 when free, -2 when held by someone unknown. */
int ac__sample_main(ac_sampler *s, int64_t now) {
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
    ac__end_hold(s);
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
    slot = ac__slot_for_tid(s, tid, now, 0);
    if (slot < 0) {
      s->unresolved++;
      return -2;
    }
    if (s->have_ident && sw != s->ident_sw) s->holder_changes++;
    s->ident_sw = sw;
    s->have_ident = 1;
    if (p != s->cur_ptr || sw != s->cur_sw) {
      ac__end_hold(s);
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

void ac__visit_sub(const ac_gil_view *v, void *ctx) {
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
  int slot = ac__slot_for_tid(s, tid, s->now, 0);
  if (slot < 0) return;
  slot_t *sl = &s->slots[slot];
  sl->st.held_sub++;
  sl->st.held_gil = 1;
  sl->st.interp_id = v->interp_id;
  sl->sub_tick = s->tick_no;
}
