#!/usr/bin/env bash
# acks 0/1/all on a local 3-node cluster (every node a broker and a voter, as
# configs/cluster-3), replication factor 3, min.insync.replicas=2: end-to-end latency of 1 KiB
# records at 50 MB/s (48,828 records/s, open loop), then the highest produce rate per acks
# setting (closed loop). Data on the machine's disk; each node in its own directory.
# The reference in the same run: one gregor (replication factor 1, same shards per node) under
# the same e2e workload, so the table shows what replication costs on this machine.
# Usage: perf/cluster.sh            (SHARDS=1 by default: 3 nodes share this machine's cores)
#   ACKS=all,1 RATE=4883 MAX=0 DUR=20s REF=0 perf/cluster.sh   (subsets)
source "$(dirname "$0")/common.sh"
SHARDS="${SHARDS:-1}"
DUR="${DUR:-10s}"
PARTS="${PARTS:-3}"
ACKS="${ACKS:-0,1,all}"
RATE="${RATE:-48828}"
MAX="${MAX:-1}"
REF="${REF:-1}"
C="$OUT/cluster"
mkdir -p "$C"
PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop_all EXIT
VOTERS="1@127.0.0.1:29093,2@127.0.0.1:29095,3@127.0.0.1:29097"
for n in 1 2 3; do
    bp=$((29090 + 2 * n)); cp=$((bp + 1))
    rm -rf "$DATA-$n" && mkdir -p "$DATA-$n"
    "$GREGOR" serve --set node.id=$n --set process.roles=broker,controller \
        --set "listeners=PLAINTEXT://127.0.0.1:$bp,CONTROLLER://127.0.0.1:$cp" \
        --set "controller.quorum.voters=$VOTERS" --set "log.dirs=$DATA-$n" \
        --set num.shards="$SHARDS" --set min.insync.replicas=2 \
        >"$C/node$n.log" 2>&1 &
    PIDS+=($!)
done
BROKERS="127.0.0.1:29092"
for _ in $(seq 200); do
    "$GREGOR" cluster status --bootstrap-server "$BROKERS" 2>/dev/null | grep -c unfenced | grep -q 3 && break
    sleep 0.1
done
"$GREGOR" cluster status --bootstrap-server "$BROKERS" | tee "$C/status.txt"
common=(--brokers "$BROKERS" --progress-secs 0 --drain-timeout 60s --replication-factor 3
    --partitions "$PARTS" --record-size 1024)
"$BENCH" "${common[@]}" --label cluster --out "$C/e2e-50mb" --workload e2e --acks "$ACKS" \
    --rate "$RATE" --linger-ms 0 --batch-size 1000000 --duration "$DUR" --warmup 2s \
    | tee "$C/e2e-50mb.txt"
if [ "$MAX" = 1 ]; then
"$BENCH" "${common[@]}" --label cluster --out "$C/produce-max" --workload produce --acks "$ACKS" \
    --batch-size 1000000 --max-request-size 8388608 --duration "$DUR" --warmup 2s \
    | tee "$C/produce-max.txt"
fi
[ "$REF" = 1 ] || exit 0
stop_all
PIDS=()
BROKERS="127.0.0.1:$PORT"
start_gregor --set num.shards="$SHARDS"
PIDS+=("$BROKER_PID")
"$BENCH" --brokers "$BROKERS" --progress-secs 0 --drain-timeout 60s --replication-factor 1 \
    --partitions "$PARTS" --record-size 1024 --label single --out "$C/e2e-50mb-single" \
    --workload e2e --acks "$ACKS" --rate "$RATE" --linger-ms 0 --batch-size 1000000 \
    --duration "$DUR" --warmup 2s | tee "$C/e2e-50mb-single.txt"
