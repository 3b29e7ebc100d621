/* test-ring-stress.c: several producer and consumer processes on one small shared ring; every
 * message is delivered exactly once, with sleeping and waking exercised throughout. */
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/errors.h"
#include "allcores/ring.h"
#include "task.h"

#define PRODUCERS 3
#define CONSUMERS 3

static void stress(uint64_t cap, long per_producer, int64_t spin_ns) {
  ac_ring *r = mmap(NULL, ac_ring_bytes(cap), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  uint64_t total = (uint64_t)per_producer * PRODUCERS;
  _Atomic uint8_t *seen = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                               -1, 0);
  _Atomic uint64_t *sum = mmap(NULL, 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(r != MAP_FAILED && seen != MAP_FAILED && sum != MAP_FAILED);
  ASSERT_OK(ac_ring_init(r, cap, 1));
  pid_t pids[PRODUCERS + CONSUMERS];
  for (int c = 0; c < CONSUMERS; c++) {
    if ((pids[c] = fork()) == 0) {
      ac_msg m;
      uint8_t buf[AC_SLOT_INLINE];
      for (;;) {
        int rc = ac_ring_pop_wait(r, &m, buf, NULL, -1, spin_ns, NULL);
        if (rc == AC_ECLOSED) break;
        if (rc != 0) _exit(3);
        uint64_t v;
        memcpy(&v, buf, 8);
        if (v != m.id || m.id >= total) _exit(4);
        if (atomic_fetch_add(&seen[m.id], 1) != 0) _exit(5); /* delivered twice */
        atomic_fetch_add(sum, v);
      }
      _exit(0);
    }
  }
  for (int p = 0; p < PRODUCERS; p++) {
    if ((pids[CONSUMERS + p] = fork()) == 0) {
      for (long i = 0; i < per_producer; i++) {
        uint64_t v = (uint64_t)p * per_producer + i;
        ac_msg m = {.id = v, .len = 8 + (uint32_t)(v % 200)};
        uint8_t buf[AC_SLOT_INLINE];
        memcpy(buf, &v, 8);
        if (ac_ring_push_wait(r, &m, buf, NULL, -1, NULL) != 0) _exit(6);
      }
      _exit(0);
    }
  }
  int st;
  for (int p = 0; p < PRODUCERS; p++) {
    waitpid(pids[CONSUMERS + p], &st, 0);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  ac_ring_close(r);
  for (int c = 0; c < CONSUMERS; c++) {
    waitpid(pids[c], &st, 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
      AC__FAIL("consumer %d failed: status %d", c, st);
  }
  for (uint64_t i = 0; i < total; i++)
    if (seen[i] != 1) AC__FAIL("message %llu delivered %d times", (unsigned long long)i, seen[i]);
  ASSERT_EQ(*sum, total * (total - 1) / 2);
}



TEST_IMPL_TIMEOUT(ring_stress_small_ring_sleeping, 60000) {
  stress(4, 200000 / ac_test_scale(), 0);
}

TEST_IMPL_TIMEOUT(ring_stress_spinning, 60000) {
  stress(64, 400000 / ac_test_scale(), 20000);
}
