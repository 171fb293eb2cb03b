#!/usr/bin/env bash
# Produce throughput and e2e latency of one broker binary, with the share of CPU samples in
# io_uring worker threads (iou-wrk-*) and the broker's context switches over each run.
# Usage: perf/prealloc-measure.sh LABEL [extra gregor serve args...]   (GREGOR=path/to/binary)
source "$(dirname "$0")/common.sh"
LABEL="$1"; shift
R="$ROOT/perf/results/prealloc/$LABEL"
mkdir -p "$R"
OUT="$R"
trap stop_broker EXIT
run() {
    local name="$1"; shift
    start_gregor "${SERVE_ARGS[@]}"
    perf record -F 999 -e cpu-clock -p "$BROKER_PID" -o "$R/$name.perf.data" 2>"$R/$name.record.err" &
    local rec=$!
    perf stat -e context-switches,cpu-clock -p "$BROKER_PID" -o "$R/$name.stat.txt" &
    local st=$!
    "$BENCH" --brokers "$BROKERS" --progress-secs 0 --broker-pid "$BROKER_PID" \
        --label "$LABEL-$name" --out "$R/$name" "$@" >"$R/$name.txt" 2>&1
    kill -INT "$rec" "$st"; wait "$rec" "$st" || true
    perf report -i "$R/$name.perf.data" --sort comm --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' >"$R/$name.comm.txt"
    rm -f "$R/$name.perf.data"
    stop_broker
}
SERVE_ARGS=("$@")
WORKLOADS="${WORKLOADS:-produce e2e}"
[[ " $WORKLOADS " == *" produce "* ]] && run produce --workload produce --acks 1 --record-size 1024 --partitions 12 --batch-size 1000000 \
    --max-request-size 8388608 --duration 8s --warmup 1s
[[ " $WORKLOADS " == *" e2e "* ]] && run e2e --workload e2e --acks 1 --record-size 1024 --partitions 1 --rate 48828 --linger-ms 0 \
    --batch-size 1000000 --duration 8s --warmup 1s
for n in $WORKLOADS; do
    echo "== $LABEL $n"; cat "$R/$n.txt" | tail -8
    echo "-- comm share"; head -6 "$R/$n.comm.txt"
    echo "-- stat"; grep -E "context-switches|cpu-clock|elapsed" "$R/$n.stat.txt"
done
