#!/usr/bin/env bash
# Every fuzz target with a large budget, then a summary (per target: seed, inputs, crashes).
# The in-process targets run ITERS inputs each (segment recovery, which writes and opens a log
# per input, RECOVERY_ITERS); the network fuzzer NET_ITERS batches of 60 requests. SEED fixes
# the seed of every target (default: each from the clock). Output of the tests goes to
# $LOG (default perf/results/fuzz.log); the summary to stdout.
# Usage: [ITERS=1000000] [RECOVERY_ITERS=20000] [NET_ITERS=500] [SEED=n] perf/fuzz.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ITERS="${ITERS:-1000000}"
RECOVERY_ITERS="${RECOVERY_ITERS:-20000}"
NET_ITERS="${NET_ITERS:-500}"
mkdir -p perf/results
LOG="${LOG:-perf/results/fuzz.log}"
: >"$LOG"

run() {
    local iters="$1" skip="$2"
    shift 2
    local start=$SECONDS
    if [ -n "${SEED:-}" ]; then export GREGOR_FUZZ_SEED="$SEED"; fi
    GREGOR_FUZZ_ITERS="$iters" cargo test --release "$@" -- --nocapture --test-threads 2 $skip \
        >>"$LOG" 2>&1
    echo "# cargo test $* (GREGOR_FUZZ_ITERS=$iters): exit $?, $((SECONDS - start)) s" | tee -a "$LOG"
}

run "$ITERS" "--skip fuzz_segment_recovery" --lib fuzz_
run "$RECOVERY_ITERS" "" --lib fuzz_segment_recovery
run "$NET_ITERS" "" --test fuzz_network

echo
echo "fuzz summary $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD)"
printf '%-32s %22s %12s %8s\n' target seed inputs crashes
# A target prints "fuzz target=T seed=S iters=N" when it starts and "... inputs=N crashes=0"
# when it is through; a start without an end is a failure, whose message is in $LOG.
grep -o 'fuzz target=[^ ]* seed=[0-9]* iters=[0-9]*' "$LOG" | while read -r _ t s i; do
    t="${t#target=}"
    s="${s#seed=}"
    i="${i#iters=}"
    if grep -q "fuzz target=$t seed=$s inputs=" "$LOG"; then
        n=$(grep -o "fuzz target=$t seed=$s inputs=[0-9]*" "$LOG" | head -1 | sed 's/.*inputs=//')
        printf '%-32s %22s %12s %8s\n' "$t" "$s" "$n" 0
    else
        printf '%-32s %22s %12s %8s\n' "$t" "$s" "$i" "FAILED"
    fi
done
grep -h 'failed: GREGOR_FUZZ_SEED\|network fuzz failed' "$LOG" | cut -c1-400 || true
grep '^# cargo test' "$LOG"
