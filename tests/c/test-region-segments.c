/* test-region-segments.c: a region's arena grows by segments: only the first is mapped at
 * creation, a block in a later one is mapped by each process when it meets it (and seen whole
 * there), the largest payload is the largest segment's, and a process whose address space
 * cannot hold another segment gets -ENOMEM while the mapped segments still serve. */
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/errors.h"
#include "allcores/protocol.h"
#include "allcores/region.h"
#include "task.h"

#define MIB (UINT64_C(1) << 20)

static uint64_t address_space(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  ASSERT(f != NULL);
  unsigned long pages = 0;
  ASSERT_EQ(fscanf(f, "%lu", &pages), 1);
  fclose(f);
  return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void make_region(ac_region *r, uint64_t arena_bytes) {
  ac_region_config cfg = {2, 16, 16, arena_bytes};
  ASSERT_OK(ac_region_create(r, &cfg));
}

static void send_bytes(ac_region *r, uint8_t *data, uint64_t len, ac_msg *m) {
  struct iovec part = {data, len};
  m->id = 1;
  m->kind = 1;
  ASSERT_OK(ac_region_send(r, r->tasks, m, &part, 1, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
}

TEST_IMPL(region_arena_maps_its_first_segment_only) {
  uint64_t before = address_space();
  ac_region r;
  make_region(&r, 256 * MIB);
  uint64_t grew = address_space() - before;
  ac_arena *a = &r.hdr->arena;
  ASSERT_EQ(r.mapped, a->base_off + AC_REGION_FIRST_SEGMENT);
  ASSERT_EQ(r.size, a->base_off + 256 * MIB);
  ASSERT_LT(grew, 2 * AC_REGION_FIRST_SEGMENT); /* not the 256 MiB */
  /* Segments of 16, 16, 32, 64 and 128 MiB: the last one is the largest block. */
  ASSERT_EQ(ac_arena_max_payload(a), 128 * MIB - AC_BLOCK_HEADER);
  ac_region_destroy(&r);
  make_region(&r, 100 * MIB); /* 16, 16 and 68 MiB: the last one runs to the end */
  ASSERT_EQ(ac_arena_max_payload(&r.hdr->arena), 64 * MIB - AC_BLOCK_HEADER);
  ac_region_destroy(&r);

  make_region(&r, 24 * MIB); /* an arena too small for two segments is mapped whole */
  ASSERT_EQ(r.mapped, r.size);
  ASSERT_EQ(ac_arena_max_payload(&r.hdr->arena), 16 * MIB - AC_BLOCK_HEADER);
  ac_region_destroy(&r);
  make_region(&r, 4 * MIB);
  ASSERT_EQ(r.mapped, r.size);
  ASSERT_EQ(ac_arena_max_payload(&r.hdr->arena), 4 * MIB - AC_BLOCK_HEADER);
  ac_region_destroy(&r);
}

TEST_IMPL(region_arena_segment_geometry) {
  /* 100 pages from a first segment of 4: [0,4) [4,8) [8,16) [16,32) and [32,100), the last one
   * starting in the lower half and running to the end. */
  uint64_t last = ac_arena_last_start(4, 100);
  ASSERT_EQ(last, 32);
  ASSERT_EQ(ac_arena_segment_of(4, last, 0), 0);
  ASSERT_EQ(ac_arena_segment_of(4, last, 3), 0);
  ASSERT_EQ(ac_arena_segment_of(4, last, 4), 1);
  ASSERT_EQ(ac_arena_segment_of(4, last, 7), 1);
  ASSERT_EQ(ac_arena_segment_of(4, last, 8), 2);
  ASSERT_EQ(ac_arena_segment_of(4, last, 31), 3);
  ASSERT_EQ(ac_arena_segment_of(4, last, 32), 4);
  ASSERT_EQ(ac_arena_segment_of(4, last, 99), 4);
  ASSERT_EQ(ac_arena_segment_start(4, 4), 32);
  ASSERT_EQ(ac_arena_segment_end(4, last, 100, 5), 8);
  ASSERT_EQ(ac_arena_segment_end(4, last, 100, 20), 32);
  ASSERT_EQ(ac_arena_segment_end(4, last, 100, 70), 100);
  ASSERT_EQ(ac_arena_last_start(4, 16), 8); /* 16 pages: [0,4) [4,8) [8,16) */
  ASSERT_EQ(ac_arena_segment_end(0, 0, 100, 70), 100); /* one segment */
}

TEST_IMPL_TIMEOUT(region_block_in_a_later_segment_reaches_every_process, 30000) {
  ac_region r;
  make_region(&r, 256 * MIB);
  int go[2];
  ASSERT_OK(pipe(go));
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) { /* forked before the segment was mapped: it maps it itself */
    char c;
    if (read(go[0], &c, 1) != 1) _exit(2);
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    if (ac_worker_next_task(&r, 0, &m, buf, 5 * 1000000000LL, 0) != 0) _exit(3);
    if (m.block < r.mapped) _exit(4);
    if (ac_region_check_msg(&r, &m) != 0) _exit(5);
    const uint8_t *d = ac_region_payload(&r, &m, buf);
    uint64_t len = ac_region_block(&r, m.block)->len;
    for (uint64_t i = 0; i < len; i += 4093)
      if (d[i] != (uint8_t)(i * 31)) _exit(6);
    if (d[len - 1] != (uint8_t)((len - 1) * 31)) _exit(7);
    ac_region_consume(&r, m.block, &r.workers[0].take.block);
    _exit(0);
  }
  close(go[0]);
  uint64_t len = 20 * MIB; /* a 32 MiB block: past the first two segments, in the third */
  uint8_t *data = malloc(len);
  ASSERT(data != NULL);
  for (uint64_t i = 0; i < len; i++) data[i] = (uint8_t)(i * 31);
  uint64_t before = address_space();
  ac_msg m;
  send_bytes(&r, data, len, &m);
  ASSERT_GE(m.block, r.mapped);
  ASSERT_GE(address_space() - before, 32 * MIB); /* the segment is mapped now, here */
  /* and only that one: the second, whose pages the bump pointer skipped, is not */
  ASSERT_LT(address_space() - before, 48 * MIB);
  ac_arena *a = &r.hdr->arena;
  /* The pages the bump pointer skipped serve later payloads (they went to the free lists). */
  ASSERT_EQ(atomic_load(&a->bump), (64 * MIB) >> AC_PAGE_SHIFT);
  ASSERT_NE(atomic_load(&a->free_head[12]), 0); /* two 16 MiB blocks: the first two segments */
  /* and a smaller payload is carved from them, lowest first, not from a new segment */
  int64_t small = ac_arena_alloc(a, r.map, MIB, 1);
  ASSERT_GT(small, 0);
  ASSERT_LT((uint64_t)small, r.mapped); /* the first segment, which every process maps */
  ASSERT_EQ(atomic_load(&a->bump), (64 * MIB) >> AC_PAGE_SHIFT);
  ASSERT_OK(ac_arena_free(a, r.map, (uint64_t)small));
  ASSERT_EQ(write(go[1], "x", 1), 1);
  int st;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
  close(go[1]);
  ASSERT_EQ(atomic_load(&a->bytes_in_use), 0); /* the child freed it */

  /* A private copy-on-write view of a block in a segment, as for a block in the first one. */
  send_bytes(&r, data, len, &m);
  ASSERT_OK(ac_region_check_msg(&r, &m));
  char *at = (char *)ac_region_block_data(&r, m.block) + 4096 * 3;
  void *map;
  size_t map_len;
  char *priv;
  ASSERT_OK(ac_region_map_private(&r, at, 100, 8192, &map, &map_len, &priv));
  ASSERT_MEM_EQ(priv - 100, at - 100, 8292);
  ASSERT_EQ(munmap(map, map_len), 0);
  /* A range that would leave the segment's mapping is refused. */
  ASSERT_EQ(ac_region_map_private(&r, at, 0, 64 * MIB, &map, &map_len, &priv), -EINVAL);
  ASSERT_OK(ac_region_release(&r, m.block));
  free(data);
  ac_region_destroy(&r);
}

TEST_IMPL(region_segment_past_the_address_space_limit_is_enomem) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  TEST_SKIP("a sanitizer's own mappings need room under RLIMIT_AS");
#endif
  ac_region r;
  make_region(&r, 256 * MIB);
  ac_arena *a = &r.hdr->arena;
  int go[2], ready[2];
  ASSERT_OK(pipe(go));
  ASSERT_OK(pipe(ready));
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) { /* forked before the parent's big block: its segment is not mapped here */
    uint64_t room = address_space() + 4 * MIB;
    struct rlimit lim = {room, room};
    if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(2);
    if (ac_arena_alloc(a, r.map, 20 * MIB, 1) != -ENOMEM) _exit(3);
    int64_t small = ac_arena_alloc(a, r.map, 100000, 1); /* the first segment still serves */
    if (small <= 0 || (uint64_t)small >= r.mapped) _exit(4);
    if (ac_arena_free(a, r.map, (uint64_t)small) != 0) _exit(5);
    if (write(ready[1], "r", 1) != 1) _exit(10);
    uint64_t big;
    if (read(go[0], &big, sizeof big) != sizeof big) _exit(6);
    /* It cannot read the parent's block, and says so; it can still free it (one page). */
    if (ac_arena_check(a, r.map, big, 0) != -ENOMEM) _exit(7);
    if (ac_arena_free(a, r.map, big) != 0) _exit(8);
    if (ac_arena_free(a, r.map, big) != AC_ECORRUPT) _exit(9); /* and only once */
    _exit(0);
  }
  close(go[0]);
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  int64_t big = ac_arena_alloc(a, r.map, 20 * MIB, 1);
  ASSERT_GE((uint64_t)big, r.mapped);
  ASSERT_EQ(write(go[1], &big, sizeof big), (ssize_t)sizeof big);
  int st;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
  close(go[1]);
  ASSERT_EQ(atomic_load(&a->bytes_in_use), 0);
  ASSERT_EQ(atomic_load(&ac_region_block(&r, (uint64_t)big)->state), AC_BLOCK_FREE);
  ac_region_destroy(&r);
}
