#!/usr/bin/env bash
# The standard matrix against a release gregor: record size 100 B / 1 KiB / 16 KiB x 1 and 12
# partitions x no compression / lz4, each with acks 0,1,all on fresh topics, produce workload.
# Each cell also gets `perf stat` of the broker. Results: perf/results/matrix/<cell>/ (table,
# result.json, .hgrm, report.svg, perf-stat.txt) and perf/results/matrix/summary.txt.
# Knobs: DURATION (default 5s), WARMUP (1s), SIZES, PARTS, CODECS, WORKLOAD (produce).
source "$(dirname "$0")/common.sh"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
SIZES="${SIZES:-100 1024 16384}"
PARTS="${PARTS:-1 12}"
CODECS="${CODECS:-none lz4}"
WORKLOAD="${WORKLOAD:-produce}"
M="$OUT/matrix"
mkdir -p "$M"
trap stop_broker EXIT
start_gregor
: >"$M/summary.txt"
for size in $SIZES; do
    for parts in $PARTS; do
        for codec in $CODECS; do
            cell="$WORKLOAD-${size}B-p$parts-$codec"
            mkdir -p "$M/$cell"
            # Batches of 1 MB (under the default message.max.bytes) so a request carries a meaningful amount at every record size.
            perf stat -p "$BROKER_PID" -o "$M/$cell/perf-stat.txt" &
            stat_pid=$!
            "$BENCH" --brokers "$BROKERS" --workload "$WORKLOAD" --acks 0,1,all \
                --record-size "$size" --partitions "$parts" --compression "$codec" \
                --batch-size 1000000 --max-request-size 8388608 --linger-ms 5 \
                --duration "$DURATION" --warmup "$WARMUP" --progress-secs 0 \
                --broker-pid "$BROKER_PID" --label "gregor-$cell" --out "$M/$cell" \
                | tee "$M/$cell/table.txt"
            kill -INT "$stat_pid"; wait "$stat_pid" || true
            tail -n +2 "$M/$cell/table.txt" >>"$M/summary.txt"
        done
    done
done
echo "summary: $M/summary.txt"
