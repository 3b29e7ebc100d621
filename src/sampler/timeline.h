/* timeline.h: the sampler's records over time: thread state changes (who held the GIL when, who
 * waited) and process CPU points (cores used over time), in growable buffers with a ceiling.
 * Contract: no Python.h. One writer (the sampler thread) and readers that hold the sampler's
 * lock. A push past the ceiling drops the record and sets `truncated`; memory grows by doubling,
 * so a push costs O(1) amortized and never blocks on anything but malloc. */
#ifndef ALLCORES_TIMELINE_H
#define ALLCORES_TIMELINE_H

#include <stddef.h>
#include <stdint.h>

/* A thread entered `state` (an AC_ST_* value of sampler.h) at t_ns after the start. */
typedef struct {
  int64_t t_ns;
  int32_t slot;   /* index into the sampler's thread table */
  int32_t state;
} ac_tl_event;

/* Cumulative CPU at t_ns after the start: the whole process's, and the sampler thread's own. */
typedef struct {
  int64_t t_ns;
  int64_t process_cpu_ns;
  int64_t sampler_cpu_ns;
} ac_tl_cpu;

typedef struct {
  void *data;
  size_t elem, count, cap, max;
  int truncated;
} ac_buf;

void ac_buf_init(ac_buf *b, size_t elem, size_t max);
/* Returns a zeroed slot for one more record, or NULL when full or out of memory. */
void *ac_buf_push(ac_buf *b);
void ac_buf_free(ac_buf *b);

#endif
