/* test-arena.c: block allocation across size classes, reuse, splitting, bounds, the checks that
 * reject forged offsets, and concurrent use by processes and by threads. */
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/arena.h"
#include "allcores/errors.h"
#include "task.h"

#define ARENA_OFF 4096
#define PAGE 4096u

/* A mapping whose first page holds the arena's control block and the rest its pages, and a flat
 * map of it (kept in the mapping's first page, after the control block, so that forked children
 * share it). */
static ac_arena_map *new_base(uint64_t bytes, ac_arena **a) {
  char *base = ac_test_shared(ARENA_OFF + bytes);
  *a = (ac_arena *)base;
  ASSERT_OK(ac_arena_init(*a, ARENA_OFF, bytes, 0));
  ac_arena_map *m = (ac_arena_map *)(base + 1024);
  ac_arena_map_flat(m, base);
  return m;
}

TEST_IMPL(arena_init_rejects_unaligned_base) {
  ac_arena a;
  ASSERT_EQ(ac_arena_init(&a, 100, 1 << 20, 0), -EINVAL);
  ASSERT_EQ(ac_arena_init(&a, 4096, 1 << 20, 100), -EINVAL);
  ASSERT_OK(ac_arena_init(&a, 8192, 1 << 20, 0));
  ASSERT_EQ(a.pages, 256);
}

TEST_IMPL(arena_alloc_free_reuse) {
  ac_arena *a;
  ac_arena_map *base = new_base(1 << 24, &a);
  int64_t b1 = ac_arena_alloc(a, base, 100, 1);
  int64_t b2 = ac_arena_alloc(a, base, 5000, 1);
  ASSERT_GT(b1, 0);
  ASSERT_GT(b2, 0);
  ASSERT_NE(b1, b2);
  memset(ac_block_data(base, (uint64_t)b2), 7, 5000);
  ASSERT_OK(ac_arena_check(a, base, (uint64_t)b2, 5000));
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)b1));
  ASSERT_EQ(ac_arena_free(a, base, (uint64_t)b1), AC_ECORRUPT); /* double free detected */
  ASSERT_EQ(ac_arena_check(a, base, (uint64_t)b1, 0), AC_ECORRUPT); /* freed: not a block */
  int64_t b3 = ac_arena_alloc(a, base, 200, 2);
  ASSERT_EQ(b3, b1); /* the freed block of the same class is reused */
  ac_block *b = ac_block_at(base, (uint64_t)b3);
  ASSERT_EQ(b->owner, 2);
  ASSERT_EQ(b->state, AC_BLOCK_PRIVATE);
  ASSERT_EQ(b->len, 200);
  ASSERT_EQ(b->refs, 0);
  ASSERT_EQ(a->allocs, 3);
  ASSERT_EQ(a->frees, 1);
}

/* Class c holds 2^c pages including the 64-byte header: sizes just below and above each limit. */
TEST_IMPL(arena_size_classes) {
  ac_arena *a;
  ac_arena_map *base = new_base(1 << 26, &a);
  for (int c = 0; c < 12; c++) {
    uint64_t room = ((uint64_t)PAGE << c) - AC_BLOCK_HEADER;
    int64_t fit = ac_arena_alloc(a, base, room, 1);
    int64_t over = ac_arena_alloc(a, base, room + 1, 1);
    ASSERT_GT(fit, 0);
    ASSERT_GT(over, 0);
    ASSERT_EQ(ac_block_at(base, (uint64_t)fit)->cls, c);
    ASSERT_EQ(ac_block_at(base, (uint64_t)over)->cls, c + 1);
    ASSERT_OK(ac_arena_check(a, base, (uint64_t)fit, room));
    ASSERT_EQ(ac_arena_check(a, base, (uint64_t)fit, room + 1), AC_ECORRUPT);
    uint64_t in_use = a->bytes_in_use;
    ASSERT_OK(ac_arena_free(a, base, (uint64_t)fit));
    ASSERT_OK(ac_arena_free(a, base, (uint64_t)over));
    ASSERT_EQ(a->bytes_in_use, in_use - ((uint64_t)PAGE << c) - ((uint64_t)PAGE << (c + 1)));
  }
  ASSERT_EQ(a->bytes_in_use, 0);
  int64_t zero = ac_arena_alloc(a, base, 0, 1); /* an empty payload still gets a block */
  ASSERT_GT(zero, 0);
  ASSERT_EQ(ac_block_at(base, (uint64_t)zero)->cls, 0);
}

TEST_IMPL(arena_limits) {
  ac_arena *a;
  ac_arena_map *base = new_base(1 << 20, &a);
  ASSERT_EQ(ac_arena_alloc(a, base, 2 << 20, 1), AC_ETOOBIG);
  ASSERT_EQ(ac_arena_alloc(a, base, UINT64_MAX, 1), AC_ETOOBIG);
  ASSERT_EQ(ac_arena_max_payload(a), (1 << 20) - AC_BLOCK_HEADER);
  ASSERT_EQ(ac_arena_alloc(a, base, ac_arena_max_payload(a) + 1, 1), AC_ETOOBIG);
  int64_t big = ac_arena_alloc(a, base, ac_arena_max_payload(a), 1);
  ASSERT_GT(big, 0);
  ASSERT_EQ(ac_arena_alloc(a, base, 10, 1), AC_ENOSPACE); /* full right now */
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)big));
  ASSERT_GT(ac_arena_alloc(a, base, 10, 1), 0);
  /* An arena that is not a power of two of pages: the largest block is the largest power. */
  ac_arena *b;
  ac_arena_map *base2 = new_base(3 * PAGE, &b);
  ASSERT_EQ(ac_arena_max_payload(b), 2 * PAGE - AC_BLOCK_HEADER);
  ASSERT_GT(ac_arena_alloc(b, base2, 2 * PAGE - AC_BLOCK_HEADER, 1), 0);
  ASSERT_GT(ac_arena_alloc(b, base2, 100, 1), 0);
  ASSERT_EQ(ac_arena_alloc(b, base2, 100, 1), AC_ENOSPACE);
}

/* When fresh space runs out, a larger free block is split; every page is usable again. */
TEST_IMPL(arena_splits_free_blocks_when_fresh_space_runs_out) {
  ac_arena *a;
  enum { PAGES = 64 };
  ac_arena_map *base = new_base(PAGES * PAGE, &a);
  int64_t big = ac_arena_alloc(a, base, ac_arena_max_payload(a), 1);
  ASSERT_GT(big, 0);
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)big));
  int64_t got[PAGES];
  for (int i = 0; i < PAGES; i++) {
    got[i] = ac_arena_alloc(a, base, 100, 1);
    ASSERT_GT(got[i], 0);
    memset(ac_block_data(base, (uint64_t)got[i]), i, 100);
  }
  ASSERT_EQ(ac_arena_alloc(a, base, 100, 1), AC_ENOSPACE);
  for (int i = 0; i < PAGES; i++) {
    for (int j = 0; j < i; j++) ASSERT_NE(got[i], got[j]);
    uint8_t *d = ac_block_data(base, (uint64_t)got[i]);
    for (int k = 0; k < 100; k++) ASSERT_EQ(d[k], i);
    ASSERT_GE((uint64_t)got[i], ARENA_OFF);
    ASSERT_LT((uint64_t)got[i], ARENA_OFF + PAGES * PAGE);
  }
  ASSERT_EQ(a->bytes_in_use, PAGES * PAGE);
  /* Freed one-page blocks are not merged back one by one: while one is still in use, a
   * two-page block is not available; once none is, the arena resets and it is. */
  for (int i = 1; i < PAGES; i++) ASSERT_OK(ac_arena_free(a, base, (uint64_t)got[i]));
  ASSERT_EQ(ac_arena_alloc(a, base, 2 * PAGE, 1), AC_ENOSPACE);
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)got[0]));
  ASSERT_EQ(a->bytes_in_use, 0);
  ASSERT_GT(ac_arena_alloc(a, base, 2 * PAGE, 1), 0);
}

/* Freed blocks are not merged one by one, but once nothing is in use the arena resets itself, so
 * a large block is available again (a shared Queue's arena is sized for one largest item:
 * put(300 MB), get(), put(1 GB) must not wait forever on an empty queue). */
TEST_IMPL(arena_large_block_available_again_once_everything_is_free) {
  ac_arena *a;
  ac_arena_map *base = new_base(16 * PAGE, &a);
  int64_t small = ac_arena_alloc(a, base, 100, 1);
  ASSERT_GT(small, 0);
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)small));
  ASSERT_EQ(a->bytes_in_use, 0);
  int64_t big = ac_arena_alloc(a, base, ac_arena_max_payload(a), 1);
  ASSERT_GT(big, 0);
  ASSERT_EQ(a->resets, 1);
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)big));
  /* While something is in use there is no reset: the split pieces stay as they are. */
  int64_t one = ac_arena_alloc(a, base, 100, 1);
  ASSERT_GT(one, 0);
  ASSERT_EQ(ac_arena_alloc(a, base, ac_arena_max_payload(a), 1), AC_ENOSPACE);
  ASSERT_EQ(a->resets, 1);
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)one));
}

/* A process that died while resetting the arena (the gate still names it) does not block the
 * others: the next allocator finishes the reset. */
TEST_IMPL(arena_reset_of_a_dead_process_is_finished_by_the_next_allocator) {
  ac_arena *a;
  ac_arena_map *base = new_base(16 * PAGE, &a);
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  ASSERT_EXITED(ac_test_wait(pid, 10000), 0);
  atomic_store(&a->gate, (UINT64_C(1) << 63) | ((uint64_t)pid << 32));
  int64_t off = ac_arena_alloc(a, base, 100, 1);
  ASSERT_GT(off, 0);
  ASSERT_EQ(atomic_load(&a->gate), 0);
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)off));
}

TEST_IMPL(arena_check_rejects_bad_offsets) {
  ac_arena *a;
  ac_arena_map *base = new_base(1 << 20, &a);
  int64_t b = ac_arena_alloc(a, base, 100, 1);
  ASSERT_OK(ac_arena_check(a, base, (uint64_t)b, 100));
  ASSERT_EQ(ac_arena_check(a, base, 0, 0), AC_ECORRUPT);                  /* before the arena */
  ASSERT_EQ(ac_arena_check(a, base, (uint64_t)b + 8, 0), AC_ECORRUPT);    /* not page aligned */
  ASSERT_EQ(ac_arena_check(a, base, (uint64_t)b + PAGE, 0), AC_ECORRUPT); /* never allocated */
  ASSERT_EQ(ac_arena_check(a, base, UINT64_MAX & ~(uint64_t)(PAGE - 1), 0), AC_ECORRUPT);
  ASSERT_EQ(ac_arena_check(a, base, (uint64_t)b, 8192), AC_ECORRUPT);     /* longer than block */
  ac_block_at(base, (uint64_t)b)->cls = 99;
  ASSERT_EQ(ac_arena_check(a, base, (uint64_t)b, 10), AC_ECORRUPT);       /* forged class */
  ac_block_at(base, (uint64_t)b)->cls = 20;
  ASSERT_EQ(ac_arena_check(a, base, (uint64_t)b, 10), AC_ECORRUPT);       /* beyond the arena */
  ac_block_at(base, (uint64_t)b)->cls = 0;
  ASSERT_OK(ac_arena_free(a, base, (uint64_t)b));
  ASSERT_EQ(ac_arena_free(a, base, (uint64_t)b + 8), AC_ECORRUPT);
  ASSERT_EQ(ac_arena_free(a, base, 0), AC_ECORRUPT);
  ASSERT_EQ(a->frees, 1);
}

/* Workers allocating and freeing at once, each holding several blocks and checking that nobody
 * else wrote into them: a block is never handed out twice. */
typedef struct churn {
  ac_arena *a;
  ac_arena_map *base;
  long rounds;
  int who;
} churn;

enum { HOLD = 8 };

static int churn_run(const churn *c) {
  int64_t held[HOLD] = {0};
  uint64_t lens[HOLD] = {0};
  uint64_t rng = (uint64_t)c->who * 7919 + 1;
  uint8_t mark = (uint8_t)(c->who + 1);
  for (long i = 0; i < c->rounds; i++) {
    int k = (int)(ac_test_rand(&rng) % HOLD);
    if (held[k]) {
      uint8_t *d = ac_block_data(c->base, (uint64_t)held[k]);
      for (uint64_t j = 0; j < lens[k]; j += 97)
        if (d[j] != mark) return 3; /* someone else wrote into our block */
      if (ac_block_at(c->base, (uint64_t)held[k])->owner != (uint64_t)mark) return 4;
      if (ac_arena_free(c->a, c->base, (uint64_t)held[k]) != 0) return 5;
      held[k] = 0;
      continue;
    }
    uint64_t len = 1 + ac_test_rand(&rng) % (ac_test_rand(&rng) % 4 ? 6000 : 70000);
    int64_t b = ac_arena_alloc(c->a, c->base, len, mark);
    if (b == AC_ENOSPACE) continue;
    if (b < 0) return 2;
    memset(ac_block_data(c->base, (uint64_t)b), mark, len);
    held[k] = b;
    lens[k] = len;
  }
  for (int k = 0; k < HOLD; k++)
    if (held[k] && ac_arena_free(c->a, c->base, (uint64_t)held[k]) != 0) return 6;
  return 0;
}

static void *churn_thread(void *arg) { return (void *)(intptr_t)churn_run(arg); }

static void check_drained(ac_arena *a) {
  ASSERT_EQ(a->allocs, a->frees);
  ASSERT_EQ(a->bytes_in_use, 0);
  ASSERT_GT(a->allocs, 0);
  fprintf(stderr, "%" PRIu64 " blocks allocated and freed\n", (uint64_t)a->allocs);
}

TEST_IMPL_TIMEOUT(arena_concurrent_processes_never_share_a_block, 60000) {
  if (AC_TEST_TSAN) TEST_SKIP("TSan cannot see memory shared between processes; see _threads");
  ac_arena *a;
  /* Small enough to run out: the ENOSPACE and split paths race too. */
  ac_arena_map *base = new_base(2 << 20, &a);
  enum { PROCS = 4 };
  pid_t pids[PROCS];
  for (int p = 0; p < PROCS; p++) {
    churn c = {a, base, 100000 / ac_test_scale(), p};
    if ((pids[p] = fork()) == 0) _exit(churn_run(&c));
  }
  for (int p = 0; p < PROCS; p++) ASSERT_EXITED(ac_test_wait(pids[p], 60000), 0);
  check_drained(a);
}

TEST_IMPL_TIMEOUT(arena_concurrent_threads_never_share_a_block, 60000) {
  ac_arena *a;
  ac_arena_map *base = new_base(2 << 20, &a);
  enum { THREADS = 4 };
  pthread_t t[THREADS];
  churn c[THREADS];
  for (int i = 0; i < THREADS; i++) {
    c[i] = (churn){a, base, 100000 / ac_test_scale(), i};
    ASSERT_OK(pthread_create(&t[i], NULL, churn_thread, &c[i]));
  }
  for (int i = 0; i < THREADS; i++) {
    void *rc;
    ASSERT_OK(pthread_join(t[i], &rc));
    ASSERT_EQ((intptr_t)rc, 0);
  }
  check_drained(a);
}
