#!/usr/bin/env bash
# A CPU flamegraph of the broker under one workload (default: 100 B records, acks=1, 1
# partition, unlimited rate), plus `perf stat` of the same window.
# Needs linux-perf and inferno (cargo install inferno). Writes perf/results/profile-<name>.svg.
# Usage: perf/profile.sh NAME [gregor-bench args...]
source "$(dirname "$0")/common.sh"
NAME="${1:-produce-100B-acks1}"
shift || true
ARGS=("$@")
if [ ${#ARGS[@]} -eq 0 ]; then
    ARGS=(--workload produce --acks 1 --record-size 100 --batch-size 1000000 --duration 8s)
fi
INFERNO="${INFERNO:-/opt/inferno/bin}"
mkdir -p "$OUT"
trap stop_broker EXIT
start_gregor
perf record -F 499 -g -p "$BROKER_PID" -o "$OUT/perf-$NAME.data" &
rec_pid=$!
perf stat -p "$BROKER_PID" -o "$OUT/perf-stat-$NAME.txt" &
stat_pid=$!
"$BENCH" --brokers "$BROKERS" --progress-secs 0 --broker-pid "$BROKER_PID" \
    --label "gregor-$NAME" --out "$OUT/$NAME" "${ARGS[@]}" | tee "$OUT/$NAME.table.txt"
kill -INT "$rec_pid" "$stat_pid"; wait "$rec_pid" "$stat_pid" || true
perf script -i "$OUT/perf-$NAME.data" 2>/dev/null \
    | "$INFERNO/inferno-collapse-perf" >"$OUT/perf-$NAME.folded"
"$INFERNO/inferno-flamegraph" --title "gregor: $NAME" <"$OUT/perf-$NAME.folded" \
    >"$OUT/profile-$NAME.svg"
rm -f "$OUT/perf-$NAME.data"
echo "flamegraph: $OUT/profile-$NAME.svg"
