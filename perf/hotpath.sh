#!/usr/bin/env bash
# The hot-path targets, each next to the machine limit it is compared with, measured in one go:
#   limits:  TCP loopback (iperf3, one stream, 1 MiB writes), disk sequential direct write and
#            read (fio, 1 MiB blocks, QD16)
#   consume: 100 B records, 12 partitions, 2 consumers, RECORDS (5 M) filled then read from the
#            start: from the tail cache (default fetch.cache.bytes) and cold (1 MiB cache, so
#            every read comes from the segment files)
#   produce: 1 KiB records, acks=1, 12 partitions, unlimited rate
#   e2e:     1 KiB at 50 MB/s, acks=1, 1 partition, linger 0: E2E_RUNS fresh-broker runs
# Builds compared: GREGOR (default: this tree's release build) and, if set, BEFORE (an older
# binary) for the consume and produce rows, alternating so both see the same noise.
# Usage: [BEFORE=/path/gregor] [RECORDS=5000000] [E2E_RUNS=10] [DUR=8s] perf/hotpath.sh
source "$(dirname "$0")/common.sh"
RECORDS="${RECORDS:-5000000}"
E2E_RUNS="${E2E_RUNS:-10}"
DUR="${DUR:-8s}"
H="$OUT/hotpath"
mkdir -p "$H" "$DATA"
trap stop_broker EXIT
SUMMARY="$H/summary.txt"
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

note "== limits"
measure_limits "$SUMMARY" read

common=(--brokers "$BROKERS" --progress-secs 0 --drain-timeout 60s)
consume() { # label, then gregor --set arguments
    local label=$1; shift
    start_gregor "$@"
    "$BENCH" "${common[@]}" --broker-pid "$BROKER_PID" --label "$label" --out "$H/$label" \
        --workload consume --acks 1 --record-size 100 --partitions 12 --consumers 2 \
        --batch-size 1000000 --max-request-size 8388608 --records "$RECORDS" |
        grep -E " consume " | tee -a "$SUMMARY"
    stop_broker
}
produce() {
    local label=$1
    start_gregor
    "$BENCH" "${common[@]}" --broker-pid "$BROKER_PID" --label "$label" --out "$H/$label" \
        --workload produce --acks 1 --record-size 1024 --partitions 12 --batch-size 1000000 \
        --max-request-size 8388608 --duration "$DUR" --warmup 1s |
        grep -E " produce " | tee -a "$SUMMARY"
    stop_broker
}
builds=(GREGOR)
[ -n "${BEFORE:-}" ] && builds=(BEFORE GREGOR)
note "== consume (tail cache, then cold) and produce"
for b in "${builds[@]}"; do
    GREGOR_SAVED="$GREGOR"
    GREGOR="${!b}"
    consume "$b-consume-cache"
    consume "$b-consume-cold" --set fetch.cache.bytes=1048576
    produce "$b-produce-1k"
    GREGOR="$GREGOR_SAVED"
done
note "== e2e p99, $E2E_RUNS fresh-broker runs"
for run in $(seq "$E2E_RUNS"); do
    start_gregor
    "$BENCH" "${common[@]}" --broker-pid "$BROKER_PID" --label "e2e-$run" --out "$H/e2e-$run" \
        --workload e2e --acks 1 --record-size 1024 --partitions 1 --rate 48828 --linger-ms 0 \
        --batch-size 1000000 --duration "$DUR" --warmup 1s |
        grep -E " e2e " | tee -a "$SUMMARY"
    stop_broker
done
# Broker CPU seconds per GB moved, from each run's result.json.
note "== broker CPU per GB"
for f in "$H"/*/result.json; do
    python3 - "$f" <<'PY' | tee -a "$SUMMARY"
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
label = r["label"]
phase = r.get("consume") if "consume" in label else r.get("produce")
cpu = r.get("broker_cpu") or {}
if phase and phase.get("mb_per_s") and cpu.get("cores") is not None:
    # The broker's mean cores over the phase, per GB/s moved.
    print(f"{label}: {cpu['cores'] / (phase['mb_per_s'] / 1000):.2f} broker CPU-s per GB "
          f"({phase['mb_per_s']:.0f} MB/s, {cpu['cores']:.2f} cores)")
PY
done
