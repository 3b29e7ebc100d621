/* test-spin.c: the adaptive spin budget: a fresh policy spins the cap, hits keep it, misses
 * halve it down to no spin, and a zero budget is probed again and restored by a hit. */
#include "allcores/spin.h"
#include "task.h"

#define CAP 100000

TEST_IMPL(spin_fresh_policy_spins_the_cap) {
  ac_spin_policy p = {0};
  ASSERT_EQ(ac_spin_budget(&p, CAP), CAP);
  ASSERT_EQ(ac_spin_budget(&p, 0), 0);
  ASSERT_EQ(ac_spin_budget(&p, -5), 0);
}

TEST_IMPL(spin_hits_keep_the_budget_and_misses_halve_it) {
  ac_spin_policy p = {0};
  ac_spin_learn(&p, CAP, CAP, 10000, 1); /* item after 10 µs while spinning 100 */
  ASSERT_EQ(ac_spin_budget(&p, CAP), CAP);
  ac_spin_learn(&p, CAP, CAP, CAP + 50000, 1); /* had to sleep: a miss */
  ASSERT_EQ(ac_spin_budget(&p, CAP), CAP / 2);
  ac_spin_learn(&p, CAP, CAP / 2, CAP, 0); /* timed out */
  ASSERT_EQ(ac_spin_budget(&p, CAP), CAP / 4);
  ac_spin_learn(&p, CAP, CAP / 4, 1000, 1); /* a quick hit keeps what it has */
  ASSERT_EQ(ac_spin_budget(&p, CAP), CAP / 4);
  ac_spin_learn(&p, CAP, CAP / 4, 20000, 1); /* a hit late in the spin raises it to 4x */
  ASSERT_EQ(ac_spin_budget(&p, CAP), 80000);
  ASSERT_EQ(ac_spin_budget(&p, 30000), 30000); /* never above the cap of the call */
}

TEST_IMPL(spin_misses_end_spinning_and_probes_bring_it_back) {
  ac_spin_policy p = {0};
  int64_t spin = ac_spin_budget(&p, CAP);
  for (int i = 0; i < 10 && spin > 0; i++) {
    ac_spin_learn(&p, CAP, spin, spin + 20000, 1);
    spin = ac_spin_budget(&p, CAP);
  }
  ASSERT_EQ(spin, 0);
  /* Every AC_SPIN_PROBE_EVERY-th wait probes with AC_SPIN_PROBE_NS; the rest do not spin. */
  int probes = 0;
  for (int i = 0; i < 4 * AC_SPIN_PROBE_EVERY; i++) {
    int64_t s = ac_spin_budget(&p, CAP);
    if (s) {
      ASSERT_EQ(s, AC_SPIN_PROBE_NS);
      probes++;
      ac_spin_learn(&p, CAP, s, s + 20000, 0); /* a probe that missed changes nothing */
    }
  }
  ASSERT_EQ(probes, 4);
  for (;;) {
    int64_t s = ac_spin_budget(&p, CAP);
    if (!s) continue;
    ac_spin_learn(&p, CAP, s, 3000, 1); /* the probe hit */
    break;
  }
  ASSERT_EQ(ac_spin_budget(&p, CAP), AC_SPIN_PROBE_NS);
}

TEST_IMPL(spin_early_end_teaches_nothing) {
  ac_spin_policy p = {0};
  ac_spin_learn(&p, CAP, CAP, 5000, 0); /* an event ended the wait inside the spin */
  ASSERT_EQ(ac_spin_budget(&p, CAP), CAP);
  ac_spin_learn(&p, CAP, 0, 500000, 0); /* no spin used */
  ASSERT_EQ(ac_spin_budget(&p, CAP), CAP);
}
