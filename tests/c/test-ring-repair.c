/* test-ring-repair.c: a producer or consumer that dies between claiming a slot and finishing
 * with it. First each window set up by hand, then real processes SIGKILLed at random points of
 * a push or pop loop, with every message accounted for afterwards. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/errors.h"
#include "allcores/ring.h"
#include "task.h"

static ac_ring *new_ring(uint64_t cap) {
  ac_ring *r = ac_test_shared(ac_ring_bytes(cap));
  ASSERT_OK(ac_ring_init(r, cap, 1));
  return r;
}

static int push_u64(ac_ring *r, uint64_t v) {
  ac_msg m = {.id = v, .len = sizeof v, .kind = 7};
  return ac_ring_try_push(r, &m, &v, NULL);
}

/* What a producer killed between its compare-and-swap and its publish leaves: a claimed slot. */
static uint64_t claim_push_by_hand(ac_ring *r) {
  uint64_t pos = atomic_load(&r->enqueue_pos);
  ASSERT(atomic_compare_exchange_strong(&r->enqueue_pos, &pos, pos + 1));
  return pos + 1;
}

/* What a consumer killed between its compare-and-swap and its release leaves. */
static uint64_t claim_pop_by_hand(ac_ring *r) {
  uint64_t pos = atomic_load(&r->dequeue_pos);
  ASSERT(atomic_compare_exchange_strong(&r->dequeue_pos, &pos, pos + 1));
  return pos + 1;
}

TEST_IMPL(ring_repair_push_after_producer_death) {
  ac_ring *r = new_ring(4);
  ASSERT_OK(push_u64(r, 1));
  uint64_t claim = claim_push_by_hand(r);
  ASSERT_OK(push_u64(r, 3)); /* a later producer publishes behind the stuck slot */
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
  ASSERT_EQ(m.id, 1);
  ASSERT_EQ(ac_ring_try_pop(r, &m, buf, NULL), -EAGAIN); /* wedged behind the dead claim */
  ASSERT_EQ(ac_ring_repair_push(r, claim), 1);
  ASSERT_EQ(ac_ring_repair_push(r, claim), 0); /* idempotent */
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
  ASSERT_EQ(m.id, 3); /* the tombstone was skipped */
  for (int round = 0; round < 3; round++) { /* and every slot still cycles */
    for (uint64_t i = 0; i < 4; i++) ASSERT_OK(push_u64(r, 10 + i));
    for (uint64_t i = 0; i < 4; i++) {
      ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
      ASSERT_EQ(m.id, 10 + i);
    }
  }
}

TEST_IMPL(ring_repair_push_leaves_other_claims_alone) {
  ac_ring *r = new_ring(4);
  ASSERT_EQ(ac_ring_repair_push(r, 0), 0); /* no claim */
  uint64_t pos = atomic_load(&r->enqueue_pos);
  ASSERT_EQ(ac_ring_repair_push(r, pos + 1), 0); /* recorded, but the CAS never happened */
  ASSERT_EQ(ac_ring_len(r), 0);
  ASSERT_OK(push_u64(r, 1));
  ASSERT_EQ(ac_ring_repair_push(r, pos + 1), 0); /* died after publishing */
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
  ASSERT_EQ(m.id, 1);
  ASSERT_EQ(ac_ring_repair_push(r, pos + 1), 0); /* ... and the message was consumed */
  ASSERT_OK(push_u64(r, 2));
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
  ASSERT_EQ(m.id, 2);
}

/* Tombstones are invisible to every kind of consumer, also one asleep in pop_wait. */
TEST_IMPL(ring_tombstones_are_skipped_by_waiting_consumers) {
  ac_ring *r = new_ring(8);
  uint64_t c1 = claim_push_by_hand(r), c2 = claim_push_by_hand(r);
  ASSERT_EQ(ac_ring_repair_push(r, c1), 1);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_ring_pop_wait(r, &m, buf, NULL, 1000000, 0, NULL), -ETIMEDOUT);
  pid_t pid = fork();
  if (pid == 0) {
    int rc = ac_ring_pop_wait(r, &m, buf, NULL, -1, 0, NULL);
    _exit(rc == 0 && m.id == 9 && m.kind == 7 ? 0 : 1);
  }
  while (atomic_load(&r->consumers_sleeping) == 0) usleep(1000);
  ASSERT_EQ(ac_ring_repair_push(r, c2), 1); /* wakes the sleeper, which skips it, sleeps on */
  usleep(10000);
  ASSERT_OK(push_u64(r, 9));
  ASSERT_EXITED(ac_test_wait(pid, 5000), 0);
  ASSERT_EQ(ac_ring_len(r), 0);
}

TEST_IMPL(ring_repair_pop_recovers_untaken_message) {
  ac_ring *r = new_ring(4);
  ASSERT_OK(push_u64(r, 11));
  ASSERT_OK(push_u64(r, 12));
  uint64_t claim = claim_pop_by_hand(r);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_ring_repair_pop(r, claim, &m, buf), 1);
  ASSERT_EQ(m.id, 11);
  uint64_t v;
  memcpy(&v, buf, 8);
  ASSERT_EQ(v, 11);
  ASSERT_EQ(ac_ring_repair_pop(r, claim, &m, buf), 0); /* idempotent */
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
  ASSERT_EQ(m.id, 12);
  for (int i = 0; i < 4; i++) ASSERT_OK(push_u64(r, 20 + i)); /* the slot is usable again */
  ASSERT_EQ(push_u64(r, 99), -EAGAIN);
}

TEST_IMPL(ring_repair_pop_leaves_other_claims_alone) {
  ac_ring *r = new_ring(4);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_ring_repair_pop(r, 0, &m, buf), 0);
  uint64_t pos = atomic_load(&r->dequeue_pos);
  ASSERT_OK(push_u64(r, 1));
  ASSERT_EQ(ac_ring_repair_pop(r, pos + 1, &m, buf), 0); /* claim recorded, CAS never done */
  ASSERT_EQ(ac_ring_len(r), 1);
  ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
  ASSERT_EQ(ac_ring_repair_pop(r, pos + 1, &m, buf), 0); /* died after the release */
  /* A dead consumer that held a tombstone: the slot is released, nothing is "recovered". */
  uint64_t pc = claim_push_by_hand(r);
  ASSERT_EQ(ac_ring_repair_push(r, pc), 1);
  uint64_t cc = claim_pop_by_hand(r);
  ASSERT_EQ(ac_ring_repair_pop(r, cc, &m, buf), 0);
  for (int i = 0; i < 4; i++) ASSERT_OK(push_u64(r, 30 + i));
  for (int i = 0; i < 4; i++) {
    ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
    ASSERT_EQ(m.id, 30 + i);
  }
}

/* Shared state of the kill loops below. */
typedef struct {
  _Atomic uint64_t push_claim;
  ac_claim pop_claim;
  _Atomic uint64_t done;  /* producer: messages known published; consumer: entries in got[] */
  _Atomic uint32_t ready;
  _Atomic uint64_t got[];
} kill_ctl;

static void fill_payload(uint8_t *buf, uint64_t id, uint32_t len) {
  for (uint32_t i = 0; i < len; i++) buf[i] = (uint8_t)(id * 131 + i);
}

static int payload_ok(const uint8_t *buf, uint64_t id, uint32_t len) {
  for (uint32_t i = 0; i < len; i++)
    if (buf[i] != (uint8_t)(id * 131 + i)) return 0;
  return 1;
}

static uint32_t payload_len(uint64_t id) { return 8 + (uint32_t)(id * 37 % (AC_SLOT_INLINE - 7)); }

static void kill_after(pid_t pid, _Atomic uint32_t *ready, uint64_t *rng) {
  while (!atomic_load(ready)) ac_cpu_relax();
  int64_t end = ac_now_ns() + (int64_t)(ac_test_rand(rng) % 1500000);
  while (ac_now_ns() < end) ac_cpu_relax();
  kill(pid, SIGKILL);
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) ASSERT_EXITED(st, -1); /* prints why */
}

/* A producer pushing as fast as it can is SIGKILLed at a random instant, over and over; the
 * repair leaves the ring in order: messages 0..n-1 arrive once each, where n is the published
 * count or one more (the message in flight made it), never less, never a gap. */
TEST_IMPL_TIMEOUT(ring_producer_killed_mid_push_is_repaired, 60000) {
  enum { CAP = 1 << 14 };
  ac_ring *r = new_ring(CAP);
  kill_ctl *ctl = ac_test_shared(sizeof(kill_ctl));
  uint64_t rng = ac_test_seed();
  long rounds = 300 / ac_test_scale() + 20;
  uint64_t next = 0, repaired = 0, in_flight_made_it = 0;
  uint8_t buf[AC_SLOT_INLINE];
  for (long round = 0; round < rounds; round++) {
    atomic_store(&ctl->done, next);
    atomic_store(&ctl->ready, 0);
    pid_t pid = fork();
    if (pid == 0) {
      atomic_store(&ctl->ready, 1);
      for (uint64_t id = next;; id++) {
        ac_msg m = {.id = id, .len = payload_len(id), .kind = 1};
        fill_payload(buf, id, m.len);
        while (ac_ring_try_push(r, &m, buf, &ctl->push_claim) != 0) {
        }
        atomic_store(&ctl->done, id + 1);
      }
    }
    kill_after(pid, &ctl->ready, &rng);
    uint64_t done = atomic_load(&ctl->done);
    int fixed = ac_ring_repair_push(r, atomic_load(&ctl->push_claim));
    repaired += fixed;
    atomic_store(&ctl->push_claim, 0);
    ac_msg m;
    while (ac_ring_try_pop(r, &m, buf, NULL) == 0) {
      if (m.id != next)
        FAIL("round %ld: got message %" PRIu64 ", expected %" PRIu64, round, m.id, next);
      if (m.len != payload_len(m.id) || !payload_ok(buf, m.id, m.len))
        FAIL("round %ld: message %" PRIu64 " has a damaged payload", round, m.id);
      next++;
    }
    ASSERT_EQ(ac_ring_len(r), 0);
    if (next == done + 1) {
      ASSERT_EQ(fixed, 0); /* a published message is never turned into a tombstone */
      in_flight_made_it++;
    } else if (next != done) {
      FAIL("round %ld: %" PRIu64 " messages arrived, %" PRIu64 " were published", round, next,
           done);
    }
  }
  /* The ring still cycles through every slot. */
  for (uint64_t i = 0; i < 2 * CAP; i++) {
    ac_msg m = {.id = i, .len = 8};
    ASSERT_OK(ac_ring_try_push(r, &m, &i, NULL));
    ASSERT_OK(ac_ring_try_pop(r, &m, buf, NULL));
    ASSERT_EQ(m.id, i);
  }
  fprintf(stderr, "%ld kills, %" PRIu64 " messages, %" PRIu64 " claimed slots repaired, %" PRIu64
          " in-flight messages published\n", rounds, next, repaired, in_flight_made_it);
}

/* A consumer popping as fast as it can is SIGKILLed at a random instant, over and over. Every
 * message is accounted for exactly once and in order: recorded by the consumer, held in its claim
 * record (taken, not yet recorded), recovered by repair_pop, or still in the ring. */
TEST_IMPL_TIMEOUT(ring_consumer_killed_mid_pop_is_repaired, 60000) {
  enum { CAP = 1 << 13 };
  ac_ring *r = new_ring(CAP);
  kill_ctl *ctl = ac_test_shared(sizeof(kill_ctl) + CAP * sizeof(uint64_t));
  uint64_t rng = ac_test_seed() ^ 0x5555;
  long rounds = 300 / ac_test_scale() + 20;
  uint64_t next_push = 0, next_check = 0, recovered = 0, held = 0;
  uint8_t buf[AC_SLOT_INLINE];
  for (long round = 0; round < rounds; round++) {
    while (ac_ring_len(r) < CAP) {
      ac_msg m = {.id = next_push, .len = payload_len(next_push), .kind = 2};
      fill_payload(buf, m.id, m.len);
      ASSERT_OK(ac_ring_try_push(r, &m, buf, NULL));
      next_push++;
    }
    atomic_store(&ctl->done, 0);
    atomic_store(&ctl->ready, 0);
    atomic_store(&ctl->pop_claim.id, UINT64_MAX);
    pid_t pid = fork();
    if (pid == 0) {
      atomic_store(&ctl->ready, 1);
      for (;;) {
        ac_msg m;
        if (ac_ring_try_pop(r, &m, buf, &ctl->pop_claim) != 0) continue;
        if (m.len != payload_len(m.id) || !payload_ok(buf, m.id, m.len)) _exit(1);
        uint64_t n = atomic_load(&ctl->done);
        atomic_store(&ctl->got[n], m.id);
        atomic_store(&ctl->done, n + 1);
        atomic_store(&ctl->pop_claim.id, UINT64_MAX); /* done with it */
      }
    }
    kill_after(pid, &ctl->ready, &rng);
    /* The sequence the consumer's records describe, in order. */
    uint64_t n = atomic_load(&ctl->done);
    for (uint64_t i = 0; i < n; i++, next_check++)
      if (atomic_load(&ctl->got[i]) != next_check)
        FAIL("round %ld: consumer recorded %" PRIu64 ", expected %" PRIu64, round,
             atomic_load(&ctl->got[i]), next_check);
    ac_msg m;
    uint64_t taken = atomic_load(&ctl->pop_claim.id);
    if (ac_ring_repair_pop(r, atomic_load(&ctl->pop_claim.pos), &m, buf)) {
      ASSERT_EQ(m.id, next_check); /* the claimed one is the next: recovered, not lost */
      ASSERT(payload_ok(buf, m.id, m.len));
      next_check++;
      recovered++;
    } else if (taken != UINT64_MAX && taken == next_check) {
      next_check++; /* released from the ring, still named by the consumer's record */
      held++;
    }
    atomic_store(&ctl->pop_claim.pos, 0);
    while (ac_ring_try_pop(r, &m, buf, NULL) == 0) {
      if (m.id != next_check)
        FAIL("round %ld: ring held %" PRIu64 ", expected %" PRIu64, round, m.id, next_check);
      next_check++;
    }
  }
  ac_msg m;
  while (ac_ring_try_pop(r, &m, buf, NULL) == 0) {
    ASSERT_EQ(m.id, next_check);
    next_check++;
  }
  ASSERT_EQ(next_check, next_push);
  fprintf(stderr, "%ld kills, %" PRIu64 " messages, %" PRIu64 " recovered by repair_pop, %" PRIu64
          " named by the claim record\n", rounds, next_push, recovered, held);
}

/* A consumer killed while spinning or asleep in pop_wait stays in the ring's counts; a raised
 * spinner count makes producers trust a spinner that is gone and wake nobody, so sleeping
 * consumers would wait forever. ac_ring_repair_wait takes the dead one out. */
TEST_IMPL(ring_consumer_killed_while_waiting_leaves_the_counts) {
  ac_ring *r = new_ring(4);
  ac_claim *claims = ac_test_shared(2 * sizeof(ac_claim));
  for (int spin = 1; spin >= 0; spin--) {
    pid_t victim = fork();
    if (victim == 0) {
      ac_msg m;
      uint8_t buf[AC_SLOT_INLINE];
      ac_ring_pop_wait(r, &m, buf, &claims[0], -1, spin ? 60000000000LL : 0, NULL);
      _exit(1);
    }
    uint32_t want = spin ? AC_WAIT_SPINNING : AC_WAIT_SLEEPING;
    while (atomic_load(&claims[0].waiting) != want) usleep(1000);
    kill(victim, SIGKILL);
    ASSERT_EQ(waitpid(victim, NULL, 0), victim);
    ASSERT_EQ(spin ? atomic_load(&r->consumers_spinning) : atomic_load(&r->consumers_sleeping), 1);
    ac_ring_repair_wait(r, &claims[0]);
    ASSERT_EQ(atomic_load(&r->consumers_spinning), 0);
    ASSERT_EQ(atomic_load(&r->consumers_sleeping), 0);
    ASSERT_EQ(atomic_load(&claims[0].waiting), 0);
    ac_ring_repair_wait(r, &claims[0]); /* idempotent, never below zero */
    ASSERT_EQ(atomic_load(&r->consumers_spinning), 0);
    /* A live consumer asleep now is woken by the next push. */
    pid_t live = fork();
    if (live == 0) {
      ac_msg m;
      uint8_t buf[AC_SLOT_INLINE];
      int rc = ac_ring_pop_wait(r, &m, buf, &claims[1], -1, 0, NULL);
      _exit(rc == 0 && m.id == 5 && atomic_load(&claims[1].waiting) == 0 ? 0 : 1);
    }
    while (atomic_load(&claims[1].waiting) != AC_WAIT_SLEEPING) usleep(1000);
    ASSERT_OK(push_u64(r, 5));
    ASSERT_EXITED(ac_test_wait(live, 5000), 0);
  }
}
