#!/usr/bin/env bash
# The targets of BENCHMARKS.md against one broker, with identical driver settings:
#   produce: 1 KiB records, acks=1, 12 partitions, unlimited rate
#   consume: 100 B records, 12 partitions, fill then read from the start (the fill is the
#            100 B produce figure)
#   e2e:     1 KiB records at 50 MB/s (48,828 records/s) open loop, acks 0,1,all, linger 0
# Usage: perf/headline.sh gregor|tansu-memory|tansu-sqlite   (tansu: TANSU=/opt/tansu/bin/tansu)
source "$(dirname "$0")/common.sh"
KIND="${1:-gregor}"
TANSU="${TANSU:-/opt/tansu/bin/tansu}"
DUR="${DUR:-5s}"
H="$OUT/headline/$KIND"
mkdir -p "$H"
start_tansu() {
    rm -rf "$DATA" && mkdir -p "$DATA"
    # tansu resolves a sqlite:// path against its working directory: start it in $DATA.
    (cd "$DATA" && exec "$TANSU" broker --storage-engine "$1" --listener-url "tcp://$BROKERS" \
        --advertised-listener-url "tcp://$BROKERS") >"$H/broker.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "tansu did not start" >&2; return 1
}
trap stop_broker EXIT
case "$KIND" in
    gregor) start_gregor ;;
    tansu-memory) start_tansu "memory://tansu/" ;;
    tansu-sqlite) start_tansu "sqlite://tansu.db" ;;
    *) echo "unknown broker $KIND" >&2; exit 2 ;;
esac
common=(--brokers "$BROKERS" --progress-secs 0 --broker-pid "$BROKER_PID" --drain-timeout 60s)
"$BENCH" "${common[@]}" --label "$KIND" --out "$H/produce-1k" --workload produce --acks 1 \
    --record-size 1024 --partitions 12 --batch-size 1000000 --max-request-size 8388608 \
    --duration "$DUR" --warmup 1s | tee "$H/produce-1k.txt"
"$BENCH" "${common[@]}" --label "$KIND" --out "$H/consume-100" --workload consume --acks 1 \
    --record-size 100 --partitions 12 --consumers 2 --batch-size 1000000 \
    --max-request-size 8388608 --records "${RECORDS_100:-5000000}" | tee "$H/consume-100.txt"
"$BENCH" "${common[@]}" --label "$KIND" --out "$H/e2e-50mb" --workload e2e --acks 0,1,all \
    --record-size 1024 --partitions 1 --rate 48828 --linger-ms 0 --batch-size 1000000 \
    --duration "$DUR" --warmup 1s | tee "$H/e2e-50mb.txt"
