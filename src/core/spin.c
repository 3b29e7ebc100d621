/* spin.c: the adaptive spin budget of spin.h. */
#include "allcores/spin.h"

#define RELAXED memory_order_relaxed

int64_t ac_spin_budget(ac_spin_policy *p, int64_t cap_ns) {
  if (cap_ns <= 0) return 0;
  if (!atomic_load_explicit(&p->learnt, RELAXED)) return cap_ns;
  int64_t b = atomic_load_explicit(&p->budget_ns, RELAXED);
  if (b == 0) {
    uint32_t n = atomic_fetch_add_explicit(&p->idle_waits, 1, RELAXED) + 1;
    if (n % AC_SPIN_PROBE_EVERY != 0) return 0;
    b = AC_SPIN_PROBE_NS;
  }
  return b < cap_ns ? b : cap_ns;
}

void ac_spin_learn(ac_spin_policy *p, int64_t cap_ns, int64_t spin_ns, int64_t waited_ns,
                   int got_item) {
  if (spin_ns <= 0 || cap_ns <= 0) return;
  int64_t b = atomic_load_explicit(&p->learnt, RELAXED)
                  ? atomic_load_explicit(&p->budget_ns, RELAXED) : cap_ns;
  if (got_item && waited_ns <= spin_ns + AC_SPIN_HIT_SLACK_NS) {
    int64_t want = 4 * waited_ns;
    if (want < AC_SPIN_MIN_NS) want = AC_SPIN_MIN_NS;
    if (b < spin_ns) b = spin_ns; /* a probe that hit brings spinning back */
    if (b < want) b = want;
    if (b > cap_ns) b = cap_ns;
  } else if (waited_ns >= spin_ns) {
    b /= 2;
    if (b < AC_SPIN_MIN_NS) b = 0;
  } else {
    return; /* ended early by an event or a signal: says nothing of the spin */
  }
  atomic_store_explicit(&p->budget_ns, b, RELAXED);
  atomic_store_explicit(&p->learnt, 1, RELAXED);
}
