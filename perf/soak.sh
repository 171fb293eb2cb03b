#!/usr/bin/env bash
# Soak: a long end-to-end run at PCT (80) % of the maximum rate, with the per-interval report
# (produce and end-to-end p50/p99/p99.9 and broker RSS every INTERVAL), so step changes in the
# tail or memory growth show at a glance (result.json "intervals", report.svg bottom charts).
#   1. unless RATE (records/s) is given: MAX_DUR (15s) of the same workload at unlimited rate
#      on a fresh broker; its produce records/s is the maximum
#   2. a fresh broker, then DURATION (30m) at PCT % of it, after WARMUP (10s)
# Workload: PRODUCERS (4) producers, keyed (KEYS 10000, 16-byte keys), RECORD (1 KiB) values,
# acks=1, PARTITIONS (12), one consumer reading along.
# Usage: perf/soak.sh   (env: RATE=40000 DURATION=30m INTERVAL=60s PCT=80 ...)
source "$(dirname "$0")/common.sh"
RECORD="${RECORD:-1024}"
KEYS="${KEYS:-10000}"
PARTITIONS="${PARTITIONS:-12}"
PRODUCERS="${PRODUCERS:-4}"
PCT="${PCT:-80}"
MAX_DUR="${MAX_DUR:-15s}"
DURATION="${DURATION:-30m}"
WARMUP="${WARMUP:-10s}"
INTERVAL="${INTERVAL:-60s}"
# Retention keeps the disk bounded over a long run (30 minutes at 250 MB/s is 450 GB): each
# partition keeps RETAIN bytes in SEGMENT-sized segments, checked every CHECK_MS.
RETAIN="${RETAIN:-1073741824}"
SEGMENT="${SEGMENT:-134217728}"
CHECK_MS="${CHECK_MS:-10000}"
S="$OUT/soak"
mkdir -p "$S"
trap stop_broker EXIT

bench() { # name, driver args...
    local name="$1"
    shift
    "$BENCH" --brokers "$BROKERS" --broker-pid "$BROKER_PID" --label "$name" --out "$S/$name" \
        --workload e2e --acks 1 --record-size "$RECORD" --partitions "$PARTITIONS" \
        --producers "$PRODUCERS" --keys "$KEYS" --key-size 16 --drain-timeout 60s \
        --topic-config "retention.bytes=$RETAIN,segment.bytes=$SEGMENT" "$@" \
        | tee "$S/$name.txt"
}

if [ -z "${RATE:-}" ]; then
    start_gregor
    bench max --rate unlimited --duration "$MAX_DUR" --warmup 3s --progress-secs 5
    stop_broker
    MAX="$(jq -r '.runs[0].produce.records_per_s | floor' "$S/max/result.json")"
    RATE=$((MAX * PCT / 100))
    echo "maximum $MAX records/s; soak at $PCT %: $RATE records/s"
fi
start_gregor --set "log.retention.check.interval.ms=$CHECK_MS"
bench soak --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
    --report-interval "$INTERVAL" --progress-secs 60
echo "per-interval report: $S/soak/result.json (intervals), chart: $S/soak/report.svg"
