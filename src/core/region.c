/* region.c: creating the pool's shared region, sending and receiving payloads through it, and the
 * worker and parent steps that keep every task accounted for when a worker dies. */
#include "allcores/region.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "allcores/clock.h"
#include "allcores/errors.h"
#include "allcores/futex.h"
#include "allcores/protocol.h"
#include "allcores/shared_segment.h"

#define PAGE ((uint64_t)1 << AC_PAGE_SHIFT)

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

int ac_region_create(ac_region *r, const ac_region_config *cfg) {
  memset(r, 0, sizeof *r);
  r->memfd = -1;
  if (cfg->nworkers == 0 || cfg->nworkers > AC_MAX_WORKERS) return -EINVAL;
  uint64_t off_workers = align_up(sizeof(ac_header), 64);
  uint64_t off_tasks = align_up(off_workers + cfg->nworkers * sizeof(ac_worker_rec), PAGE);
  uint64_t off_results = align_up(off_tasks + ac_ring_bytes(cfg->task_slots), PAGE);
  uint64_t off_arena = align_up(off_results + ac_ring_bytes(cfg->result_slots), PAGE);
  uint64_t arena_bytes = align_up(cfg->arena_bytes, PAGE);
  uint64_t size = off_arena + arena_bytes;
  /* Only the first segment is mapped now (the whole arena when it is too small to have two: see
   * ac_arena_init); sizing the memfd costs nothing until pages are used. */
  uint64_t mapped = off_arena + (arena_bytes < 2 * AC_REGION_FIRST_SEGMENT ? arena_bytes
                                                                           : AC_REGION_FIRST_SEGMENT);

  /* memfd: anonymous, sealed off from other users, gone when the last mapping goes. */
  int fd = memfd_create("allcores-pool", MFD_CLOEXEC);
  if (fd < 0) return -errno;
  ac_arena_map *map = calloc(1, sizeof *map);
  if (!map) {
    close(fd);
    return -ENOMEM;
  }
  void *base = MAP_FAILED;
  if (ftruncate(fd, (off_t)size) == 0)
    base = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  int err = base == MAP_FAILED ? -errno : 0;
  if (err) {
    free(map);
    close(fd);
    return err;
  }

  r->base = base;
  r->size = size;
  r->mapped = mapped;
  r->memfd = fd;
  r->map = map;
  r->hdr = base;
  r->workers = (ac_worker_rec *)(r->base + off_workers);
  r->tasks = (ac_ring *)(r->base + off_tasks);
  r->results = (ac_ring *)(r->base + off_results);

  ac_header *h = r->hdr;
  h->magic = AC_REGION_MAGIC;
  h->version = 1;
  h->nworkers = cfg->nworkers;
  h->size = size;
  h->off_workers = off_workers;
  h->off_tasks = off_tasks;
  h->off_results = off_results;
  atomic_store(&h->parent_pid, getpid());
  /* Only one worker spins for tasks at a time: on few cores more spinners steal the CPU the
   * parent needs to produce the next task. Parent threads draining results spin one at a time. */
  if ((err = ac_ring_init(r->tasks, cfg->task_slots, 1)) ||
      (err = ac_ring_init(r->results, cfg->result_slots, 1)) ||
      (err = ac_arena_init(&h->arena, off_arena, arena_bytes, AC_REGION_FIRST_SEGMENT))) {
    ac_region_destroy(r);
    return err;
  }
  ac_arena_map_init(map, &h->arena, r->base, mapped, fd);
  return 0;
}

void ac_region_destroy(ac_region *r) {
  ac_seg_sweep(); /* segments this process sent whose receivers have opened them since */
  if (r->base) {
    if (r->map) ac_arena_map_release(r->map);
    munmap(r->base, r->mapped);
    if (r->memfd >= 0) close(r->memfd);
  }
  free(r->map);
  memset(r, 0, sizeof *r);
  r->memfd = -1;
}

int ac_region_map_private(const ac_region *r, const char *at, size_t before, size_t len,
                          void **map, size_t *map_len, char **at_private) {
  if (r->memfd < 0 || !r->base) return -EBADF;
  /* `at` is in the region's first mapping or one of its segments; the range must stay there. */
  uint64_t off, back, room;
  if (ac_arena_map_find(r->map, at, &off, &back, &room) != 0 || back < before || room < len)
    return -EINVAL;
  uint64_t from = (off - before) & ~(PAGE - 1);
  uint64_t to = align_up(off + len, PAGE);
  void *m = mmap(NULL, to - from, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, r->memfd,
                 (off_t)from);
  if (m == MAP_FAILED) return -errno;
  *map = m;
  *map_len = to - from;
  *at_private = (char *)m + (off - from);
  return 0;
}

static int sleep_ns(int64_t ns) {
  struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
  return nanosleep(&ts, NULL) == 0 ? 0 : -errno;
}

/* Tasks may fill the arena only up to (AC_RESULT_RESERVE_DIV - 1) / AC_RESULT_RESERVE_DIV of it,
 * unless it is otherwise empty (a single payload that large still goes). The rest is kept for
 * results: when queued tasks filled the whole arena, a worker could not allocate its result, so
 * it would never take the next task and free space: a deadlock, not back-pressure. */
static int tasks_may_take(ac_region *r, uint64_t len) {
  ac_arena *a = &r->hdr->arena;
  uint64_t used = atomic_load_explicit(&a->bytes_in_use, memory_order_relaxed);
  if (used == 0) return 1;
  uint64_t cap = (a->pages << AC_PAGE_SHIFT) / AC_RESULT_RESERVE_DIV * (AC_RESULT_RESERVE_DIV - 1);
  return used + ac_arena_block_bytes(a, len) <= cap;
}

/* Whether nothing the pool's processes are doing will free arena room: no task queued or being
 * run, no result queued. What then holds the arena is the parent's: results it keeps as
 * zero-copy views (an ordered imap keeps those ahead of the one its caller waits for). */
static int nothing_in_flight(ac_region *r) {
  if (ac_ring_len(r->tasks) || ac_ring_len(r->results)) return 0;
  for (uint32_t k = 0; k < r->hdr->nworkers; k++)
    if (atomic_load_explicit(&r->workers[k].busy, memory_order_acquire)) return 0;
  return 1;
}

/* Allocates an arena block, waiting (with growing naps) while the arena is full (for a task:
 * while the part tasks may use is). Returns AC_ENOSPACE at once where waiting could be forever:
 * for a result (queued tasks may hold every block it would need, blocks being split but not
 * merged until the arena empties, and only results let the parent take more) and for a task
 * when nothing in flight will free room. */
static int64_t alloc_wait(ac_region *r, int for_task, uint64_t len, uint64_t owner,
                          int64_t deadline, const ac_watch *watch) {
  int64_t nap = 20000;
  for (;;) {
    int64_t off = AC_ENOSPACE;
    if (!for_task || tasks_may_take(r, len))
      off = ac_arena_alloc(&r->hdr->arena, r->map, len, owner);
    if (off != AC_ENOSPACE || !for_task || nothing_in_flight(r)) return off;
    if (ac_watch_fired(watch)) return AC_EEVENT;
    if (atomic_load(&r->tasks->closed) && atomic_load(&r->hdr->shutdown) == AC_SHUTDOWN_NOW)
      return AC_ECLOSED;
    int64_t now = ac_now_ns();
    if (deadline != INT64_MAX && now >= deadline) return -ETIMEDOUT;
    int64_t step = nap;
    if (deadline != INT64_MAX && deadline - now < step) step = deadline - now;
    int rc = sleep_ns(step);
    if (rc == -EINTR) return rc;
    if (nap < 2000000) nap *= 2;
  }
}

/* Sends a payload the arena has no room for in a segment of its own (shared_segment.h): the
 * message carries only the reference (AC_MSG_SEG). The sender lingers on the segment until the
 * receiver has opened it (its pin), and lets it go at a later sweep (ac_seg_sweep). */
static int send_in_segment(ac_ring *q, ac_msg *msg, const struct iovec *parts, int nparts,
                           _Atomic uint64_t *claim, int64_t timeout_ns, const ac_watch *watch) {
  uint64_t total = 0;
  for (int i = 0; i < nparts; i++) total += parts[i].iov_len;
  ac_seg_sweep(); /* segments sent earlier that their receivers have opened since */
  ac_seg seg;
  int rc = ac_seg_create(&seg, total);
  if (rc) return rc;
  char *dst = seg.data;
  for (int i = 0; i < nparts; i++) {
    if (parts[i].iov_len) memcpy(dst, parts[i].iov_base, parts[i].iov_len);
    dst += parts[i].iov_len;
  }
  ac_seg_ref ref;
  ac_seg_ref_of(&seg, &ref);
  ac_msg sent = *msg;
  sent.kind |= AC_MSG_SEG;
  sent.block = 0;
  sent.len = sizeof ref;
  rc = ac_ring_push_wait(q, &sent, &ref, claim, timeout_ns, watch);
  if (rc) ac_seg_unpin(&seg); /* not published: nobody will open it */
  ac_seg_close(&seg);
  msg->block = 0;
  msg->len = sent.len;
  return rc;
}

int ac_region_send(ac_region *r, ac_ring *q, ac_msg *msg, const struct iovec *parts, int nparts,
                   uint64_t owner, _Atomic uint64_t *claim, _Atomic uint64_t *held,
                   int64_t timeout_ns, const ac_watch *watch) {
  uint64_t total = 0;
  for (int i = 0; i < nparts; i++) total += parts[i].iov_len;
  int64_t deadline = timeout_ns < 0 ? INT64_MAX : ac_now_ns() + timeout_ns;

  if (total <= AC_SLOT_INLINE) {
    uint8_t buf[AC_SLOT_INLINE];
    uint64_t at = 0;
    for (int i = 0; i < nparts; i++) {
      if (parts[i].iov_len) memcpy(buf + at, parts[i].iov_base, parts[i].iov_len);
      at += parts[i].iov_len;
    }
    msg->block = 0;
    msg->len = (uint32_t)total;
    return ac_ring_push_wait(q, msg, buf, claim, timeout_ns, watch);
  }

  int64_t off = alloc_wait(r, q == r->tasks, total, owner, deadline, watch);
  if (off == AC_ENOSPACE) {
    int64_t left = deadline == INT64_MAX ? -1 : deadline - ac_now_ns();
    return send_in_segment(q, msg, parts, nparts, claim, left < 0 && left != -1 ? 0 : left, watch);
  }
  if (off < 0) return (int)off;
  if (held) atomic_store(held, (uint64_t)off);
  char *dst = ac_region_block_data(r, (uint64_t)off);
  for (int i = 0; i < nparts; i++) {
    if (parts[i].iov_len) memcpy(dst, parts[i].iov_base, parts[i].iov_len);
    dst += parts[i].iov_len;
  }
  ac_block *b = ac_region_block(r, (uint64_t)off);
  b->len = total;
  atomic_store(&b->state, AC_BLOCK_PUBLISHED);
  msg->block = (uint64_t)off;
  msg->len = total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
  int64_t left = deadline == INT64_MAX ? -1 : deadline - ac_now_ns();
  int rc = ac_ring_push_wait(q, msg, NULL, claim, left < 0 && deadline != INT64_MAX ? 0 : left,
                             watch);
  if (rc != 0) ac_arena_free(&r->hdr->arena, r->map, (uint64_t)off);
  if (held) atomic_store(held, 0);
  return rc;
}

int ac_region_check_msg(ac_region *r, const ac_msg *m) {
  if (m->block == 0) return m->len <= AC_SLOT_INLINE ? 0 : AC_ECORRUPT;
  if (m->block >= r->size) return AC_ECORRUPT;
  /* The offset must designate a block before its header may be read. */
  int rc = ac_arena_check(&r->hdr->arena, r->map, m->block, 0);
  if (rc) return rc;
  ac_block *b = ac_region_block(r, m->block);
  return ac_arena_check(&r->hdr->arena, r->map, m->block, b->len);
}

void ac_region_adopt(ac_region *r, uint64_t block) {
  atomic_store(&ac_region_block(r, block)->owner, AC_OWNER_PARENT);
}

int ac_region_release(ac_region *r, uint64_t block) {
  if (block == 0) return 0;
  return ac_arena_free(&r->hdr->arena, r->map, block);
}

int ac_region_keep_in_block(ac_region *r, const ac_msg *m, int for_worker) {
  if (!m->block || !(m->kind & AC_MSG_OOB)) return 0;
  if (for_worker) return 1;
  ac_arena *a = &r->hdr->arena;
  return atomic_load_explicit(&a->bytes_in_use, memory_order_relaxed) <=
         (a->pages << AC_PAGE_SHIFT) / 2;
}

void ac_region_consume(ac_region *r, uint64_t block, _Atomic uint64_t *held) {
  if (held) atomic_store(held, 0);
  ac_region_release(r, block);
}

void ac_region_share(ac_region *r, uint64_t block, int64_t holders) {
  atomic_store(&ac_region_block(r, block)->refs, holders);
}

void ac_region_unshare(ac_region *r, uint64_t block) {
  if (atomic_fetch_sub(&ac_region_block(r, block)->refs, 1) == 1) ac_region_release(r, block);
}

/* The record's hold on its task's block ends: a block no view shares (refs 0) was the record's
 * alone. Views are only made by the worker itself, before this, so refs cannot go from 0 to
 * more meanwhile; a view let go in another thread at the same time is settled by the count. */
static void finish_task_block(ac_region *r, uint64_t block) {
  if (atomic_load(&ac_region_block(r, block)->refs) == 0)
    ac_region_release(r, block);
  else
    ac_region_unshare(r, block);
}

int ac_worker_next_task(ac_region *r, uint32_t k, ac_msg *msg, void *inline_buf, int64_t timeout_ns,
                        int64_t spin_ns) {
  ac_worker_rec *w = &r->workers[k];
  atomic_store(&w->take.id, 0);
  atomic_store(&w->take.block, 0);
  atomic_store(&w->state, AC_W_IDLE);
  if (atomic_exchange(&w->busy, 0)) ac_ring_set_busy(r->tasks, 0);
  int rc = ac_ring_pop_wait(r->tasks, msg, inline_buf, &w->take, timeout_ns, spin_ns, NULL);
  if (rc == 0) {
    atomic_store(&w->busy, 1);
    ac_ring_set_busy(r->tasks, 1);
    atomic_store(&w->item, 0);
    atomic_store(&w->started_ns, ac_now_ns());
  }
  return rc;
}

int ac_worker_send_result(ac_region *r, uint32_t k, ac_msg *msg, const struct iovec *parts,
                          int nparts, int64_t timeout_ns) {
  ac_worker_rec *w = &r->workers[k];
  uint64_t owner = ac_owner_tag(k, atomic_load(&w->gen));
  ac_seg_sweep(); /* segments of earlier results the parent has opened since */
  int rc = ac_region_send(r, r->results, msg, parts, nparts, owner, &w->push_pos, &w->result_block,
                          timeout_ns, NULL);
  if (rc == 0) {
    /* Only now is the task finished: until the result is published the record still names it. */
    uint64_t block = atomic_exchange(&w->take.block, 0);
    atomic_store(&w->take.id, 0);
    atomic_fetch_add(&w->tasks_done, 1);
    if (block) finish_task_block(r, block);
  }
  return rc;
}

void ac_worker_set_item(ac_region *r, uint32_t k, uint64_t item) {
  ac_worker_rec *w = &r->workers[k];
  atomic_store_explicit(&w->item, item, memory_order_relaxed);
  /* release: whoever reads the start time also sees the item it belongs to */
  atomic_store_explicit(&w->started_ns, ac_now_ns(), memory_order_release);
}

void ac_region_shutdown(ac_region *r, uint32_t mode) {
  uint32_t cur = atomic_load(&r->hdr->shutdown);
  while (mode > cur && !atomic_compare_exchange_weak(&r->hdr->shutdown, &cur, mode)) {
  }
  if (mode >= AC_SHUTDOWN_DRAIN) ac_ring_close(r->tasks);
}

int ac_region_drain_task(ac_region *r, uint64_t *id) {
  uint8_t buf[AC_SLOT_INLINE];
  ac_msg m;
  int rc = ac_ring_try_pop(r->tasks, &m, buf, NULL);
  if (rc) return rc;
  /* A forged block offset is left alone: freeing it could free someone else's block. */
  if (m.block && ac_region_check_msg(r, &m) == 0) ac_region_release(r, m.block);
  if ((m.kind & AC_MSG_SEG) && m.len == sizeof(ac_seg_ref)) {
    /* Nobody will open it now: its pin goes (this process lingers on it until then). */
    ac_seg_ref ref;
    ac_seg seg;
    memcpy(&ref, buf, sizeof ref);
    if (ac_seg_open(&seg, &ref) == 0) ac_seg_close(&seg);
  }
  *id = m.id;
  return 0;
}

void ac_region_signal_event(ac_region *r) {
  atomic_fetch_add(&r->hdr->event_word, 1);
  ac_ring_wake_consumers(r->results);
}

int ac_region_request_spawn(ac_region *r, uint32_t k) {
  if (k >= r->hdr->nworkers) return -EINVAL;
  ac_worker_rec *w = &r->workers[k];
  uint32_t expect = AC_W_EMPTY;
  if (!atomic_compare_exchange_strong(&w->state, &expect, AC_W_SPAWN)) return -EBUSY;
  return 0;
}

int ac_region_host_spawned(ac_region *r, uint32_t k, int32_t id) {
  if (k >= r->hdr->nworkers) return -EINVAL;
  ac_worker_rec *w = &r->workers[k];
  uint32_t expect = AC_W_SPAWN;
  if (!atomic_compare_exchange_strong(&w->state, &expect, AC_W_STARTING)) return -EBUSY;
  atomic_fetch_add(&w->gen, 1);
  atomic_store(&w->kill_req, 0);
  atomic_store(&w->tasks_done, 0);
  atomic_store(&w->pid, id);
  ac_region_signal_event(r);
  return 0;
}

int ac_region_host_exited(ac_region *r, uint32_t k, int32_t status) {
  if (k >= r->hdr->nworkers) return -EINVAL;
  ac_worker_rec *w = &r->workers[k];
  atomic_store(&w->wait_status, status);
  atomic_store(&w->state, AC_W_EXITED);
  ac_region_signal_event(r);
  return 0;
}

int ac_region_request_kill(ac_region *r, uint32_t k) {
  if (k >= r->hdr->nworkers) return -EINVAL;
  atomic_store(&r->workers[k].kill_req, 1);
  return 0;
}

/* True when a live worker other than k holds the same claim on the task ring (results = 0) or
 * the result ring (results = 1).
 *
 * A claim is recorded before the compare-and-swap that takes the position, so a worker killed
 * between the two, or just after losing the CAS, leaves a claim on a position that a live
 * worker may own now. The caller must have seen the position taken (dequeue_pos or enqueue_pos
 * past it) BEFORE calling this: the owner recorded its claim before its CAS, so its claim is
 * then visible here until it has released or published the slot, which the repair re-checks. */
static int claim_held_elsewhere(ac_region *r, uint32_t k, uint64_t pos, int results) {
  for (uint32_t j = 0; j < r->hdr->nworkers; j++) {
    if (j == k) continue;
    ac_worker_rec *w = &r->workers[j];
    uint32_t st = atomic_load(&w->state);
    uint64_t held = results ? atomic_load(&w->push_pos) : atomic_load(&w->take.pos);
    if (st != AC_W_EMPTY && st != AC_W_EXITED && held == pos) return 1;
  }
  return 0;
}

int ac_region_reap(ac_region *r, uint32_t k, ac_reaped *out, void *recovered_inline) {
  if (k >= r->hdr->nworkers) return -EINVAL;
  ac_worker_rec *w = &r->workers[k];
  if (atomic_load(&w->state) != AC_W_EXITED) return 0;
  memset(out, 0, sizeof *out);
  out->pid = atomic_load(&w->pid);
  out->wait_status = atomic_load(&w->wait_status);
  out->gen = atomic_load(&w->gen);
  out->spawn_errno = atomic_load(&w->spawn_errno);
  out->item = atomic_load(&w->item);

  /* A result it was publishing: finish the slot as a tombstone so the ring moves on. */
  uint64_t push_pos = atomic_load(&w->push_pos);
  if (push_pos && atomic_load(&r->results->enqueue_pos) >= push_pos &&
      !claim_held_elsewhere(r, k, push_pos, 1))
    ac_ring_repair_push(r->results, push_pos);
  /* A result block it was still writing is garbage now (the record is checked like a frame). */
  uint64_t rb = atomic_load(&w->result_block);
  if (rb && ac_arena_check(&r->hdr->arena, r->map, rb, 0) == 0) {
    ac_block *b = ac_region_block(r, rb);
    uint32_t state = atomic_load(&b->state);
    int its_own = atomic_load(&b->owner) == ac_owner_tag(k, out->gen);
    /* PUBLISHED and still tagged as the worker's: the parent never took it (taking retags it,
     * see ac_region_adopt), so it either waits in the ring or never got there (the worker died
     * waiting for room in a full ring, or its push was turned into a tombstone above). */
    if (its_own && (state == AC_BLOCK_PRIVATE ||
                    (state == AC_BLOCK_PUBLISHED && !ac_ring_holds_block(r->results, rb))))
      ac_region_release(r, rb);
  }
  /* A task it was taking: if the slot was never released the task never started; give it back. */
  uint64_t pos = atomic_load(&w->take.pos);
  if (pos && atomic_load(&r->tasks->dequeue_pos) >= pos && !claim_held_elsewhere(r, k, pos, 0))
    out->recovered = ac_ring_repair_pop(r->tasks, pos, &out->msg, recovered_inline);
  if (!out->recovered) {
    out->task_id = atomic_load(&w->take.id);
    uint64_t tb = atomic_load(&w->take.block);
    if (tb) ac_region_release(r, tb);
  }

  if (atomic_exchange(&w->busy, 0)) ac_ring_set_busy(r->tasks, 0);
  ac_ring_repair_wait(r->tasks, &w->take); /* it may have died spinning or asleep for a task */
  ac_arena_repair_gate(&r->hdr->arena, &w->arena_gate); /* or inside an alloc or free */
  atomic_store(&w->take.pos, 0);
  atomic_store(&w->take.id, 0);
  atomic_store(&w->take.block, 0);
  atomic_store(&w->push_pos, 0);
  atomic_store(&w->result_block, 0);
  atomic_store(&w->kill_req, 0);
  atomic_store(&w->pid, 0);
  atomic_store(&w->state, AC_W_EMPTY);
  return 1;
}
