#!/usr/bin/env bash
# A/B of two gregor builds on the end-to-end target (1 KiB at 50 MB/s, acks 0,1,all, one
# partition, linger 0), alternating A and B ROUNDS times so both see the same machine noise.
# Usage: A=/path/old/gregor B=/path/new/gregor [ROUNDS=3] [DUR=10s] perf/ab.sh
source "$(dirname "$0")/common.sh"
A="${A:?path of build A}"
B="${B:?path of build B}"
ROUNDS="${ROUNDS:-3}"
DUR="${DUR:-10s}"
AB="$OUT/ab"
mkdir -p "$AB"
trap stop_broker EXIT
for round in $(seq "$ROUNDS"); do
    for side in A B; do
        GREGOR="${!side}"
        start_gregor
        "$BENCH" --brokers "$BROKERS" --progress-secs 0 --broker-pid "$BROKER_PID" \
            --drain-timeout 60s --label "$side-r$round" --out "$AB/$side-r$round" \
            --workload e2e --acks 0,1,all --record-size 1024 --partitions 1 --rate 48828 \
            --linger-ms 0 --batch-size 1000000 --duration "$DUR" --warmup 1s |
            grep -E " e2e +[01a]" | tee -a "$AB/summary.txt"
        stop_broker
    done
done
