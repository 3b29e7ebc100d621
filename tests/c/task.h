/* task.h: the C test harness of the allcores core (libuv style).
 * Contract: TEST_IMPL(name) defines and registers a test (no list file to edit); each test runs in
 * a forked child with a timeout (AC_TEST_TIMEOUT_MULTIPLIER scales it); ASSERT_* macros print both
 * operands and the location, then abort the child. runner.c holds main(). */
#ifndef ALLCORES_TEST_TASK_H
#define ALLCORES_TEST_TASK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*ac_test_fn)(void);

typedef struct ac_test {
  const char *name;
  ac_test_fn fn;
  int timeout_ms;
  struct ac_test *next;
} ac_test;

void ac_test_register(ac_test *t);

#define TEST_IMPL_TIMEOUT(name, ms)                                                       \
  static void test_##name(void);                                                          \
  static ac_test test_entry_##name = {#name, test_##name, ms, NULL};                      \
  __attribute__((constructor)) static void test_register_##name(void) {                   \
    ac_test_register(&test_entry_##name);                                                 \
  }                                                                                       \
  static void test_##name(void)

#define TEST_IMPL(name) TEST_IMPL_TIMEOUT(name, 10000)

#define AC__FAIL(fmt, ...)                                                                \
  do {                                                                                    \
    fprintf(stderr, "%s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__);                 \
    abort();                                                                              \
  } while (0)

#define ASSERT(expr)                                                                      \
  do {                                                                                    \
    if (!(expr)) AC__FAIL("assertion failed: %s", #expr);                                 \
  } while (0)

#define AC__ASSERT_INT(a, op, b)                                                          \
  do {                                                                                    \
    int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                         \
    if (!(a_ op b_))                                                                      \
      AC__FAIL("%s %s %s: %" PRId64 " vs %" PRId64, #a, #op, #b, a_, b_);                 \
  } while (0)

#define ASSERT_EQ(a, b) AC__ASSERT_INT(a, ==, b)
#define ASSERT_NE(a, b) AC__ASSERT_INT(a, !=, b)
#define ASSERT_LT(a, b) AC__ASSERT_INT(a, <, b)
#define ASSERT_LE(a, b) AC__ASSERT_INT(a, <=, b)
#define ASSERT_GT(a, b) AC__ASSERT_INT(a, >, b)
#define ASSERT_GE(a, b) AC__ASSERT_INT(a, >=, b)
#define ASSERT_OK(a) AC__ASSERT_INT(a, ==, 0)
#define ASSERT_MEM_EQ(a, b, n)                                                            \
  do {                                                                                    \
    if (memcmp((a), (b), (n)) != 0) AC__FAIL("memory differs: %s vs %s", #a, #b);         \
  } while (0)

/* Scaled by AC_TEST_SCALE (default 1): stress tests divide their iteration counts by it when
 * running under sanitizers. */
long ac_test_scale(void);

#endif
