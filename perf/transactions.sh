#!/usr/bin/env bash
# What transactions cost, on one local 3-node cluster (started as perf/cluster.sh does: every node
# a broker and a voter, replication factor 3, min.insync.replicas=2), all in one run:
#   1. produce, acks=all, 1 KiB records, as fast as acknowledgements allow (RATE for open loop):
#      plain idempotent produce, transactions of 100 records and of 1000 records
#      (--transaction-records 0,100,1000), each on a fresh topic: records/s, MB/s, p50/p99
#      produce latency, p99 commit latency (the EndTxn round trip, one sample per transaction);
#   2. consume: a topic filled by transactions of 1000 records, read from the start by
#      read_uncommitted and then by read_committed consumers (each its own fill): consumer
#      records/s and MB/s, and the CPU of all broker processes while the consumers read (in % of
#      one core, and in CPU microseconds per 1000 records read).
# Usage: perf/transactions.sh
#   NODES=1 perf/transactions.sh            (one broker, replication factor 1)
#   SIZES=0,100,1000 DUR=10s RATE=unlimited PRODUCERS=1 PARTS=3 SHARDS=1 by default;
#   RECORDS=1000000 FILL_TXN=1000 for the consume fill (FILL_TXN=0: idempotent, no transactions)
source "$(dirname "$0")/common.sh"
NODES="${NODES:-3}"
SHARDS="${SHARDS:-1}"
DUR="${DUR:-10s}"
PARTS="${PARTS:-3}"
SIZES="${SIZES:-0,100,1000}"
RATE="${RATE:-unlimited}"
PRODUCERS="${PRODUCERS:-1}"
RECORDS="${RECORDS:-1000000}"
FILL_TXN="${FILL_TXN:-1000}"
T="$OUT/transactions"
mkdir -p "$T"
PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop_all EXIT
if [ "$NODES" = 3 ]; then
    VOTERS="1@127.0.0.1:29093,2@127.0.0.1:29095,3@127.0.0.1:29097"
    for n in 1 2 3; do
        bp=$((29090 + 2 * n)); cp=$((bp + 1))
        rm -rf "$DATA-$n" && mkdir -p "$DATA-$n"
        "$GREGOR" serve --set node.id=$n --set process.roles=broker,controller \
            --set "listeners=PLAINTEXT://127.0.0.1:$bp,CONTROLLER://127.0.0.1:$cp" \
            --set "controller.quorum.voters=$VOTERS" --set "log.dirs=$DATA-$n" \
            --set num.shards="$SHARDS" --set min.insync.replicas=2 \
            >"$T/node$n.log" 2>&1 &
        PIDS+=($!)
    done
    BROKERS="127.0.0.1:29092"
    RF=3
    for _ in $(seq 200); do
        "$GREGOR" cluster status --bootstrap-server "$BROKERS" 2>/dev/null | grep -c unfenced |
            grep -q 3 && break
        sleep 0.1
    done
    "$GREGOR" cluster status --bootstrap-server "$BROKERS" | tee "$T/status.txt"
elif [ "$NODES" = 1 ]; then
    start_gregor --set num.shards="$SHARDS"
    PIDS+=("$BROKER_PID")
    RF=1
else
    echo "NODES must be 1 or 3" >&2; exit 2
fi
PIDLIST=$(IFS=,; echo "${PIDS[*]}")
common=(--brokers "$BROKERS" --progress-secs 0 --drain-timeout 60s --replication-factor "$RF"
    --partitions "$PARTS" --record-size 1024 --acks all --broker-pid "$PIDLIST"
    --producers "$PRODUCERS" --batch-size 1000000 --max-request-size 8388608)
"$BENCH" "${common[@]}" --label txn --out "$T/produce" --workload produce \
    --transaction-records "$SIZES" --rate "$RATE" --duration "$DUR" --warmup 2s \
    | tee "$T/produce.txt"
for iso in read_uncommitted read_committed; do
    "$BENCH" "${common[@]}" --label "${iso#read_}" --out "$T/consume-$iso" --workload consume \
        --transaction-records "$FILL_TXN" --isolation-level "$iso" --records "$RECORDS" \
        | tee "$T/consume-$iso.txt"
done
echo "== $NODES node(s), RF $RF, $PARTS partitions, 1 KiB records, acks=all, rate $RATE" |
    tee "$T/table.txt"
python3 - "$T" <<'EOF' | tee -a "$T/table.txt"
import json, sys
t = sys.argv[1]
ms = lambda s, k: "%.2f" % (s[k] / 1000) if s and s.get("count") else "-"
err = lambda r: r["error_records"] + r["missing_records"] + sum(r["errors"].values())
print("%-12s %11s %8s %9s %9s %14s %9s %7s" % (
    "producer", "records/s", "MB/s", "p50 ms", "p99 ms", "commit p99 ms", "commits/s", "errors"))
for r in json.load(open(t + "/produce/result.json"))["runs"]:
    txn = r.get("transactions") or {}
    commits = txn.get("commits", {}).get("records_per_s")
    print("%-12s %11.0f %8.1f %9s %9s %14s %9s %7d" % (
        r["config"]["mode"], r["produce"]["records_per_s"], r["produce"]["mb_per_s"],
        ms(r["produce_latency"], "p50_us"), ms(r["produce_latency"], "p99_us"),
        ms(r.get("commit_latency"), "p99_us"), "-" if commits is None else "%.1f" % commits,
        err(r)))
print()
print("%-18s %11s %8s %12s %17s %12s %7s" % ("consumer", "records/s", "MB/s", "broker CPU",
    "broker us/1k rec", "driver CPU", "errors"))
for iso in ("read_uncommitted", "read_committed"):
    for r in json.load(open("%s/consume-%s/result.json" % (t, iso)))["runs"]:
        c, b = r["consume"], r.get("broker_cpu")
        per_k = "%.0f" % (b["cpu_s"] * 1e9 / c["records"]) if b and c["records"] else "-"
        print("%-18s %11.0f %8.1f %12s %17s %12s %7d" % (
            iso, c["records_per_s"], c["mb_per_s"], "%.0f%%" % (b["cores"] * 100) if b else "-",
            per_k, "%.0f%%" % (r["driver_cpu"]["cores"] * 100), err(r)))
EOF
