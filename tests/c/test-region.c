/* test-region.c: the region: its layout, sending inline and through the arena, the checks on
 * received headers, the worker steps, the worker-slot state machine, and what the parent finds
 * after a worker dies in each window (ac_region_reap). */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/errors.h"
#include "allcores/protocol.h"
#include "allcores/region.h"
#include "allcores/shared_segment.h"
#include "task.h"

static void make_region(ac_region *r, uint32_t n, uint64_t arena_bytes) {
  ac_region_config cfg = {n, 16, 16, arena_bytes};
  ASSERT_OK(ac_region_create(r, &cfg));
}

static void parent_send(ac_region *r, uint64_t id, const void *data, size_t len) {
  struct iovec iov = {(void *)data, len};
  ac_msg m = {.id = id, .kind = 1};
  ASSERT_OK(ac_region_send(r, r->tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
}

/* What the template does when a worker process it forked has been reaped. */
static void mark_exited(ac_region *r, uint32_t k, pid_t pid, int status) {
  atomic_store(&r->workers[k].pid, pid);
  atomic_store(&r->workers[k].wait_status, status);
  atomic_store(&r->workers[k].state, AC_W_EXITED);
}

TEST_IMPL(region_create_rejects_bad_config) {
  ac_region r;
  ac_region_config cfg = {0, 16, 16, 1 << 20};
  ASSERT_EQ(ac_region_create(&r, &cfg), -EINVAL);
  cfg.nworkers = AC_MAX_WORKERS + 1;
  ASSERT_EQ(ac_region_create(&r, &cfg), -EINVAL);
  cfg.nworkers = 2;
  cfg.task_slots = 12;
  ASSERT_EQ(ac_region_create(&r, &cfg), -EINVAL);
  cfg.task_slots = 16;
  cfg.result_slots = 1;
  ASSERT_EQ(ac_region_create(&r, &cfg), -EINVAL);
  ASSERT_PTR_EQ(r.base, NULL); /* nothing left mapped */
}

TEST_IMPL(region_layout) {
  ac_region r;
  make_region(&r, 3, 1 << 20);
  ac_header *h = r.hdr;
  ASSERT_EQ(h->magic, AC_REGION_MAGIC);
  ASSERT_EQ(h->nworkers, 3);
  ASSERT_EQ(h->size, r.size);
  ASSERT_EQ(h->parent_pid, getpid());
  ASSERT_EQ(h->off_tasks % 4096, 0);
  ASSERT_EQ(h->off_results % 4096, 0);
  ASSERT_EQ(h->arena.base_off % 4096, 0);
  ASSERT_GE(h->off_tasks, h->off_workers + 3 * sizeof(ac_worker_rec));
  ASSERT_GE(h->off_results, h->off_tasks + ac_ring_bytes(16));
  ASSERT_GE(h->arena.base_off, h->off_results + ac_ring_bytes(16));
  ASSERT_EQ(h->arena.base_off + (h->arena.pages << 12), r.size);
  ASSERT_EQ(sizeof(ac_worker_rec), 128);
  ASSERT_EQ(r.tasks->capacity, 16);
  for (uint32_t k = 0; k < 3; k++) ASSERT_EQ(r.workers[k].state, AC_W_EMPTY);
  ac_region_destroy(&r);
  ASSERT_PTR_EQ(r.base, NULL);
}

TEST_IMPL(region_map_private_is_copy_on_write) {
  ac_region r;
  make_region(&r, 1, 4 << 20);
  static char big[300000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
  struct iovec part = {big, sizeof big};
  ac_msg m = {.id = 1};
  ASSERT_OK(ac_region_send(&r, r.tasks, &m, &part, 1, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
  ac_msg got;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_worker_next_task(&r, 0, &got, buf, 0, 0));
  char *data = (char *)ac_region_payload(&r, &got, buf) + 1000; /* not page aligned */
  void *map;
  size_t map_len;
  char *priv;
  ASSERT_OK(ac_region_map_private(&r, data, 48, 5000, &map, &map_len, &priv));
  ASSERT_EQ((uintptr_t)map % 4096, 0);
  ASSERT_EQ(map_len % 4096, 0);
  ASSERT_GE(priv - (char *)map, 48);
  ASSERT_LE(priv + 5000, (char *)map + map_len);
  ASSERT_MEM_EQ(priv - 48, data - 48, 5048); /* the same bytes, not copied */
  priv[0] ^= 1;                              /* a write stays private */
  priv[-48] ^= 1;
  ASSERT_EQ(data[0], big[1000]);
  ASSERT_EQ(data[-48], big[1000 - 48]);
  ASSERT_EQ(priv[0], (char)(big[1000] ^ 1));
  ASSERT_EQ(munmap(map, map_len), 0);
  /* Out of the region, or without a memfd: refused. */
  ASSERT_EQ(ac_region_map_private(&r, r.base + r.size - 10, 0, 100, &map, &map_len, &priv), -EINVAL);
  ASSERT_EQ(ac_region_map_private(&r, r.base + 10, 100, 10, &map, &map_len, &priv), -EINVAL);
  int fd = r.memfd;
  r.memfd = -1;
  ASSERT_EQ(ac_region_map_private(&r, data, 0, 10, &map, &map_len, &priv), -EBADF);
  r.memfd = fd;
  ac_region_release(&r, got.block);
  ac_region_destroy(&r);
  ASSERT_EQ(fcntl(fd, F_GETFD), -1); /* destroy closed the memfd */
}

TEST_IMPL(region_send_inline_and_through_arena_with_parts) {
  ac_region r;
  make_region(&r, 1, 64 << 20);
  char small[] = "hello";
  static char big[100000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)i;
  struct iovec parts[4] = {{small, 5}, {big, sizeof big}, {NULL, 0}, {small, 5}};
  ac_msg m = {.id = 9};
  ASSERT_OK(ac_region_send(&r, r.tasks, &m, parts, 4, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
  struct iovec inl[3] = {{small, 2}, {NULL, 0}, {small + 2, 3}};
  m = (ac_msg){.id = 10};
  ASSERT_OK(ac_region_send(&r, r.tasks, &m, inl, 3, AC_OWNER_PARENT, NULL, NULL, -1, NULL));

  ac_msg got;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_worker_next_task(&r, 0, &got, buf, 0, 0));
  ASSERT_EQ(got.id, 9);
  ASSERT_GT(got.block, 0);
  ASSERT_EQ(got.len, 100010);
  ASSERT_OK(ac_region_check_msg(&r, &got));
  const char *p = ac_region_payload(&r, &got, buf);
  ac_block *b = ac_region_block(&r, got.block);
  ASSERT_EQ(b->len, 100010);
  ASSERT_EQ(b->owner, AC_OWNER_PARENT);
  ASSERT_EQ(b->state, AC_BLOCK_PUBLISHED);
  ASSERT_MEM_EQ(p, "hello", 5);
  ASSERT_MEM_EQ(p + 5, big, sizeof big);
  ASSERT_MEM_EQ(p + 5 + sizeof big, "hello", 5);
  /* The worker's record names the task and its block while it runs. */
  ASSERT_EQ(r.workers[0].take.id, 9);
  ASSERT_EQ(r.workers[0].take.block, got.block);
  ASSERT_EQ(r.workers[0].busy, 1);
  ASSERT_EQ(r.tasks->consumers_busy, 1);
  ASSERT_GT(r.workers[0].started_ns, 0);

  ac_msg res = {.id = 9, .kind = 2};
  struct iovec out = {"ok", 2};
  ASSERT_OK(ac_worker_send_result(&r, 0, &res, &out, 1, -1));
  ASSERT_EQ(r.workers[0].take.id, 0);
  ASSERT_EQ(r.workers[0].take.block, 0);
  ASSERT_EQ(r.workers[0].tasks_done, 1);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0); /* the task's block went back with the result */

  ASSERT_OK(ac_worker_next_task(&r, 0, &got, buf, 0, 0));
  ASSERT_EQ(r.tasks->consumers_busy, 1); /* busy was returned before taking the next */
  ASSERT_EQ(got.id, 10);
  ASSERT_EQ(got.block, 0);
  ASSERT_EQ(got.len, 5);
  ASSERT_OK(ac_region_check_msg(&r, &got));
  ASSERT_MEM_EQ(ac_region_payload(&r, &got, buf), "hello", 5);

  ASSERT_OK(ac_ring_try_pop(r.results, &got, buf, NULL));
  ASSERT_EQ(got.id, 9);
  ASSERT_EQ(got.kind, 2);
  ASSERT_MEM_EQ(buf, "ok", 2);
  ASSERT_EQ(ac_worker_next_task(&r, 0, &got, buf, 1000000, 0), -ETIMEDOUT);
  ASSERT_EQ(r.tasks->consumers_busy, 0);
  ASSERT_EQ(r.workers[0].state, AC_W_IDLE);
  ac_region_destroy(&r);
}

/* A worker that keeps views of its task's payload (zero copy): the block outlives the task until
 * the last view lets go, whichever comes first, the views or the result. */
static uint64_t take_big_task(ac_region *r, uint64_t id) {
  static char big[50000];
  parent_send(r, id, big, sizeof big);
  ac_msg got;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_worker_next_task(r, 0, &got, buf, 0, 0));
  ASSERT_GT(got.block, 0);
  return got.block;
}

static uint64_t take_viewed_task(ac_region *r, uint64_t id, int64_t views) {
  uint64_t block = take_big_task(r, id);
  ac_region_share(r, block, views + 1); /* the views and the worker's record */
  return block;
}

static void send_ok(ac_region *r, uint64_t id) {
  ac_msg res = {.id = id};
  struct iovec out = {"ok", 2};
  ASSERT_OK(ac_worker_send_result(r, 0, &res, &out, 1, -1));
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_ring_try_pop(r->results, &res, buf, NULL));
  ASSERT_EQ(res.id, id);
}

TEST_IMPL(region_viewed_task_block_outlives_the_result) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  uint64_t block = take_viewed_task(&r, 1, 2);
  uint64_t in_use = r.hdr->arena.bytes_in_use;
  send_ok(&r, 1);
  ASSERT_EQ(r.workers[0].take.block, 0); /* the record let go... */
  ASSERT_EQ(r.hdr->arena.bytes_in_use, in_use); /* ...but the views still hold it */
  ASSERT_EQ(ac_region_block(&r, block)->state, AC_BLOCK_PUBLISHED);
  ac_region_unshare(&r, block);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, in_use);
  ac_region_unshare(&r, block); /* the last view frees it */
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
  ASSERT_EQ(r.hdr->arena.frees, 1);
  ac_region_destroy(&r);
}

TEST_IMPL(region_views_let_go_before_the_result_free_the_block_once) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  uint64_t block = take_viewed_task(&r, 1, 1);
  ac_region_unshare(&r, block); /* the view goes while the task runs: the record still holds */
  ASSERT_GT(r.hdr->arena.bytes_in_use, 0);
  ASSERT_EQ(r.workers[0].take.block, block);
  send_ok(&r, 1);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
  ASSERT_EQ(r.hdr->arena.frees, 1); /* freed once, by the result */
  /* A block nobody views goes with the result, as before. */
  take_big_task(&r, 2);
  send_ok(&r, 2);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
  ASSERT_EQ(r.hdr->arena.frees, 2);
  ac_region_destroy(&r);
}

/* A view let go in another thread while the result is sent: the block is freed exactly once. */
typedef struct {
  ac_region *r;
  uint64_t block;
} unshare_arg;

static void *unshare_thread(void *p) {
  unshare_arg *a = p;
  ac_region_unshare(a->r, a->block);
  return NULL;
}

TEST_IMPL(region_view_and_result_racing_free_the_block_once) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  for (int i = 1; i <= 200; i++) {
    unshare_arg a = {&r, take_viewed_task(&r, (uint64_t)i, 1)};
    pthread_t t;
    ASSERT_OK(pthread_create(&t, NULL, unshare_thread, &a));
    send_ok(&r, (uint64_t)i);
    ASSERT_OK(pthread_join(t, NULL));
    ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
    ASSERT_EQ(r.hdr->arena.frees, (uint64_t)i);
  }
  ac_region_destroy(&r);
}

/* A worker killed while views of its task's payload lived: the parent frees the block. */
TEST_IMPL(region_reap_frees_a_viewed_task_block) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  ASSERT_OK(ac_region_request_spawn(&r, 0));
  ASSERT_OK(ac_region_host_spawned(&r, 0, 1));
  take_viewed_task(&r, 4, 1);
  mark_exited(&r, 0, 1, 9);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.task_id, 4);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
  ac_region_destroy(&r);
}

/* Out-of-band payloads stay in their block: a worker's task always, a parent's result only while
 * at most half the arena is in use. Everything else is copied out and consumed. */
TEST_IMPL(region_keep_in_block_only_out_of_band_and_while_the_arena_has_room) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  static char big[50000];
  struct iovec iov = {big, sizeof big};
  ac_msg m = {.id = 1, .kind = AC_MSG_OOB};
  ASSERT_OK(ac_region_send(&r, r.results, &m, &iov, 1, ac_owner_tag(0, 0), NULL, NULL, -1, NULL));
  ASSERT_GT(m.block, 0);
  ASSERT_EQ(ac_region_keep_in_block(&r, &m, 0), 1);
  ASSERT_EQ(ac_region_keep_in_block(&r, &m, 1), 1);
  ac_msg plain = m;
  plain.kind = 0;
  ASSERT_EQ(ac_region_keep_in_block(&r, &plain, 1), 0);
  ac_msg in_slot = {.id = 2, .kind = AC_MSG_OOB, .len = 5};
  ASSERT_EQ(ac_region_keep_in_block(&r, &in_slot, 1), 0);
  /* Fill past half the arena: the parent's results are copied out now, workers' tasks are not. */
  uint64_t half = (r.hdr->arena.pages << AC_PAGE_SHIFT) / 2;
  while (r.hdr->arena.bytes_in_use <= half)
    ASSERT_GT(ac_arena_alloc(&r.hdr->arena, r.map, 60000, AC_OWNER_PARENT), 0);
  ASSERT_EQ(ac_region_keep_in_block(&r, &m, 0), 0);
  ASSERT_EQ(ac_region_keep_in_block(&r, &m, 1), 1);
  ac_region_destroy(&r);
}

TEST_IMPL(region_consume_forgets_the_record_then_frees) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  uint64_t block = take_big_task(&r, 7);
  ASSERT_EQ(r.workers[0].take.block, block);
  ac_region_consume(&r, block, &r.workers[0].take.block);
  ASSERT_EQ(r.workers[0].take.block, 0);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
  send_ok(&r, 7); /* the result frees nothing more */
  ASSERT_EQ(r.hdr->arena.frees, 1);
  ac_region_destroy(&r);
}

TEST_IMPL(region_shutdown_only_rises_and_closes_the_task_ring) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  ac_region_shutdown(&r, AC_SHUTDOWN_NONE);
  ASSERT_EQ(r.hdr->shutdown, AC_SHUTDOWN_NONE);
  ASSERT_EQ(r.tasks->closed, 0);
  ac_region_shutdown(&r, AC_SHUTDOWN_NOW);
  ASSERT_EQ(r.hdr->shutdown, AC_SHUTDOWN_NOW);
  ASSERT_NE(r.tasks->closed, 0);
  ac_region_shutdown(&r, AC_SHUTDOWN_DRAIN); /* never lowers: NOW stays NOW */
  ASSERT_EQ(r.hdr->shutdown, AC_SHUTDOWN_NOW);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_worker_next_task(&r, 0, &m, buf, 0, 0), AC_ECLOSED);
  ac_region_destroy(&r);
}

TEST_IMPL(region_drain_tasks_frees_their_payloads) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  static char big[50000];
  parent_send(&r, 1, big, sizeof big);
  parent_send(&r, 2, "small", 5);
  parent_send(&r, 3, big, sizeof big);
  ASSERT_GT(r.hdr->arena.bytes_in_use, 0);
  uint64_t id;
  for (uint64_t want = 1; want <= 3; want++) {
    ASSERT_OK(ac_region_drain_task(&r, &id));
    ASSERT_EQ(id, want);
  }
  ASSERT_EQ(ac_region_drain_task(&r, &id), -EAGAIN);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
  ASSERT_EQ(r.hdr->arena.frees, 2);
  ac_region_shutdown(&r, AC_SHUTDOWN_DRAIN);
  ASSERT_EQ(ac_region_drain_task(&r, &id), -EAGAIN);
  ac_region_destroy(&r);
}

TEST_IMPL(region_worker_set_item_names_the_item_and_its_start) {
  ac_region r;
  make_region(&r, 2, 1 << 20);
  int64_t before = ac_now_ns();
  ac_worker_set_item(&r, 1, 42);
  ASSERT_EQ(r.workers[1].item, 42);
  ASSERT_GE(r.workers[1].started_ns, before);
  ASSERT_LE(r.workers[1].started_ns, ac_now_ns());
  ASSERT_EQ(r.workers[0].item, 0);
  ac_region_destroy(&r);
}

TEST_IMPL(region_send_inline_boundary) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  static char data[AC_SLOT_INLINE + 1];
  struct iovec iov = {data, AC_SLOT_INLINE};
  ac_msg m = {.id = 1};
  ASSERT_OK(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
  ASSERT_EQ(m.block, 0);
  iov.iov_len = AC_SLOT_INLINE + 1;
  m = (ac_msg){.id = 2};
  ASSERT_OK(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
  ASSERT_GT(m.block, 0);
  ac_region_destroy(&r);
}

TEST_IMPL(region_send_too_big_or_out_of_space) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  static char data[1 << 20];
  struct iovec iov = {data, sizeof data};
  ac_msg m = {.id = 1};
  ASSERT_EQ(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, -1, NULL),
            AC_ETOOBIG);
  ASSERT_EQ(ac_ring_len(r.tasks), 0);
  iov.iov_len = 600 << 10; /* fits once, not twice */
  ASSERT_OK(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
  int64_t t0 = ac_now_ns();
  ASSERT_EQ(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, 20000000, NULL),
            -ETIMEDOUT);
  ASSERT_GE(ac_now_ns() - t0, 15000000);
  _Atomic uint32_t word = 1;
  ac_watch w = {&word, 0};
  ASSERT_EQ(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, -1, &w),
            AC_EEVENT);
  ASSERT_EQ(ac_ring_len(r.tasks), 1);
  ac_region_destroy(&r);
}

/* Queued tasks never take the last quarter of the arena: a worker can still send its result
 * (else it would never take the next task: a deadlock). A lone big task still goes. */
TEST_IMPL(region_tasks_leave_a_quarter_of_the_arena_to_results) {
  ac_region r;
  make_region(&r, 1, 1 << 20); /* 256 pages */
  static char data[64 << 10];   /* one 128 KiB block each (64 KiB + its header) */
  struct iovec iov = {data, sizeof data};
  ac_msg m = {.id = 1};
  for (int i = 0; i < 6; i++)   /* 6 x 128 KiB = 3/4 of 1 MiB */
    ASSERT_OK(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
  ASSERT_EQ(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, 5000000, NULL),
            -ETIMEDOUT);
  ASSERT_OK(ac_region_send(&r, r.results, &m, &iov, 1, 1, NULL, NULL, 0, NULL));
  ASSERT_OK(ac_region_send(&r, r.results, &m, &iov, 1, 1, NULL, NULL, 0, NULL));
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 1 << 20);
  ac_region_destroy(&r);

  make_region(&r, 1, 1 << 20);
  static char lone[900 << 10]; /* more than 3/4 of the arena, alone */
  iov = (struct iovec){lone, sizeof lone};
  ASSERT_OK(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, 0, NULL));
  ac_region_destroy(&r);
}

/* A full ring: the block allocated for the payload is freed again when the push gives up. */
TEST_IMPL(region_send_frees_its_block_when_the_ring_stays_full) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  for (int i = 0; i < 16; i++) parent_send(&r, (uint64_t)i + 1, "x", 1);
  static char data[10000];
  struct iovec iov = {data, sizeof data};
  _Atomic uint64_t held = 0;
  ac_msg m = {.id = 99};
  ASSERT_EQ(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, &held, 5000000, NULL),
            -ETIMEDOUT);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
  ASSERT_EQ(held, 0);
  ac_region_destroy(&r);
}

TEST_IMPL(region_check_msg_rejects_forged_headers) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  ac_msg m = {.id = 1, .len = AC_SLOT_INLINE + 1};
  ASSERT_EQ(ac_region_check_msg(&r, &m), AC_ECORRUPT);
  m.len = AC_SLOT_INLINE;
  ASSERT_OK(ac_region_check_msg(&r, &m));
  m.len = 10;
  m.block = r.size + 4096;
  ASSERT_EQ(ac_region_check_msg(&r, &m), AC_ECORRUPT);
  m.block = UINT64_MAX;
  ASSERT_EQ(ac_region_check_msg(&r, &m), AC_ECORRUPT);
  m.block = r.hdr->off_tasks; /* page aligned, inside the region, not in the arena */
  ASSERT_EQ(ac_region_check_msg(&r, &m), AC_ECORRUPT);
  m.block = r.hdr->arena.base_off; /* the arena's first page, never allocated */
  ASSERT_EQ(ac_region_check_msg(&r, &m), AC_ECORRUPT);
  /* A real block whose header was scribbled on. */
  static char data[5000];
  struct iovec iov = {data, sizeof data};
  ac_msg sent = {.id = 2};
  ASSERT_OK(ac_region_send(&r, r.tasks, &sent, &iov, 1, AC_OWNER_PARENT, NULL, NULL, -1, NULL));
  ASSERT_OK(ac_region_check_msg(&r, &sent));
  ac_block *b = ac_region_block(&r, sent.block);
  b->len = 1 << 30;
  ASSERT_EQ(ac_region_check_msg(&r, &sent), AC_ECORRUPT);
  b->len = 5000;
  atomic_store(&b->state, AC_BLOCK_FREE);
  ASSERT_EQ(ac_region_check_msg(&r, &sent), AC_ECORRUPT);
  ac_region_destroy(&r);
}

/* A forged offset just below the end of the region must be rejected before anything is read at
 * it: the region's last page is made inaccessible, so a read there faults. */
TEST_IMPL(region_check_msg_reads_nothing_at_a_forged_offset) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  char *last = r.base + r.size - 4096;
  ASSERT_OK(mprotect(last, 4096, PROT_NONE));
  ac_msg m = {.id = 1, .len = 10};
  for (uint64_t back = 1; back <= 64; back++) {
    m.block = (uint64_t)(last - r.base) - back; /* its header would straddle the guard */
    ASSERT_EQ(ac_region_check_msg(&r, &m), AC_ECORRUPT);
  }
  ac_region_destroy(&r);
}

TEST_IMPL(region_worker_slot_state_machine) {
  ac_region r;
  make_region(&r, 2, 1 << 20);
  uint32_t ev = atomic_load(&r.hdr->event_word);
  ASSERT_EQ(ac_region_request_spawn(&r, 2), -EINVAL);
  ASSERT_EQ(ac_region_request_kill(&r, 7), -EINVAL);
  ASSERT_EQ(ac_region_host_spawned(&r, 0, 123), -EBUSY); /* not requested */
  ASSERT_OK(ac_region_request_spawn(&r, 0));
  ASSERT_EQ(ac_region_request_spawn(&r, 0), -EBUSY);
  ASSERT_EQ(r.workers[0].state, AC_W_SPAWN);
  atomic_store(&r.workers[0].kill_req, 1);
  ASSERT_OK(ac_region_host_spawned(&r, 0, 123));
  ASSERT_EQ(r.workers[0].state, AC_W_STARTING);
  ASSERT_EQ(r.workers[0].pid, 123);
  ASSERT_EQ(r.workers[0].gen, 1);
  ASSERT_EQ(r.workers[0].kill_req, 0); /* a stale request never hits the new process */
  ASSERT_NE(atomic_load(&r.hdr->event_word), ev);
  ASSERT_OK(ac_region_request_kill(&r, 0));
  ASSERT_EQ(r.workers[0].kill_req, 1);
  ev = atomic_load(&r.hdr->event_word);
  ASSERT_OK(ac_region_host_exited(&r, 0, 9));
  ASSERT_EQ(r.workers[0].state, AC_W_EXITED);
  ASSERT_NE(atomic_load(&r.hdr->event_word), ev);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 1, &out, buf), 0); /* slot 1 never ran */
  ASSERT_EQ(ac_region_reap(&r, 5, &out, buf), -EINVAL);
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.pid, 123);
  ASSERT_EQ(out.wait_status, 9);
  ASSERT_EQ(out.gen, 1);
  ASSERT_EQ(r.workers[0].state, AC_W_EMPTY);
  ASSERT_EQ(r.workers[0].kill_req, 0);
  ASSERT_OK(ac_region_request_spawn(&r, 0)); /* the slot is free for a replacement */
  ASSERT_OK(ac_region_host_spawned(&r, 0, 124));
  ASSERT_EQ(r.workers[0].gen, 2);
  ac_region_destroy(&r);
}

/* A worker process killed while running a task: reap names the task and frees its block. */
TEST_IMPL(region_reap_after_death_while_running) {
  ac_region r;
  make_region(&r, 2, 1 << 20);
  static char big[50000];
  parent_send(&r, 5, big, sizeof big);
  ASSERT_OK(ac_region_request_spawn(&r, 0));
  ASSERT_OK(ac_region_host_spawned(&r, 0, 1));
  pid_t pid = fork();
  if (pid == 0) {
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    if (ac_worker_next_task(&r, 0, &m, buf, -1, 0) != 0) _exit(2);
    atomic_store(&r.workers[0].item, 3);
    pause(); /* "running" until killed */
    _exit(0);
  }
  while (atomic_load(&r.workers[0].item) != 3) usleep(1000);
  kill(pid, SIGKILL);
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  mark_exited(&r, 0, pid, st);
  ASSERT_GT(r.hdr->arena.bytes_in_use, 0);
  ASSERT_EQ(r.tasks->consumers_busy, 1);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.task_id, 5);
  ASSERT_EQ(out.item, 3);
  ASSERT_EQ(out.recovered, 0);
  ASSERT_EQ(out.pid, pid);
  ASSERT(WIFSIGNALED(out.wait_status) && WTERMSIG(out.wait_status) == SIGKILL);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0); /* the task's block was reclaimed */
  ASSERT_EQ(r.workers[0].state, AC_W_EMPTY);
  ASSERT_EQ(r.tasks->consumers_busy, 0); /* the dead worker's busy count was returned */
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 0);
  ac_region_destroy(&r);
}

/* A worker that died holding a claimed, unreleased slot: its task is recovered, not lost. */
TEST_IMPL(region_reap_recovers_task_taken_but_not_started) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  parent_send(&r, 6, "abc", 3);
  static char big[9000];
  memset(big, 'z', sizeof big);
  parent_send(&r, 7, big, sizeof big);
  ac_worker_rec *w = &r.workers[0];
  for (int i = 0; i < 2; i++) {
    uint64_t pos = atomic_load(&r.tasks->dequeue_pos);
    atomic_store(&w->take.pos, pos + 1); /* the state a kill between CAS and release leaves */
    ASSERT(atomic_compare_exchange_strong(&r.tasks->dequeue_pos, &pos, pos + 1));
    w->state = AC_W_EXITED;
    ac_reaped out;
    uint8_t buf[AC_SLOT_INLINE];
    ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
    ASSERT_EQ(out.recovered, 1);
    ASSERT_EQ(out.task_id, 0);
    if (i == 0) {
      ASSERT_EQ(out.msg.id, 6);
      ASSERT_EQ(out.msg.len, 3);
      ASSERT_MEM_EQ(buf, "abc", 3);
    } else {
      /* An out-of-line task comes back with its block, still allocated, ready to resend. */
      ASSERT_EQ(out.msg.id, 7);
      ASSERT_OK(ac_region_check_msg(&r, &out.msg));
      ASSERT_MEM_EQ(ac_region_payload(&r, &out.msg, buf), big, sizeof big);
      ASSERT_OK(ac_region_release(&r, out.msg.block));
    }
  }
  ASSERT_EQ(ac_ring_len(r.tasks), 0);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
  ac_region_destroy(&r);
}

/* A worker that died while publishing a result: a tombstone unblocks the result ring. */
TEST_IMPL(region_reap_unblocks_result_ring) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  ac_worker_rec *w = &r.workers[0];
  uint64_t pos = atomic_load(&r.results->enqueue_pos);
  atomic_store(&w->push_pos, pos + 1);
  ASSERT(atomic_compare_exchange_strong(&r.results->enqueue_pos, &pos, pos + 1));
  atomic_store(&w->take.id, 8);
  w->state = AC_W_EXITED;
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.task_id, 8);
  ac_msg m;
  ASSERT_EQ(ac_ring_try_pop(r.results, &m, buf, NULL), -EAGAIN); /* tombstone skipped */
  ASSERT_EQ(ac_ring_len(r.results), 0);
  ac_region_destroy(&r);
}

/* A worker that died while writing a big result: the block it was filling is freed. */
TEST_IMPL(region_reap_frees_a_result_block_being_written) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  ASSERT_OK(ac_region_request_spawn(&r, 0));
  ASSERT_OK(ac_region_host_spawned(&r, 0, 1));
  ac_worker_rec *w = &r.workers[0];
  int64_t b = ac_arena_alloc(&r.hdr->arena, r.map, 10000, ac_owner_tag(0, w->gen));
  ASSERT_GT(b, 0);
  atomic_store(&w->result_block, (uint64_t)b);
  /* A block of another owner named by a stale record is left alone. */
  int64_t other = ac_arena_alloc(&r.hdr->arena, r.map, 10000, AC_OWNER_PARENT);
  ASSERT_GT(other, 0);
  mark_exited(&r, 0, 1, 9);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(ac_arena_check(&r.hdr->arena, r.map, (uint64_t)b, 0), AC_ECORRUPT); /* freed */
  ASSERT_OK(ac_region_request_spawn(&r, 0));
  ASSERT_OK(ac_region_host_spawned(&r, 0, 2));
  atomic_store(&w->result_block, (uint64_t)other);
  mark_exited(&r, 0, 2, 9);
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_OK(ac_arena_check(&r.hdr->arena, r.map, (uint64_t)other, 0)); /* still allocated */
  ac_region_destroy(&r);
}

/* A worker killed after its result was published but before its record let go of the task:
 * the parent sees both the result and the task named as running. Callers keep the first
 * outcome of a task (documented here so the binding's handling has a reason). */
TEST_IMPL(region_reap_after_result_published_still_names_the_task) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  parent_send(&r, 12, "t", 1);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_worker_next_task(&r, 0, &m, buf, 0, 0));
  ac_msg res = {.id = 12};
  struct iovec iov = {"r", 1};
  ASSERT_OK(ac_region_send(&r, r.results, &res, &iov, 1, 0, &r.workers[0].push_pos,
                           &r.workers[0].result_block, -1, NULL));
  mark_exited(&r, 0, 1, 9); /* killed before send_result's own bookkeeping */
  ac_reaped out;
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.task_id, 12);
  ASSERT_OK(ac_ring_try_pop(r.results, &m, buf, NULL));
  ASSERT_EQ(m.id, 12);
  ac_region_destroy(&r);
}

/* A claim record is written before the compare-and-swap that takes a position, so a worker
 * killed between the two leaves a claim on a position that a live worker may own now. Reaping
 * the dead one must not touch the live one's slot. Result ring first: worker 1 (alive) claimed
 * position P and is writing its result; worker 0 (dead) names P too. */
TEST_IMPL(region_reap_ignores_a_stale_result_claim) {
  ac_region r;
  make_region(&r, 2, 1 << 20);
  for (uint32_t k = 0; k < 2; k++) {
    ASSERT_OK(ac_region_request_spawn(&r, k));
    ASSERT_OK(ac_region_host_spawned(&r, k, (int32_t)k + 100));
    atomic_store(&r.workers[k].state, AC_W_IDLE);
  }
  uint64_t pos = atomic_load(&r.results->enqueue_pos);
  atomic_store(&r.workers[0].push_pos, pos + 1); /* dead: stored, then lost the CAS */
  atomic_store(&r.workers[1].push_pos, pos + 1); /* alive: stored, won the CAS, writing */
  ASSERT(atomic_compare_exchange_strong(&r.results->enqueue_pos, &pos, pos + 1));
  mark_exited(&r, 0, 100, 9);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ac_msg m;
  ASSERT_EQ(ac_ring_try_pop(r.results, &m, buf, NULL), -EAGAIN); /* still being written */
  /* Worker 1 finishes its publish the way ac_ring_try_push does. */
  ac_slot *s = &r.results->slots[pos & r.results->mask];
  s->msg = (ac_msg){.id = 555, .len = 1, .kind = 3};
  s->data[0] = 'R';
  atomic_store(&s->seq, pos + 1 - (pos & r.results->mask)); /* ring.c stores seq - index */
  atomic_store(&r.workers[1].push_pos, 0);
  ASSERT_OK(ac_ring_try_pop(r.results, &m, buf, NULL));
  ASSERT_EQ(m.id, 555); /* the live worker's result, not a tombstone in its place */
  ASSERT_EQ(buf[0], 'R');
  for (uint64_t i = 0; i < 40; i++) { /* and the slot keeps cycling */
    ac_msg x = {.id = i};
    ASSERT_OK(ac_ring_try_push(r.results, &x, NULL, NULL));
    ASSERT_OK(ac_ring_try_pop(r.results, &m, buf, NULL));
    ASSERT_EQ(m.id, i);
  }
  ac_region_destroy(&r);
}

/* The same on the task ring: worker 1 (alive) is between its CAS and its release of position
 * P; worker 0 (dead) names P too. The task must not be "recovered" (run twice). */
TEST_IMPL(region_reap_ignores_a_stale_task_claim) {
  ac_region r;
  make_region(&r, 2, 1 << 20);
  for (uint32_t k = 0; k < 2; k++) {
    ASSERT_OK(ac_region_request_spawn(&r, k));
    ASSERT_OK(ac_region_host_spawned(&r, k, (int32_t)k + 100));
    atomic_store(&r.workers[k].state, AC_W_IDLE);
  }
  parent_send(&r, 31, "a", 1);
  uint64_t pos = atomic_load(&r.tasks->dequeue_pos);
  atomic_store(&r.workers[0].take.pos, pos + 1);
  atomic_store(&r.workers[1].take.pos, pos + 1);
  ASSERT(atomic_compare_exchange_strong(&r.tasks->dequeue_pos, &pos, pos + 1));
  mark_exited(&r, 0, 100, 9);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.recovered, 0);
  ASSERT_EQ(out.task_id, 0);
  /* Worker 1 still owns the slot and releases it. */
  ac_slot *s = &r.tasks->slots[pos & r.tasks->mask];
  ASSERT_EQ(s->msg.id, 31);
  ASSERT_EQ(atomic_load(&s->seq), pos + 1 - (pos & r.tasks->mask)); /* not released */
  ac_region_destroy(&r);
}

/* A dead worker's claim on a position nobody took yet: nothing to repair, and a live worker
 * that takes the position afterwards gets the task. */
TEST_IMPL(region_reap_of_a_claim_before_the_cas) {
  ac_region r;
  make_region(&r, 2, 1 << 20);
  parent_send(&r, 41, "a", 1);
  uint64_t pos = atomic_load(&r.tasks->dequeue_pos);
  atomic_store(&r.workers[0].take.pos, pos + 1);
  uint64_t rpos = atomic_load(&r.results->enqueue_pos);
  atomic_store(&r.workers[0].push_pos, rpos + 1);
  mark_exited(&r, 0, 100, 9);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.recovered, 0);
  ASSERT_EQ(ac_ring_len(r.results), 0);
  ac_msg m;
  ASSERT_OK(ac_worker_next_task(&r, 1, &m, buf, 0, 0));
  ASSERT_EQ(m.id, 41);
  ac_msg res = {.id = 41};
  ASSERT_OK(ac_worker_send_result(&r, 1, &res, NULL, 0, -1));
  ASSERT_OK(ac_ring_try_pop(r.results, &m, buf, NULL));
  ASSERT_EQ(m.id, 41);
  ac_region_destroy(&r);
}

/* A worker killed just after publishing a big result, before clearing its note of the block:
 * the block is in the ring (reap leaves it to the parent), or already in the parent's hands as a
 * zero-copy view (adopted: reap leaves it too). */
TEST_IMPL(region_reap_keeps_a_published_result_block) {
  for (int adopted = 0; adopted < 2; adopted++) {
    ac_region r;
    make_region(&r, 1, 1 << 20);
    ASSERT_OK(ac_region_request_spawn(&r, 0));
    ASSERT_OK(ac_region_host_spawned(&r, 0, 1));
    parent_send(&r, 7, "t", 1);
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    ASSERT_OK(ac_worker_next_task(&r, 0, &m, buf, 0, 0));
    static char big[10000];
    struct iovec iov = {big, sizeof big};
    ac_msg res = {.id = 7};
    ASSERT_OK(ac_worker_send_result(&r, 0, &res, &iov, 1, -1));
    ASSERT_OK(ac_ring_try_pop(r.results, &m, buf, NULL));
    uint64_t block = m.block;
    ASSERT_GT(block, 0);
    if (adopted) {
      ac_region_adopt(&r, block);
    } else { /* back into the ring: as if the parent had not popped it yet */
      ASSERT_OK(ac_ring_try_push(r.results, &m, NULL, NULL));
    }
    atomic_store(&r.workers[0].result_block, block); /* died before clearing it */
    mark_exited(&r, 0, 12345, SIGKILL);
    ac_reaped out;
    ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
    ASSERT_EQ(out.task_id, 0);
    ASSERT_EQ(atomic_load(&ac_region_block(&r, block)->state), AC_BLOCK_PUBLISHED);
    if (!adopted) {
      ASSERT_OK(ac_ring_try_pop(r.results, &m, buf, NULL));
      ASSERT_EQ(m.block, block);
    }
    ASSERT_OK(ac_region_release(&r, block));
    ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
    ac_region_destroy(&r);
  }
}

/* A worker killed while it waits for room in a full result ring with a big result: the block
 * holding that result was allocated and marked published but never entered the ring. Reap frees
 * it: still tagged as the worker's and not in the ring, the parent never took it. */
TEST_IMPL(region_reap_frees_a_result_block_stuck_before_a_full_ring) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  ASSERT_OK(ac_region_request_spawn(&r, 0));
  ASSERT_OK(ac_region_host_spawned(&r, 0, 1));
  for (uint64_t i = 0; i < 16; i++) {
    ac_msg m = {.id = 1000 + i};
    ASSERT_OK(ac_ring_try_push(r.results, &m, NULL, NULL));
  }
  parent_send(&r, 7, "t", 1);
  pid_t pid = fork();
  if (pid == 0) {
    ac_msg m;
    uint8_t buf[AC_SLOT_INLINE];
    if (ac_worker_next_task(&r, 0, &m, buf, -1, 0) != 0) _exit(2);
    static char big[10000];
    struct iovec iov = {big, sizeof big};
    ac_msg res = {.id = 7};
    ac_worker_send_result(&r, 0, &res, &iov, 1, -1);
    _exit(0);
  }
  while (atomic_load(&r.results->producers_sleeping) == 0) usleep(1000);
  kill(pid, SIGKILL);
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  mark_exited(&r, 0, pid, st);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(out.task_id, 7);
  ac_msg m;
  while (ac_ring_try_pop(r.results, &m, buf, NULL) == 0) ASSERT_GE(m.id, 1000);
  ASSERT_EQ(r.hdr->arena.bytes_in_use, 0);
  ac_region_destroy(&r);
}

/* Tasks queued by the parent hold arena blocks until their results are published, and blocks
 * are split but not merged until the arena empties: queued tasks can hold every block a result
 * would need, and only the workers' results let the parent take more. A result the arena has no
 * room for therefore goes at once in a segment of its own (AC_MSG_SEG): the parent opens it from
 * the reference in the slot, and the task's block is freed as for any result. */
TEST_IMPL(region_a_result_the_arena_has_no_room_for_travels_in_a_segment) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  static char big[300000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
  struct iovec iov = {big, sizeof big};
  int queued = 0;
  for (;;) {
    ac_msg m = {.id = (uint64_t)queued + 1};
    int rc = ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, 0, NULL);
    if (rc == -ETIMEDOUT) break; /* the parent's back-pressure: it waits for results now */
    ASSERT_OK(rc);
    queued++;
  }
  ASSERT_GE(queued, 1);
  /* What the reserve left is split into small blocks: none can hold the result. */
  while (ac_arena_alloc(&r.hdr->arena, r.map, 100, AC_OWNER_PARENT) > 0) {
  }
  uint64_t in_use = atomic_load(&r.hdr->arena.bytes_in_use);
  ac_msg m;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_worker_next_task(&r, 0, &m, buf, 0, 0));
  ac_msg res = {.id = m.id, .kind = AC_MSG_OOB, .aux = 7};
  ASSERT_OK(ac_worker_send_result(&r, 0, &res, &iov, 1, 0)); /* no wait at all */
  ASSERT_EQ(res.kind, AC_MSG_OOB); /* the caller's message is left as it was */
  ASSERT_EQ(atomic_load(&r.workers[0].take.block), 0);
  ASSERT_EQ(atomic_load(&r.hdr->arena.bytes_in_use), in_use - 512 * 1024); /* the task's block */
  ac_msg got;
  ASSERT_OK(ac_ring_try_pop(r.results, &got, buf, NULL));
  ASSERT_EQ(got.id, m.id);
  ASSERT_EQ(got.kind, AC_MSG_OOB | AC_MSG_SEG);
  ASSERT_EQ(got.aux, 7);
  ASSERT_EQ(got.block, 0);
  ASSERT_EQ(got.len, sizeof(ac_seg_ref));
  ac_seg_ref ref;
  memcpy(&ref, buf, sizeof ref);
  ac_seg seg;
  ASSERT_OK(ac_seg_open(&seg, &ref));
  ASSERT_EQ(seg.size, sizeof big);
  ASSERT_MEM_EQ(seg.data, big, sizeof big);
  ac_seg_close(&seg);
  ASSERT_EQ(ac_seg_sweep(), 0); /* opened: the sender's lingering handle is gone too */
  ac_region_destroy(&r);
}

/* A task that finds no arena room while nothing is in flight (no task queued or running, no
 * result queued) would wait forever: what holds the arena is the parent's (zero-copy results an
 * ordered imap keeps). It goes at once in a segment of its own, and the worker reads it there. */
TEST_IMPL(region_a_task_with_nothing_in_flight_to_free_room_travels_in_a_segment) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  /* The parent's views hold most of the arena, split small. */
  while (ac_arena_alloc(&r.hdr->arena, r.map, 100, AC_OWNER_PARENT) > 0) {
  }
  static char big[300000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 5);
  struct iovec iov = {big, sizeof big};
  ac_msg m = {.id = 9, .kind = AC_TASK_CALL | AC_MSG_TRACK};
  ASSERT_OK(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, 0, NULL));
  /* With a task queued, the next one waits for room as back-pressure, not in a segment. */
  ac_msg m2 = {.id = 10};
  ASSERT_EQ(ac_region_send(&r, r.tasks, &m2, &iov, 1, AC_OWNER_PARENT, NULL, NULL, 5000000, NULL),
            -ETIMEDOUT);
  ac_msg got;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_OK(ac_worker_next_task(&r, 0, &got, buf, 0, 0));
  ASSERT_EQ(got.id, 9);
  ASSERT_EQ(got.kind, AC_TASK_CALL | AC_MSG_TRACK | AC_MSG_SEG);
  ASSERT_EQ(got.block, 0);
  ASSERT_EQ(atomic_load(&r.workers[0].take.block), 0);
  ac_seg_ref ref;
  memcpy(&ref, buf, sizeof ref);
  ac_seg seg;
  ASSERT_OK(ac_seg_open(&seg, &ref));
  ASSERT_MEM_EQ(seg.data, big, sizeof big);
  ac_seg_close(&seg);
  ASSERT_EQ(ac_seg_sweep(), 0);
  /* The worker answers and comes back for more: nothing in flight again. */
  ac_msg res = {.id = 9};
  ASSERT_OK(ac_worker_send_result(&r, 0, &res, NULL, 0, 0));
  ASSERT_OK(ac_ring_try_pop(r.results, &got, buf, NULL));
  ASSERT_EQ(ac_worker_next_task(&r, 0, &got, buf, 0, 0), -ETIMEDOUT);
  /* One drained at shutdown unpins its segment: nothing lingers. */
  ASSERT_OK(ac_region_send(&r, r.tasks, &m, &iov, 1, AC_OWNER_PARENT, NULL, NULL, 0, NULL));
  ASSERT_GT(ac_seg_sweep(), 0);
  uint64_t id;
  ASSERT_OK(ac_region_drain_task(&r, &id));
  ASSERT_EQ(id, 9);
  ASSERT_EQ(ac_seg_sweep(), 0);
  ac_region_destroy(&r);
}

/* A worker killed inside an arena alloc or free (between the gate's count and its leave): reap
 * takes it out of the gate, so the arena can reset again and give a large block once everything
 * is free (without the repair a 32 KiB block never came back after small ones split the arena). */
TEST_IMPL(region_reap_takes_a_dead_worker_out_of_the_arena_gate) {
  ac_region r;
  make_region(&r, 1, 1 << 20);
  ac_arena *a = &r.hdr->arena;
  ac_worker_rec *w = &r.workers[0];
  pid_t pid = fork();
  if (pid == 0) {
    ac_arena_set_gate_mark(&w->arena_gate); /* as the template does for a new worker */
    int64_t b = ac_arena_alloc(a, r.map, 100, 1);
    if (b <= 0 || ac_arena_free(a, r.map, (uint64_t)b) != 0) _exit(2);
    if (atomic_load(&w->arena_gate) != 0) _exit(3); /* balanced outside the gate */
    atomic_fetch_add(&a->gate, 1); /* then killed inside one: counted and marked */
    atomic_fetch_add(&w->arena_gate, 1);
    _exit(0);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_EXITED(st, 0);
  ASSERT_EQ(atomic_load(&a->gate), 1);
  /* Small blocks split the whole arena; all freed, a big block needs a reset. */
  enum { N = 64 };
  int64_t got[N];
  int n = 0;
  while (n < N && (got[n] = ac_arena_alloc(a, r.map, 100, 1)) > 0) n++;
  for (int i = 0; i < n; i++) ASSERT_OK(ac_arena_free(a, r.map, (uint64_t)got[i]));
  uint64_t max = ac_arena_max_payload(a);
  ASSERT_EQ(ac_arena_alloc(a, r.map, max, 1), AC_ENOSPACE); /* the stuck gate forbids it */
  mark_exited(&r, 0, pid, st);
  ac_reaped out;
  uint8_t buf[AC_SLOT_INLINE];
  ASSERT_EQ(ac_region_reap(&r, 0, &out, buf), 1);
  ASSERT_EQ(atomic_load(&a->gate), 0);
  ASSERT_EQ(atomic_load(&w->arena_gate), 0);
  int64_t big = ac_arena_alloc(a, r.map, max, 1);
  ASSERT_GT(big, 0);
  ASSERT_OK(ac_arena_free(a, r.map, (uint64_t)big));
  ac_region_destroy(&r);
}
