#!/usr/bin/env bash
# A/B of two gregor builds on the produce throughput target (1 KiB records, acks=1, 12
# partitions, unlimited rate), alternating A and B ROUNDS times so both see the same noise;
# prints each run's rate and the broker's CPU-seconds per GB produced. First, the limits the
# target is a share of, measured in the same run: fio direct sequential write and iperf3 loopback.
# Usage: A=/path/old/gregor B=/path/new/gregor [ROUNDS=3] [DUR=8s] perf/produce-ab.sh
source "$(dirname "$0")/common.sh"
A="${A:?path of build A}"
B="${B:?path of build B}"
ROUNDS="${ROUNDS:-3}"
DUR="${DUR:-8s}"
P="$OUT/produce-ab"
mkdir -p "$P"
trap stop_broker EXIT
: >"$P/summary.txt"
measure_limits "$P/summary.txt"
for round in $(seq "$ROUNDS"); do
    for side in A B; do
        GREGOR="${!side}"
        start_gregor
        "$BENCH" --brokers "$BROKERS" --progress-secs 0 --broker-pid "$BROKER_PID" \
            --drain-timeout 60s --label "$side-r$round" --out "$P/$side-r$round" \
            --workload produce --acks 1 --record-size 1024 --partitions 12 \
            --batch-size 1000000 --max-request-size 8388608 --duration "$DUR" --warmup 1s |
            grep -E " produce " | tee -a "$P/summary.txt"
        stop_broker
        python3 - "$P/$side-r$round/result.json" <<'PY' | tee -a "$P/summary.txt"
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
p, cpu = r.get("produce") or {}, r.get("broker_cpu") or {}
if p.get("mb_per_s") and cpu.get("cores") is not None:
    print(f"{r['label']}: {p['mb_per_s']:.0f} MB/s, broker {cpu['cores']:.2f} cores, "
          f"{cpu['cores'] / (p['mb_per_s'] / 1000):.2f} CPU-s per GB")
PY
    done
done
