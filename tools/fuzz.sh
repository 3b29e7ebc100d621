#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer targets in fuzz/ (one per decoder of data that crosses the shared
# region) with clang, ASan and UBSan, and runs them.
#
#   tools/fuzz.sh smoke [TARGET...]   each target for FUZZ_SMOKE_SECONDS (default 4): make test
#   tools/fuzz.sh long  [TARGET...]   each target for FUZZ_LONG_SECONDS (default 300): make fuzz
#   tools/fuzz.sh replay [TARGET...]  no clang needed: replays the seed corpora under gcc's
#                                      ASan+UBSan with fuzz/replay.c
#   tools/fuzz.sh merge [TARGET...]   folds what the runs found back into fuzz/<target>_corpus
#   tools/fuzz.sh probe                exit 0 when clang's libFuzzer works here, else 3
#
# Targets are fuzz/fuzz_<target>.c; seeds are fuzz/<target>_corpus/ (read-only to the runs: new
# inputs go to fuzz/bin/<target>_work/). A crash leaves fuzz/bin/<target>-crash-* and makes the
# script exit non-zero. Prints the executions of every target, and "fuzz: N targets, N crashed".
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-smoke}
shift || true
out=fuzz/bin
mkdir -p "$out"
CLANG=${CLANG:-clang}
CC=${CC:-gcc}
flags=(-std=gnu11 -D_GNU_SOURCE -Iinclude -Ifuzz -g -O1 -fno-omit-frame-pointer)
core=(src/core/*.c)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_*.c; do t=${f#fuzz/fuzz_}; targets+=("${t%.c}"); done
fi

have_libfuzzer() {
  command -v "$CLANG" >/dev/null 2>&1 || return 1
  echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' \
    > "$out/probe.c"
  "$CLANG" -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" >/dev/null 2>&1
}

# The core is compiled once per mode and linked into every target; sets objs.
build_core() { # $1: compiler, $2: object dir, rest: flags
  local cc=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  objs=()
  for src in "${core[@]}"; do
    local obj="$dir/$(basename "${src%.c}").o"
    "$cc" "${flags[@]}" "$@" -c "$src" -o "$obj"
    objs+=("$obj")
  done
}

if [ "$mode" = replay ]; then
  san=(-fsanitize=address,undefined -fno-sanitize-recover=all)
  build_core "$CC" "$out/replay-core" "${san[@]}"
  crashed=0
  for t in "${targets[@]}"; do
    "$CC" "${flags[@]}" "${san[@]}" fuzz/replay.c "fuzz/fuzz_$t.c" "${objs[@]}" -pthread \
      -o "$out/$t-replay"
    echo "== replay $t: fuzz/${t}_corpus under gcc ASan+UBSan"
    if ! ASAN_OPTIONS=detect_leaks=1 "$out/$t-replay" "fuzz/${t}_corpus"; then
      crashed=$((crashed + 1))
    fi
  done
  echo "fuzz: ${#targets[@]} targets replayed, $crashed crashed"
  [ "$crashed" -eq 0 ]
  exit
fi

if [ "$mode" = probe ]; then # exit 0 when clang's libFuzzer works here, 3 when not
  have_libfuzzer && exit 0
  exit 3
fi

if ! have_libfuzzer; then
  echo "fuzz: $CLANG with libFuzzer not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 3
fi

case "$mode" in
  smoke) seconds=${FUZZ_SMOKE_SECONDS:-4} ;;
  long) seconds=${FUZZ_LONG_SECONDS:-300} ;;
  merge) seconds=0 ;;
  *) echo "usage: $0 smoke|long|replay|merge|probe [TARGET...]" >&2; exit 2 ;;
esac

san=(-fsanitize=address,undefined -fno-sanitize-recover=all)
build_core "$CLANG" "$out/core" "${san[@]}" -fsanitize=fuzzer-no-link
for t in "${targets[@]}"; do
  "$CLANG" "${flags[@]}" "${san[@]}" -fsanitize=fuzzer "fuzz/fuzz_$t.c" "${objs[@]}" -pthread \
    -o "$out/$t"
done

if [ "$mode" = merge ]; then
  for t in "${targets[@]}"; do
    mkdir -p "fuzz/${t}_corpus" "$out/${t}_work"
    "$out/$t" -merge=1 "fuzz/${t}_corpus" "$out/${t}_work" 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new" || true
  done
  exit 0
fi

crashed=0
total=0
for t in "${targets[@]}"; do
  mkdir -p "$out/${t}_work" "fuzz/${t}_corpus"
  log="$out/$t.log"
  echo "== fuzz $t for ${seconds}s (seeds: fuzz/${t}_corpus)"
  rc=0
  ASAN_OPTIONS=detect_leaks=1 "$out/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/$t-" "$out/${t}_work" "fuzz/${t}_corpus" \
    >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  if [ "$rc" -ne 0 ]; then
    crashed=$((crashed + 1))
    grep -E "ERROR|runtime error|invariant failed|Test unit written" "$log" | head -20 || true
    echo "not ok - $t (exit $rc after ${execs:-?} executions; log: $log)"
  else
    echo "ok - $t: ${execs:-?} executions in ${seconds} s"
    total=$((total + ${execs:-0}))
  fi
done
echo "fuzz: ${#targets[@]} targets, $crashed crashed, $total executions in all"
[ "$crashed" -eq 0 ]
