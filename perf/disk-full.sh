#!/usr/bin/env bash
# What a full log directory does to produce latency of the partitions in another one.
# The broker gets two log.dirs: $DATA/main on the machine's disk and a tmpfs of $FULL_MB MiB
# (needs root). Per round, on a fresh broker each:
#   quiet  the measured load alone: 1 KiB records at 50 MB/s, acks=1, 12 partitions (e2e workload)
#   busy   the same, while a second driver produces flat out (64 KiB batches, acks=1) to a
#          partition on a tmpfs big enough (BUSY_MB, 6 GiB) not to fill during the run
#   full   the same second driver, to a partition on a tmpfs of FULL_MB: it fills within a few
#          seconds, then every one of its requests is answered KAFKA_STORAGE_ERROR
# Placement: a new partition goes to the directory with the fewest partitions, so an empty
# directory in main sends the filler's topic to the tmpfs, and then 100 empty ones in the tmpfs
# send every partition of the measured topic to main. The broker never opens them.
# Usage: sudo [ROUNDS=3] [DUR=8s] [FULL_MB=64] [SIDES="quiet busy full"] perf/disk-full.sh
source "$(dirname "$0")/common.sh"
ROUNDS="${ROUNDS:-3}"
DUR="${DUR:-8s}"
FULL_MB="${FULL_MB:-64}"
BUSY_MB="${BUSY_MB:-6144}"
R="$OUT/disk-full"
SMALL="$DATA-small"
mkdir -p "$R"
SUMMARY="$R/summary.txt"
: >"$SUMMARY"
FILLER=""
cleanup() {
    if [ -n "$FILLER" ]; then
        wait "$FILLER" 2>/dev/null || true
        FILLER=""
    fi
    stop_broker
    umount -l "$SMALL" 2>/dev/null || true
}
trap cleanup EXIT
common=(--brokers "$BROKERS" --progress-secs 0 --drain-timeout 60s)

side() { # side round
    umount -l "$SMALL" 2>/dev/null || true
    mkdir -p "$SMALL"
    local mb=$FULL_MB
    [ "$1" = busy ] && mb=$BUSY_MB
    mount -t tmpfs -o "size=$((mb << 20))" tmpfs "$SMALL"
    rm -rf "$DATA" && mkdir -p "$DATA/main" "$OUT"
    "$GREGOR" serve --set "listeners=PLAINTEXT://$BROKERS" --set "log.dirs=$DATA/main,$SMALL" \
        --set "admin.listeners=" >"$R/gregor-$1-r$2.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    # The internal topics' partitions are spread over both directories at start: one more in
    # main sends the filler's partition to the tmpfs.
    partitions() { find "$1" -mindepth 1 -maxdepth 1 -type d -name '*-[0-9]*' ! -name '__cluster_metadata-*' | wc -l; }
    for _ in $(seq 100); do
        [ $(( $(partitions "$SMALL") + $(partitions "$DATA/main") )) -ge 100 ] && break
        sleep 0.1
    done
    for i in $(seq 0 "$(( $(partitions "$SMALL") - $(partitions "$DATA/main") ))"); do
        mkdir "$DATA/main/pad-$i"
    done
    echo "partitions before the filler: main $(partitions "$DATA/main"), tmpfs $(partitions "$SMALL")"
    if [ "$1" != quiet ]; then
        "$BENCH" "${common[@]}" --label "filler-r$2" --out "$R/filler-r$2" --topic filler \
            --workload produce --acks 1 --record-size 1024 --partitions 1 --batch-size 65536 \
            --duration "$(( ${DUR%s} + 6 ))s" --keep-topics >"$R/filler-r$2.txt" 2>&1 &
        FILLER=$!
        for _ in $(seq 100); do
            ls -d "$SMALL"/filler-* >/dev/null 2>&1 && break
            sleep 0.1
        done
        ls -d "$SMALL"/filler-* >/dev/null
        if [ "$1" = full ]; then
            for _ in $(seq 100); do
                grep -q "no space left for this partition's log" "$R/gregor-$1-r$2.log" && break
                sleep 0.1
            done
            grep -q "no space left" "$R/gregor-$1-r$2.log" || { echo "the tmpfs did not fill" >&2; exit 1; }
        fi
    fi
    for i in $(seq 200); do mkdir "$SMALL/pad-$i"; done
    "$BENCH" "${common[@]}" --broker-pid "$BROKER_PID" --label "$1-r$2" --out "$R/$1-r$2" \
        --workload e2e --acks 1 --record-size 1024 --partitions 12 --rate 48828 --linger-ms 0 \
        --batch-size 1000000 --duration "$DUR" --warmup 1s | grep -E " (e2e|produce) " |
        sed "s/^/$1-r$2 /" | tee -a "$SUMMARY"
    if ls -d "$SMALL"/bench-* >/dev/null 2>&1; then
        echo "a measured partition landed on the tmpfs" >&2
        exit 1
    fi
    if [ -n "$FILLER" ]; then
        wait "$FILLER" || true
        FILLER=""
        grep -E "KAFKA_STORAGE_ERROR|errors|produce " "$R/filler-r$2.txt" | sed "s/^/filler-r$2 /" |
            tee -a "$SUMMARY"
    fi
    stop_broker
}

for round in $(seq "$ROUNDS"); do
    for s in ${SIDES:-quiet busy full}; do
        side "$s" "$round"
    done
done
