#!/usr/bin/env bash
# ctest.sh: the C core's unit tests (tests/c/, no Python) under the sanitizers, then the fuzzers'
# smoke run. Run by `make test` (via `make ctest`); exits non-zero on any failure.
#
# Passes, each printing the runner's "N passed, N failed":
#   1. ASan+UBSan (gcc -fsanitize=address,undefined -fno-sanitize-recover=all -g -O1), with
#      LeakSanitizer checking each test (the runner calls it before a test's child exits);
#      stress counts divided by AC_TEST_SCALE_ASAN (default 4).
#   2. ThreadSanitizer (gcc -fsanitize=thread). TSan sees races between threads of one process
#      only: memory shared between processes is invisible to it. The tests that need processes
#      to share memory skip themselves under TSan (ring_stress_processes_*,
#      region_stress_processes, arena_concurrent_processes_*); their threaded twins
#      (ring_stress_threads_*, region_stress_threads, arena_concurrent_threads_*) run the same
#      code from threads, which TSan does see. The other multi-process tests still run (they
#      fork before any thread starts, which TSan supports). Counts divided by
#      AC_TEST_SCALE_TSAN (default 20). Suppressions: tsansupp.txt (none needed so far).
#   3. Optimized (-O2, no sanitizer) at full scale: the stress, kill and chaos tests only, where
#      the speed of real code matters (millions of ring messages).
#   4. tools/fuzz.sh smoke: every fuzz target for FUZZ_SMOKE_SECONDS (default 3) seconds. Without
#      clang's libFuzzer it installs clang when AC_INSTALL_CLANG=1 (apt-get, as root), else it
#      says so and replays the seed corpora under gcc's ASan+UBSan instead (tools/fuzz.sh replay).
# The last line sums the passes: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-gcc}
out=tests/c/bin
mkdir -p "$out"
src=(src/core/*.c tests/c/*.c)
common=(-std=gnu11 -D_GNU_SOURCE -Iinclude -Itests/c -g -Wall -Wextra -Wno-unused-parameter
        -Wno-missing-field-initializers -pthread)
total_passed=0
total_failed=0
status=0

# Runs one pass: $1 a title, then the command. Adds the runner's counts to the totals.
run_pass() {
  local title=$1 log
  shift
  log=$(mktemp)
  echo "== $title"
  echo "   $*"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
  rm -f "$log"
  if [ -z "$line" ]; then
    echo "$title: the runner stopped without its summary (exit $rc)"
    total_failed=$((total_failed + 1))
    status=1
    return
  fi
  local p f
  read -r p _ f _ <<<"$line"
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
  if [ "$rc" -ne 0 ]; then status=1; fi
}

build() { # $1: output, rest: flags
  local exe=$1
  shift
  echo "== build $exe: $CC ${*}"
  if ! "$CC" "${common[@]}" "$@" "${src[@]}" -o "$exe"; then
    echo "build of $exe failed"
    total_failed=$((total_failed + 1))
    status=1
    return 1
  fi
}

# LeakSanitizer needs to stop the process's threads with ptrace; some containers forbid that.
leaks=1
echo 'int main(void) { return 0; }' >"$out/lsan-probe.c"
if "$CC" -fsanitize=address "$out/lsan-probe.c" -o "$out/lsan-probe" 2>/dev/null &&
   ! ASAN_OPTIONS=detect_leaks=1 "$out/lsan-probe" >/dev/null 2>&1; then
  leaks=0
  echo "note: LeakSanitizer cannot run in this environment (ptrace denied?): leak checks are OFF"
fi

# The three builds run side by side; each takes a few seconds.
build "$out/runner-asan" -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
  -fno-omit-frame-pointer & asan_pid=$!
build "$out/runner-tsan" -O1 -fsanitize=thread & tsan_pid=$!
build "$out/runner-opt" -O2 & opt_pid=$!
wait $asan_pid; asan_ok=$?
wait $tsan_pid; tsan_ok=$?
wait $opt_pid; opt_ok=$?
[ $asan_ok -eq 0 ] && [ $tsan_ok -eq 0 ] && [ $opt_ok -eq 0 ] || status=1

if [ $asan_ok -eq 0 ]; then
  run_pass "C unit tests under ASan+UBSan (AC_TEST_SCALE=${AC_TEST_SCALE_ASAN:-4})" \
    env ASAN_OPTIONS="detect_leaks=$leaks:abort_on_error=1:handle_abort=1:detect_stack_use_after_return=1" \
    UBSAN_OPTIONS=print_stacktrace=1 AC_TEST_SCALE="${AC_TEST_SCALE_ASAN:-4}" \
    AC_TEST_TIMEOUT_MULTIPLIER=3 "$out/runner-asan"
fi

if [ $tsan_ok -eq 0 ]; then
  # TSan wants the fixed memory layout of a non-randomized address space on recent kernels.
  norand=()
  if command -v setarch >/dev/null 2>&1 && setarch "$(uname -m)" -R true 2>/dev/null; then
    norand=(setarch "$(uname -m)" -R)
  fi
  run_pass "C unit tests under ThreadSanitizer (AC_TEST_SCALE=${AC_TEST_SCALE_TSAN:-20})" \
    env TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tsansupp.txt" \
    AC_TEST_SCALE="${AC_TEST_SCALE_TSAN:-20}" AC_TEST_TIMEOUT_MULTIPLIER=5 \
    "${norand[@]}" "$out/runner-tsan"
fi

if [ $opt_ok -eq 0 ]; then
  run_pass "stress, kill and chaos tests, optimized, full scale" \
    env AC_TEST_SCALE=1 "$out/runner-opt" '*stress*' '*killed*' 'chaos_*' 'arena_concurrent_*'
fi

echo "== fuzz smoke"
if ! tools/fuzz.sh probe >/dev/null 2>&1 && [ "${AC_INSTALL_CLANG:-0}" = 1 ] &&
   [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing clang and its libFuzzer runtime (AC_INSTALL_CLANG=1)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang \
    "$(apt-cache search --names-only '^libclang-rt-[0-9]+-dev$' | sort -V | tail -1 | cut -d' ' -f1)" \
    >/dev/null || true
fi
fuzz_log=$(mktemp)
FUZZ_SMOKE_SECONDS=${FUZZ_SMOKE_SECONDS:-3} tools/fuzz.sh smoke 2>&1 | tee "$fuzz_log"
fuzz_rc=${PIPESTATUS[0]}
if [ "$fuzz_rc" -eq 3 ]; then
  echo "SKIPPED the fuzz smoke: no clang with libFuzzer (set AC_INSTALL_CLANG=1 to install it);"
  echo "replaying the seed corpora under gcc ASan+UBSan instead"
  tools/fuzz.sh replay 2>&1 | tee "$fuzz_log"
  fuzz_rc=${PIPESTATUS[0]}
fi
summary=$(grep -E '^fuzz: [0-9]+ targets' "$fuzz_log" | tail -1)
rm -f "$fuzz_log"
targets=$(sed -E 's/^fuzz: ([0-9]+) targets.*/\1/' <<<"$summary")
crashed=$(sed -E 's/.* ([0-9]+) crashed.*/\1/' <<<"$summary")
if [ -z "$summary" ]; then
  targets=0
  crashed=1
fi
total_passed=$((total_passed + targets - crashed))
total_failed=$((total_failed + crashed))
[ "$fuzz_rc" -eq 0 ] || status=1

echo "== C tests and fuzz smoke, all passes together"
echo "$total_passed passed, $total_failed failed"
exit $status
