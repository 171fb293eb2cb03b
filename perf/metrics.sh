#!/usr/bin/env bash
# The cost of metrics: this build with its admin listener scraped, against a build without the
# metrics registry (BEFORE), alternating sides ROUNDS times so all see the same machine noise.
#   off        BEFORE (no per-shard counters, no admin listener)
#   unscraped  this build, counting, admin listener off (the cost of counting, plus whatever
#              else changed since BEFORE)
#   on-1s      this build, /metrics scraped every second during the run
#   on-100ms   this build, scraped ten times a second (a stress case: Prometheus scrapes every 15 s)
# Every broker holds a 1000-partition topic besides the measured one, so each scrape walks
# 1,100+ partitions. Per side and round: 1 KiB produce with acks=1 on 12 partitions (throughput,
# ack p99, broker CPU per GB), then 1 KiB at 50 MB/s end to end with acks=1 (produce and e2e p99).
# At the end: how long one scrape of that broker takes and how big the page is.
# Usage: BEFORE=/path/gregor-without-metrics [ROUNDS=3] [DUR=8s] perf/metrics.sh
source "$(dirname "$0")/common.sh"
BEFORE="${BEFORE:?path of a gregor build without metrics}"
ROUNDS="${ROUNDS:-3}"
DUR="${DUR:-8s}"
ADMIN_PORT="${ADMIN_PORT:-19644}"
M="$OUT/metrics"
mkdir -p "$M"
SUMMARY="$M/summary.txt"
: >"$SUMMARY"
SCRAPER=""
stop_all() {
    if [ -n "$SCRAPER" ]; then
        kill "$SCRAPER" 2>/dev/null || true
        wait "$SCRAPER" 2>/dev/null || true
        SCRAPER=""
    fi
    stop_broker
}
trap stop_all EXIT
THIS="$GREGOR"
common=(--brokers "$BROKERS" --progress-secs 0 --drain-timeout 60s)

side_start() { # side
    case $1 in
        off) GREGOR="$BEFORE" start_gregor ;;
        unscraped) GREGOR="$THIS" start_gregor --set "admin.listeners=" ;;
        *) GREGOR="$THIS" start_gregor --set "admin.listeners=127.0.0.1:$ADMIN_PORT" ;;
    esac
    "$THIS" topics create --bootstrap-server "$BROKERS" --topic many --partitions 1000 >/dev/null
    local every=""
    case $1 in
        on-1s) every=1 ;;
        on-100ms) every=0.1 ;;
    esac
    if [ -n "$every" ]; then
        (while :; do curl -s -o /dev/null "http://127.0.0.1:$ADMIN_PORT/metrics"; sleep "$every"; done) &
        SCRAPER=$!
    fi
}

for round in $(seq "$ROUNDS"); do
    for side in off unscraped on-1s on-100ms; do
        side_start "$side"
        "$BENCH" "${common[@]}" --broker-pid "$BROKER_PID" --label "$side-produce-r$round" \
            --out "$M/$side-produce-r$round" --workload produce --acks 1 --record-size 1024 \
            --partitions 12 --batch-size 1000000 --max-request-size 8388608 --duration "$DUR" \
            --warmup 1s | grep -E " produce " | tee -a "$SUMMARY"
        "$BENCH" "${common[@]}" --broker-pid "$BROKER_PID" --label "$side-e2e-r$round" \
            --out "$M/$side-e2e-r$round" --workload e2e --acks 1 --record-size 1024 \
            --partitions 1 --rate 48828 --linger-ms 0 --batch-size 1000000 --duration "$DUR" \
            --warmup 1s | grep -E " (e2e|produce) " | tee -a "$SUMMARY"
        stop_all
    done
done

echo "== broker CPU per GB produced" | tee -a "$SUMMARY"
for f in "$M"/*-produce-r*/result.json; do
    [ -e "$f" ] || continue
    python3 - "$f" <<'PY' | tee -a "$SUMMARY"
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
p, cpu = r.get("produce"), r.get("broker_cpu") or {}
if p and p.get("mb_per_s") and cpu.get("cores") is not None:
    print(f"{r['label']}: {p['mb_per_s']:.0f} MB/s, {cpu['cores']:.2f} cores, "
          f"{cpu['cores'] / (p['mb_per_s'] / 1000):.2f} CPU-s/GB")
PY
done

echo "== one scrape, 1,100+ partitions" | tee -a "$SUMMARY"
side_start on
for _ in $(seq 50); do
    curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$ADMIN_PORT/metrics"
done | sort -n | awk '{t[NR]=$1; s=$2} END {printf "scrape time min %.1f ms, median %.1f ms, max %.1f ms; page %d bytes\n", t[1]*1000, t[int((NR+1)/2)]*1000, t[NR]*1000, s}' |
    tee -a "$SUMMARY"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^gregor_shard_scrape_seconds' |
    awk '{printf "shard %s: %.3f ms of its time\n", $1, $2*1000}' | tee -a "$SUMMARY"
stop_all
