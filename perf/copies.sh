#!/usr/bin/env bash
# Where the broker's CPU goes on copying bytes, for two builds: the share of its CPU samples
# whose innermost frame is memmove/memcpy/memset (user-space copies and zeroing) or the kernel's
# copies to and from user memory (_copy_to_iter and kin: the recv and send copies), under the 1 KiB
# produce target (acks=1, 12 partitions).
# Needs linux-perf. Usage: A=/path/old/gregor B=/path/new/gregor [DUR=8s] perf/copies.sh
source "$(dirname "$0")/common.sh"
A="${A:?path of build A}"
B="${B:?path of build B}"
DUR="${DUR:-8s}"
C="$OUT/copies"
mkdir -p "$C"
trap stop_broker EXIT
for side in A B; do
    GREGOR="${!side}"
    start_gregor
    perf record -F 999 -g -p "$BROKER_PID" -o "$C/perf-$side.data" 2>/dev/null &
    rec=$!
    "$BENCH" --brokers "$BROKERS" --progress-secs 0 --broker-pid "$BROKER_PID" \
        --drain-timeout 60s --label "$side" --out "$C/$side" \
        --workload produce --acks 1 --record-size 1024 --partitions 12 \
        --batch-size 1000000 --max-request-size 8388608 --duration "$DUR" --warmup 1s |
        grep -E " produce "
    kill -INT "$rec"; wait "$rec" || true
    stop_broker
    perf report -i "$C/perf-$side.data" --no-children --sort symbol --stdio 2>/dev/null \
        >"$C/$side.report.txt"
    rm -f "$C/perf-$side.data"
    python3 - "$side" "$C/$side.report.txt" <<'PY'
import re, sys
side, path = sys.argv[1], sys.argv[2]
user = kernel = 0.0
for line in open(path):
    m = re.match(r"\s+([\d.]+)%\s+\[[.k]\]\s+(\S+)", line)
    if not m:
        continue
    share, sym = float(m.group(1)), m.group(2)
    if "memmove" in sym or "memcpy" in sym or "memset" in sym:
        user += share
    elif "copy_user" in sym or "copy_to_iter" in sym or "copy_from_iter" in sym:
        kernel += share
print(f"{side}: memmove/memcpy/memset {user:.1f} % of broker CPU samples, kernel copies to and from user memory {kernel:.1f} %")
PY
done
