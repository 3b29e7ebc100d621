/* timeline.c: growable record buffers with a ceiling. */
#include "timeline.h"

#include <stdlib.h>
#include <string.h>

void ac_buf_init(ac_buf *b, size_t elem, size_t max) {
  memset(b, 0, sizeof *b);
  b->elem = elem;
  b->max = max;
}

void *ac_buf_push(ac_buf *b) {
  if (b->count == b->cap) {
    if (b->cap >= b->max) {
      b->truncated = 1;
      return NULL;
    }
    size_t cap = b->cap ? b->cap * 2 : 1024;
    if (cap > b->max) cap = b->max;
    void *d = realloc(b->data, cap * b->elem);
    if (!d) {
      b->truncated = 1;
      return NULL;
    }
    b->data = d;
    b->cap = cap;
  }
  void *p = (char *)b->data + b->count++ * b->elem;
  memset(p, 0, b->elem);
  return p;
}

void ac_buf_free(ac_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}
