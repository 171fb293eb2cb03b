#!/usr/bin/env bash
# Compaction next to a produce workload on the same shard. One gregor with one shard:
#   1. fill a topic with FILL keyed 1 KiB records over KEYS keys (cleanup.policy=delete, so
#      nothing is cleaned yet);
#   2. produce p50/p99 of 1 KiB records at 50 MB/s (acks=1, open loop) to an ordinary topic:
#      no compaction running;
#   3. switch the filled topic to cleanup.policy=compact (gregor configs --alter) and measure the
#      same workload again while the cleaner compacts it on the same shard;
#   4. the cleaner's throughput (bytes read + written per pass, from its log lines) next to the
#      disk's sequential direct read and write (fio) measured in the same run.
# Usage: perf/compaction.sh      FILL=4000000 KEYS=100000 DUR=10s by default;
#   CLEANER_RATE=150000000 perf/compaction.sh   (log.cleaner.io.max.bytes.per.second)
source "$(dirname "$0")/common.sh"
FILL="${FILL:-4000000}"
KEYS="${KEYS:-100000}"
DUR="${DUR:-10s}"
RATE="${RATE:-48828}"
CLEANER_RATE="${CLEANER_RATE:-1.7976931348623157E308}"
C="$OUT/compaction"
mkdir -p "$C"
trap stop_broker EXIT
start_gregor --set num.shards=1 --set log.cleaner.backoff.ms=500 \
    --set log.segment.bytes=268435456 --set "log.cleaner.io.max.bytes.per.second=$CLEANER_RATE"
common=(--brokers "$BROKERS" --progress-secs 0 --drain-timeout 60s --partitions 1
    --record-size 1024 --acks 1)
"$BENCH" "${common[@]}" --label fill --topic changelog --out "$C/fill" --workload produce \
    --key-cardinality "$KEYS" --records "$FILL" --keep-topics --batch-size 1000000 \
    --max-request-size 8388608 | tee "$C/fill.txt"
TOPIC=$("$GREGOR" topics --bootstrap-server "$BROKERS" list | grep '^changelog' | head -1)
echo "filled topic: $TOPIC ($(du -sh "$DATA/$TOPIC-0" | cut -f1) on disk)"
"$BENCH" "${common[@]}" --label no-compaction --topic quiet --out "$C/produce-quiet" \
    --workload produce --rate "$RATE" --linger-ms 0 --batch-size 1000000 \
    --duration "$DUR" --warmup 2s | tee "$C/produce-quiet.txt"
"$GREGOR" configs --bootstrap-server "$BROKERS" --alter --entity-type topics \
    --entity-name "$TOPIC" --add-config cleanup.policy=compact
date -u +"compaction switched on at %H:%M:%S.%N"
"$BENCH" "${common[@]}" --label compacting --topic busy --out "$C/produce-compacting" \
    --workload produce --rate "$RATE" --linger-ms 0 --batch-size 1000000 \
    --duration "$DUR" --warmup 2s | tee "$C/produce-compacting.txt"
date -u +"measurement ended at %H:%M:%S.%N"
for _ in $(seq 900); do
    grep -q "cleaned log.*partition=$TOPIC-0" "$OUT/gregor.log" && break
    sleep 1
done
echo "== cleaner passes (read + written bytes over the pass time)"
grep "cleaned log" "$OUT/gregor.log" | sed -E 's/\x1b\[[0-9;]*m//g' | tee "$C/cleaner.txt" |
    python3 -c '
import re, sys
for line in sys.stdin:
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    r, w, ms = int(f["read"]), int(f["written"]), int(f["ms"])
    print("%s pass: read %.0f MB, wrote %.0f MB in %.2f s: %.0f MB/s (read+write)" % (
        line[11:23], r / 1e6, w / 1e6, ms / 1e3, (r + w) / 1e6 / max(ms / 1e3, 1e-3)))'
echo "after: $(du -sh "$DATA/$TOPIC-0" | cut -f1) on disk"
stop_broker
echo "== the disk in the same run: fio sequential direct I/O, 1 MiB blocks, iodepth 16"
fio --name=seqwrite --filename="$DATA/fio.test" --rw=write --bs=1M --size=2G --direct=1 \
    --ioengine=io_uring --iodepth=16 --end_fsync=1 --output-format=terse |
    awk -F';' '{printf "write: %.0f MB/s\n", $48*1024/1e6}' | tee "$C/disk.txt"
fio --name=seqread --filename="$DATA/fio.test" --rw=read --bs=1M --size=2G --direct=1 \
    --ioengine=io_uring --iodepth=16 --output-format=terse |
    awk -F';' '{printf "read: %.0f MB/s\n", $7*1024/1e6}' | tee -a "$C/disk.txt"
rm -f "$DATA/fio.test"
