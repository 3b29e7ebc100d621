/* test-arena.c: block allocation, reuse, bounds, checks, and concurrent use by processes. */
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/arena.h"
#include "allcores/errors.h"
#include "task.h"

#define ARENA_OFF 4096

static char *new_base(uint64_t bytes, ac_arena **a) {
  char *base = mmap(NULL, ARENA_OFF + bytes, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT(base != MAP_FAILED);
  *a = (ac_arena *)base; /* the arena's control block lives in the first page */
  ASSERT_OK(ac_arena_init(*a, ARENA_OFF, bytes));
  return base;
}

TEST_IMPL(arena_alloc_free_reuse) {
  ac_arena *a;
  char *base = new_base(1 << 24, &a);
  int64_t b1 = ac_arena_alloc(a, base, 100, 1);
  int64_t b2 = ac_arena_alloc(a, base, 5000, 1);
  ASSERT_GT(b1, 0);
  ASSERT_GT(b2, 0);
  ASSERT_NE(b1, b2);
  memset(ac_block_data(base, (uint64_t)b2), 7, 5000);
  ASSERT_OK(ac_arena_check(a, base, (uint64_t)b2, 5000));
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)b1));
  ASSERT_EQ(ac_arena_free(a, base, (uint64_t)b1), AC_ECORRUPT); /* double free detected */
  int64_t b3 = ac_arena_alloc(a, base, 200, 2);
  ASSERT_EQ(b3, b1); /* the freed block of the same class is reused */
  ASSERT_EQ(ac_block_at(base, (uint64_t)b3)->owner, 2);
  ASSERT_EQ(ac_block_at(base, (uint64_t)b3)->state, AC_BLOCK_PRIVATE);
}

TEST_IMPL(arena_limits) {
  ac_arena *a;
  char *base = new_base(1 << 20, &a);
  ASSERT_EQ(ac_arena_alloc(a, base, 2 << 20, 1), AC_ETOOBIG);
  ASSERT_EQ(ac_arena_max_payload(a), (1 << 20) - AC_BLOCK_HEADER);
  int64_t big = ac_arena_alloc(a, base, ac_arena_max_payload(a), 1);
  ASSERT_GT(big, 0);
  ASSERT_EQ(ac_arena_alloc(a, base, 10, 1), AC_ENOSPACE); /* full right now */
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)big));
  ASSERT_GT(ac_arena_alloc(a, base, 10, 1), 0);
}

TEST_IMPL(arena_check_rejects_bad_offsets) {
  ac_arena *a;
  char *base = new_base(1 << 20, &a);
  int64_t b = ac_arena_alloc(a, base, 100, 1);
  ASSERT_EQ(ac_arena_check(a, base, 0, 0), AC_ECORRUPT);
  ASSERT_EQ(ac_arena_check(a, base, (uint64_t)b + 8, 0), AC_ECORRUPT); /* not page aligned */
  ASSERT_EQ(ac_arena_check(a, base, (uint64_t)b + 4096, 0), AC_ECORRUPT); /* never allocated */
  ASSERT_EQ(ac_arena_check(a, base, (uint64_t)b, 8192), AC_ECORRUPT);     /* longer than block */
  ac_block_at(base, (uint64_t)b)->cls = 99;
  ASSERT_EQ(ac_arena_check(a, base, (uint64_t)b, 10), AC_ECORRUPT);
}

TEST_IMPL_TIMEOUT(arena_concurrent_processes_never_share_a_block, 60000) {
  ac_arena *a;
  char *base = new_base(1 << 26, &a);
  enum { PROCS = 4 };
  long rounds = 20000 / ac_test_scale();
  pid_t pids[PROCS];
  for (int p = 0; p < PROCS; p++) {
    if ((pids[p] = fork()) == 0) {
      for (long i = 0; i < rounds; i++) {
        uint64_t len = 64 + (uint64_t)((i * 7919 + p * 104729) % 20000);
        int64_t b = ac_arena_alloc(a, base, len, (uint64_t)p + 1);
        if (b == AC_ENOSPACE) continue;
        if (b < 0) _exit(2);
        uint8_t *d = ac_block_data(base, (uint64_t)b);
        memset(d, p + 1, len);
        for (uint64_t j = 0; j < len; j += 512)
          if (d[j] != p + 1) _exit(3); /* someone else wrote into our block */
        if (ac_arena_free(a, base, (uint64_t)b) != 0) _exit(4);
      }
      _exit(0);
    }
  }
  for (int p = 0; p < PROCS; p++) {
    int st;
    waitpid(pids[p], &st, 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) AC__FAIL("process %d: status %d", p, st);
  }
  ASSERT_EQ(a->allocs, a->frees);
  ASSERT_EQ(a->bytes_in_use, 0);
}
