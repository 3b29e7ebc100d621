/* fuzz.h: what the libFuzzer targets of the C core share: a reader that turns the fuzzer's bytes
 * into decisions, and FUZZ_CHECK, which aborts (a crash the fuzzer keeps) when an invariant of
 * the code under test fails.
 * Contract: the reader never reads past the input; once it is exhausted every read returns 0, so
 * a target's loop must also stop on fz_done(). No Python here. */
#ifndef ALLCORES_FUZZ_H
#define ALLCORES_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fz {
  const uint8_t *p;
  size_t n;
} fz;

static inline int fz_done(const fz *f) { return f->n == 0; }

static inline uint8_t fz_u8(fz *f) {
  if (!f->n) return 0;
  f->n--;
  return *f->p++;
}

static inline uint32_t fz_u32(fz *f) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v = v << 8 | fz_u8(f);
  return v;
}

static inline uint64_t fz_u64(fz *f) { return (uint64_t)fz_u32(f) << 32 | fz_u32(f); }

/* A number in [0, n), n > 0. */
static inline uint32_t fz_below(fz *f, uint32_t n) {
  return n <= 256 ? fz_u8(f) % n : fz_u32(f) % n;
}

/* Copies up to len bytes of input into dst and zero-fills the rest. */
static inline void fz_bytes(fz *f, void *dst, size_t len) {
  size_t k = len < f->n ? len : f->n;
  memcpy(dst, f->p, k);
  memset((uint8_t *)dst + k, 0, len - k);
  f->p += k;
  f->n -= k;
}

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);        \
      abort();                                                                            \
    }                                                                                     \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
