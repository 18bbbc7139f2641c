#!/bin/bash
# Run every harness (or those named) for SECONDS (default 120) on its corpus, two at a time
# (csconv's CI machines and this one have two cores), at nice 19 so other work goes first.
# Logs go to fuzz/logs/<harness>.log, a finding's input to fuzz/findings/<harness>-crash-*.
#
# label16, the harness that reaches csconv's own C code (_pngunfilter.c), runs under
# AddressSanitizer and UBSan with coverage guidance when clang is installed:
# fuzz/build_asan.sh builds the module with -fsanitize=address,undefined,fuzzer-no-link
# and atheris' asan_with_fuzzer.so is preloaded (FUZZING.md). Without clang it runs
# unsanitized here; fuzz/asan_mutate.py is then the sanitized run (build_asan.sh says how).
#
# Usage: fuzz/run_all.sh [SECONDS] [harness ...]
set -eu
cd "$(dirname "$0")"
seconds=${1:-120}
shift 2>/dev/null || true
harnesses=${*:-"png label16 polygons prepared zip tfrecord parquet webdataset arrayrecord"}
python make_seeds.py
mkdir -p logs findings

sanitized_module=""
if ./build_asan.sh >logs/build_asan.out 2>&1 && [ "$(tail -1 logs/build_asan.out)" = clang ]; then
    sanitized_module="$PWD/$(head -1 logs/build_asan.out | sed 's|^fuzz/||')"
fi

run_one() {
    local h=$1
    local -a env=()
    if [ "$h" = label16 ] && [ -n "$sanitized_module" ]; then
        env=(LD_PRELOAD="$(python -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so"
             ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:quarantine_size_mb=64
             UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
             CSCONV_ASAN_UNFILTER="$sanitized_module")
    fi
    mkdir -p "corpus/$h"
    # -timeout=300, not 20: libFuzzer times an input by the wall clock, so a run paused
    # with SIGSTOP (around a benchmark) for longer would report the input it was on.
    env "${env[@]}" nice -n 19 python "fuzz_$h.py" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=300 \
        -print_final_stats=1 -artifact_prefix="findings/$h-" "corpus/$h" >"logs/$h.log" 2>&1
}

running=0
for h in $harnesses; do
    run_one "$h" &
    running=$((running + 1))
    if [ "$running" -ge 2 ]; then wait -n || true; running=$((running - 1)); fi
done
wait
for h in $harnesses; do
    printf '%-12s %s\n' "$h" "$(grep -E '^(Done|#[0-9]+)' "logs/$h.log" | tail -1)"
done
