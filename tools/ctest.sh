#!/usr/bin/env bash
# ctest.sh: builds the C core's unit tests and runs them under ASan+UBSan, then under TSan, then
# smoke-runs the fuzzers (tools/fuzz.sh) when clang is available. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-gcc}
out=tests/c/bin
mkdir -p "$out"
src=(src/core/*.c tests/c/*.c)
common=(-std=gnu11 -D_GNU_SOURCE -Iinclude -Itests/c -g -O1 -Wall -Wextra -Wno-unused-parameter
        -Wno-missing-field-initializers -pthread)

echo "== C unit tests under ASan+UBSan"
$CC "${common[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    "${src[@]}" -o "$out/runner-asan"
# Forked test children exit with _exit: leak checking happens in the runner itself.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  AC_TEST_SCALE=${AC_TEST_SCALE:-10} AC_TEST_TIMEOUT_MULTIPLIER=3 "$out/runner-asan"

echo "== C unit tests under ThreadSanitizer"
# TSan sees races between threads of one process; the rings are shared between processes, so the
# multi-process tests run here for their behaviour under TSan's instrumentation of atomics.
$CC "${common[@]}" -fsanitize=thread "${src[@]}" -o "$out/runner-tsan"
TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tsansupp.txt" AC_TEST_SCALE=${AC_TEST_SCALE:-10} \
  AC_TEST_TIMEOUT_MULTIPLIER=5 setarch "$(uname -m)" -R "$out/runner-tsan"

if [ -x tools/fuzz.sh ]; then
  echo "== fuzz smoke"
  tools/fuzz.sh smoke
fi
