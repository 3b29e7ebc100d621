/* test-errors.c: every code of errors.h has its own description, and errno values keep the C
 * library's. */
#include <string.h>

#include "allcores/errors.h"
#include "task.h"

TEST_IMPL(errors_every_code_is_described) {
  static const int codes[] = {AC_ECLOSED, AC_ETOOBIG, AC_ECORRUPT, AC_ENOSPACE, AC_EDEAD,
                              AC_EEVENT};
  const int n = (int)(sizeof codes / sizeof codes[0]);
  for (int i = 0; i < n; i++) {
    ASSERT(codes[i] <= -4096); /* outside the errno range */
    const char *s = ac_strerror(codes[i]);
    ASSERT(strcmp(s, "unknown error") != 0);
    for (int j = 0; j < i; j++) {
      ASSERT_NE(codes[i], codes[j]);
      ASSERT(strcmp(s, ac_strerror(codes[j])) != 0);
    }
  }
  ASSERT(strcmp(ac_strerror(-EINVAL), strerror(EINVAL)) == 0);
  ASSERT(strcmp(ac_strerror(-4200), "unknown error") == 0);
}
