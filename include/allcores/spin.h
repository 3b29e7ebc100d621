/* spin.h: how long a waiter spins before it sleeps, learnt from how its recent spins ended.
 *
 * Contract: a waiter asks ac_spin_budget() for the spin of its next wait (never above the cap it
 * gives), waits, then reports with ac_spin_learn() what the spin it used bought: the item came
 * while it spun (a hit), or it had to sleep or gave up (a miss). Hits keep or raise the budget
 * (up to four times the wait they saw, at most the cap); each miss halves it, and below
 * AC_SPIN_MIN_NS it becomes zero: the waiter sleeps at once. A zero budget is probed again
 * every AC_SPIN_PROBE_EVERY waits with AC_SPIN_PROBE_NS, so a waiter that stopped spinning under
 * load spins again once the machine is free.
 *
 * Why: spinning pays only while the thread being waited for runs on another core. When a
 * machine has fewer free cores than spinners and the threads they wait for, a spinner holds the
 * very core the other side needs and every wait costs the whole spin: one round trip took
 * 185 µs (instead of 12) with one free core for a parent and two workers. A fixed spin cannot
 * tell these cases apart; its outcome can.
 *
 * One policy per waiter. Updates are relaxed atomics: threads that share a policy (worker
 * threads of one process) may lose each other's updates, which costs at most one wrong guess. */
#ifndef ALLCORES_SPIN_H
#define ALLCORES_SPIN_H

#include <stdatomic.h>
#include <stdint.h>

#define AC_SPIN_MIN_NS 2000
#define AC_SPIN_PROBE_NS 20000
#define AC_SPIN_PROBE_EVERY 16
/* A hit is a wait that ended within the spin and this much more (the spin loop looks at the
 * clock only every few dozen iterations); a sleeper woken by a futex comes back later. */
#define AC_SPIN_HIT_SLACK_NS 1000

/* Zeroed memory is a fresh policy: its first wait spins the whole cap. */
typedef struct {
  _Atomic int64_t budget_ns;
  _Atomic uint32_t learnt; /* 0 until the first ac_spin_learn() */
  _Atomic uint32_t idle_waits;
} ac_spin_policy;

/* The spin for the next wait: at most cap_ns (0 or less: no spin). */
int64_t ac_spin_budget(ac_spin_policy *p, int64_t cap_ns);

/* After a wait that spun spin_ns (what ac_spin_budget gave) and lasted waited_ns: got_item says
 * whether it returned an item (a timeout, an event or an interrupt teaches nothing unless the
 * spin ran out before it). */
void ac_spin_learn(ac_spin_policy *p, int64_t cap_ns, int64_t spin_ns, int64_t waited_ns,
                   int got_item);

#endif
