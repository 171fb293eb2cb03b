#!/usr/bin/env bash
# Cross-check of the driver with an independent client: librdkafka's rdkafka_performance (its
# source ships in the rdkafka-sys crate: examples/rdkafka_performance.c) and gregor-bench
# produce the same load to the same broker one after the other: 1 KiB records, acks=1, one
# partition, 1 MB batches, 5 ms linger, then consume them from the start.
# RDPERF points to the built example (see BENCHMARKS.md for the one gcc line that builds it).
source "$(dirname "$0")/common.sh"
RDPERF="${RDPERF:-/tmp/rdperf/rdkafka_performance}"
COUNT="${COUNT:-1000000}"
SIZE="${SIZE:-1024}"
mkdir -p "$OUT/crosscheck"
trap stop_broker EXIT
start_gregor
"$GREGOR" topics create --bootstrap-server "$BROKERS" --topic xcheck --partitions 1
{
    echo "== rdkafka_performance produce: $COUNT x $SIZE B, acks=1"
    "$RDPERF" -P -t xcheck -p 0 -b "$BROKERS" -s "$SIZE" -c "$COUNT" -a 1 -q \
        -X linger.ms=5 -X batch.size=1000000 -X queue.buffering.max.kbytes=1048576 \
        -X enable.idempotence=false 2>&1 | grep -E "messages produced|msgs/s" | tail -n 2
    echo "== rdkafka_performance consume from the start"
    "$RDPERF" -C -t xcheck -p 0 -b "$BROKERS" -o beginning -c "$COUNT" -q \
        2>&1 | grep -E "messages consumed|msgs/s" | tail -n 2
    echo "== gregor-bench produce then consume, same settings"
    "$BENCH" --brokers "$BROKERS" --workload consume --acks 1 --records "$COUNT" \
        --record-size "$SIZE" --batch-size 1000000 --linger-ms 5 --progress-secs 0 \
        --broker-pid "$BROKER_PID" --label gregor-bench-xcheck --out "$OUT/crosscheck"
} | tee "$OUT/crosscheck/crosscheck.txt"
