/* task.h: the C test harness of the allcores core (libuv style).
 * Contract: TEST_IMPL(name) defines and registers a test (no list file to edit: a constructor
 * registers it). runner.c runs each test in a forked child with a timeout that
 * AC_TEST_TIMEOUT_MULTIPLIER scales, and fails a test that leaves a file descriptor, a child
 * process or (under ASan) a malloc'd block behind. ASSERT_* macros print both operands and the
 * location, then abort the child. */
#ifndef ALLCORES_TEST_TASK_H
#define ALLCORES_TEST_TASK_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void (*ac_test_fn)(void);

typedef struct ac_test {
  const char *name;
  const char *file;
  ac_test_fn fn;
  int timeout_ms;
  struct ac_test *next;
} ac_test;

void ac_test_register(ac_test *t);

#define TEST_IMPL_TIMEOUT(name, ms)                                                       \
  static void test_##name(void);                                                          \
  static ac_test test_entry_##name = {#name, __FILE__, test_##name, ms, NULL};            \
  __attribute__((constructor)) static void test_register_##name(void) {                   \
    ac_test_register(&test_entry_##name);                                                 \
  }                                                                                       \
  static void test_##name(void)

#define TEST_IMPL(name) TEST_IMPL_TIMEOUT(name, 10000)

/* A test that reproduces a bug not fixed yet runs only with AC_TEST_KNOWN_BUGS=1; otherwise it
 * is skipped, and the runner prints what it is about. */
#define KNOWN_BUG(what)                                                                   \
  do {                                                                                    \
    if (!getenv("AC_TEST_KNOWN_BUGS"))                                                    \
      TEST_SKIP("known bug (AC_TEST_KNOWN_BUGS=1 runs it): " what);                       \
  } while (0)

/* Ends the current test as skipped; the runner prints the reason. */
#define AC_TEST_SKIP_EXIT 77
#define TEST_SKIP(reason)                                                                 \
  do {                                                                                    \
    fprintf(stderr, "skip: %s\n", reason);                                                \
    fflush(NULL);                                                                         \
    _exit(AC_TEST_SKIP_EXIT);                                                             \
  } while (0)

#define AC__FAIL(fmt, ...)                                                                \
  do {                                                                                    \
    fprintf(stderr, "%s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__);                 \
    abort();                                                                              \
  } while (0)
#define FAIL(...) AC__FAIL(__VA_ARGS__)

#define ASSERT(expr)                                                                      \
  do {                                                                                    \
    if (!(expr)) AC__FAIL("assertion failed: %s", #expr);                                 \
  } while (0)

/* Integers compare as int64_t: unsigned 64-bit values above INT64_MAX still compare equal or
 * not correctly; the message prints them in hexadecimal too. */
#define AC__ASSERT_INT(a, op, b)                                                          \
  do {                                                                                    \
    int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                         \
    if (!(a_ op b_))                                                                      \
      AC__FAIL("%s %s %s: %" PRId64 " (0x%" PRIx64 ") vs %" PRId64 " (0x%" PRIx64 ")",    \
               #a, #op, #b, a_, (uint64_t)a_, b_, (uint64_t)b_);                          \
  } while (0)

#define ASSERT_EQ(a, b) AC__ASSERT_INT(a, ==, b)
#define ASSERT_NE(a, b) AC__ASSERT_INT(a, !=, b)
#define ASSERT_LT(a, b) AC__ASSERT_INT(a, <, b)
#define ASSERT_LE(a, b) AC__ASSERT_INT(a, <=, b)
#define ASSERT_GT(a, b) AC__ASSERT_INT(a, >, b)
#define ASSERT_GE(a, b) AC__ASSERT_INT(a, >=, b)
#define ASSERT_OK(a) AC__ASSERT_INT(a, ==, 0)
#define ASSERT_PTR_EQ(a, b)                                                               \
  do {                                                                                    \
    const void *a_ = (a), *b_ = (b);                                                      \
    if (a_ != b_) AC__FAIL("%s == %s: %p vs %p", #a, #b, a_, b_);                         \
  } while (0)
#define ASSERT_MEM_EQ(a, b, n)                                                            \
  do {                                                                                    \
    const unsigned char *a_ = (const void *)(a), *b_ = (const void *)(b);                 \
    size_t n_ = (n);                                                                      \
    for (size_t i_ = 0; i_ < n_; i_++)                                                    \
      if (a_[i_] != b_[i_])                                                               \
        AC__FAIL("%s vs %s differ at byte %zu of %zu: 0x%02x vs 0x%02x", #a, #b, i_, n_,  \
                 a_[i_], b_[i_]);                                                         \
  } while (0)

/* Exit status checks of a child process, printing the status in words when they fail. */
void ac_test_assert_exit(const char *file, int line, const char *what, int status, int code);
#define ASSERT_EXITED(status, code) ac_test_assert_exit(__FILE__, __LINE__, #status, status, code)

/* Iteration counts of stress tests are divided by AC_TEST_SCALE (default 1); tools/ctest.sh
 * raises it under sanitizers. */
long ac_test_scale(void);
/* The seed of a test's random choices: AC_TEST_SEED when set, else drawn from the clock. The
 * runner prints it when the test fails, so a failure can be replayed. */
uint64_t ac_test_seed(void);
/* splitmix64: a small, good generator for test decisions. */
static inline uint64_t ac_test_rand(uint64_t *state) {
  uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}
/* Zeroed memory shared with forked processes (MAP_SHARED | MAP_ANONYMOUS); aborts on failure.
 * Released when the test's process exits. */
void *ac_test_shared(size_t bytes);
/* Waits for a child with a deadline (ms, scaled like test timeouts); returns its wait status or
 * fails the test, killing the child, when it does not exit in time. */
int ac_test_wait(int pid, int ms);

/* The build's sanitizer, for tests that cannot run under one of them. */
#if defined(__SANITIZE_THREAD__)
#define AC_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define AC_TEST_TSAN 1
#endif
#endif
#ifndef AC_TEST_TSAN
#define AC_TEST_TSAN 0
#endif

#endif
