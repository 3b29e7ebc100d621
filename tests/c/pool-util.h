/* pool-util.h: what the region stress and chaos tests share: payloads whose bytes are a function
 * of the task id (so any mix-up or overwrite shows), and a worker loop in plain C.
 * Contract: fill/verify agree for every (id, salt, len); ac_test_worker_loop runs tasks of
 * region r as worker k until the task ring closes and returns 0, or a code > 0 when a payload
 * arrived damaged. */
#ifndef ALLCORES_TEST_POOL_UTIL_H
#define ALLCORES_TEST_POOL_UTIL_H

#include <stdint.h>
#include <sys/uio.h>

#include <string.h>

#include "allcores/errors.h"
#include "allcores/protocol.h"
#include "allcores/region.h"
#include "allcores/shared_segment.h"

/* Payload lengths: mostly inline, one in four through the arena, some large. */
static inline uint32_t pu_len(uint64_t id, uint32_t salt) {
  uint64_t h = (id + 1) * UINT64_C(0x9e3779b97f4a7c15) ^ salt;
  h ^= h >> 29;
  switch (h % 8) {
  case 0: return (uint32_t)(h >> 8) % 200000 + 1;
  case 1: return (uint32_t)(h >> 8) % 20000 + AC_SLOT_INLINE + 1;
  case 2: return 0;
  default: return (uint32_t)(h >> 8) % (AC_SLOT_INLINE + 1);
  }
}

static inline uint8_t pu_byte(uint64_t id, uint32_t salt, uint64_t i) {
  return (uint8_t)((id * 131 + salt * 7 + i * 13) ^ (i >> 8));
}

static inline void pu_fill(uint8_t *p, uint64_t id, uint32_t salt, uint64_t len) {
  for (uint64_t i = 0; i < len; i++) p[i] = pu_byte(id, salt, i);
}

static inline int pu_ok(const uint8_t *p, uint64_t id, uint32_t salt, uint64_t len) {
  for (uint64_t i = 0; i < len; i++)
    if (p[i] != pu_byte(id, salt, i)) return 0;
  return 1;
}

/* The length of a received payload: the block's for arena payloads, the header's otherwise. */
static inline uint64_t pu_received_len(ac_region *r, const ac_msg *m) {
  return m->block ? ac_region_block(r, m->block)->len : m->len;
}

enum { PU_TASK_SALT = 1, PU_RESULT_SALT = 2 };

/* Sends task id with its payload (timeout as ac_region_send). */
static inline int pu_send_task(ac_region *r, uint64_t id, int64_t timeout_ns, uint8_t *scratch) {
  uint32_t len = pu_len(id, PU_TASK_SALT);
  pu_fill(scratch, id, PU_TASK_SALT, len);
  /* Two parts, to exercise gathering: the payload split at a third. */
  struct iovec iov[2] = {{scratch, len / 3}, {scratch + len / 3, len - len / 3}};
  ac_msg m = {.id = id, .kind = 1, .aux = (uint32_t)id};
  return ac_region_send(r, r->tasks, &m, iov, 2, AC_OWNER_PARENT, NULL, NULL, timeout_ns, NULL);
}

static inline int ac_test_worker_loop(ac_region *r, uint32_t k, uint8_t *scratch) {
  uint8_t buf[AC_SLOT_INLINE];
  for (;;) {
    ac_msg m;
    int rc = ac_worker_next_task(r, k, &m, buf, -1, 20000);
    if (rc == AC_ECLOSED) return 0;
    if (rc) return 10;
    if (ac_region_check_msg(r, &m)) return 11;
    uint64_t len = pu_received_len(r, &m);
    if (len != pu_len(m.id, PU_TASK_SALT) || m.aux != (uint32_t)m.id) return 12;
    if (!pu_ok(ac_region_payload(r, &m, buf), m.id, PU_TASK_SALT, len)) return 13;
    uint32_t rlen = pu_len(m.id, PU_RESULT_SALT);
    pu_fill(scratch, m.id, PU_RESULT_SALT, rlen);
    struct iovec iov = {scratch, rlen};
    ac_msg res = {.id = m.id, .kind = 2, .aux = k};
    rc = ac_worker_send_result(r, k, &res, &iov, 1, -1);
    if (rc) return 14;
  }
}

/* Checks a result that travelled in a segment of its own (AC_MSG_SEG). */
static inline int pu_check_segment_result(const ac_msg *m, const uint8_t *inline_buf) {
  if (m->block || m->len != sizeof(ac_seg_ref)) return 25;
  ac_seg_ref ref;
  memcpy(&ref, inline_buf, sizeof ref);
  ac_seg seg;
  if (ac_seg_open(&seg, &ref)) return 26;
  int rc = 0;
  if (seg.size != pu_len(m->id, PU_RESULT_SALT)) rc = 22;
  else if (!pu_ok((const uint8_t *)seg.data, m->id, PU_RESULT_SALT, seg.size)) rc = 23;
  ac_seg_close(&seg);
  return rc;
}

/* Checks one received result; returns 0 or a code > 0. Frees its block. */
static inline int pu_check_result(ac_region *r, const ac_msg *m, const uint8_t *inline_buf) {
  int rc = 0;
  if (m->kind & AC_MSG_SEG) return pu_check_segment_result(m, inline_buf);
  if (ac_region_check_msg(r, m)) return 21;
  uint64_t len = pu_received_len(r, m);
  if (len != pu_len(m->id, PU_RESULT_SALT)) rc = 22;
  else if (!pu_ok(ac_region_payload(r, m, inline_buf), m->id, PU_RESULT_SALT, len)) rc = 23;
  if (ac_region_release(r, m->block)) rc = 24;
  return rc;
}

#endif
