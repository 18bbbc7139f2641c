#!/bin/bash
# Run every harness for SECONDS (default 120) on its seed corpus, two at a time (csconv's
# CI machines and this one have two cores). Logs go to fuzz/logs/<harness>.log, a finding's
# input to fuzz/findings/<harness>-crash-*. Usage: fuzz/run_all.sh [SECONDS] [harness ...]
set -eu
cd "$(dirname "$0")"
seconds=${1:-120}
shift 2>/dev/null || true
harnesses=${*:-"png label16 polygons prepared zip"}
python make_seeds.py
mkdir -p logs findings
running=0
for h in $harnesses; do
    mkdir -p "corpus/$h"
    python "fuzz_$h.py" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 \
        -artifact_prefix="findings/$h-" "corpus/$h" >"logs/$h.log" 2>&1 &
    running=$((running + 1))
    if [ "$running" -ge 2 ]; then wait -n 2>/dev/null || wait; running=$((running - 1)); fi
done
wait
for h in $harnesses; do
    printf '%-10s %s\n' "$h" "$(grep -E '^(Done|#[0-9]+)' "logs/$h.log" | tail -1)"
done
