# Shared helpers of the perf scripts: start/stop a release gregor on 127.0.0.1 with a fresh
# data directory, and the paths everything uses. Source it; do not run it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GREGOR="${GREGOR:-$ROOT/target/release/gregor}"
BENCH="${BENCH:-$ROOT/target/release/gregor-bench}"
PORT="${PORT:-19092}"
BROKERS="127.0.0.1:$PORT"
# Broker data lives on the machine's disk (not tmpfs), as the targets ask.
DATA="${DATA:-/var/tmp/gregor-perf-data}"
OUT="${OUT:-$ROOT/perf/results}"
BROKER_PID=""

build() {
    (cd "$ROOT" && cargo build --release -p gregor -p gregor-bench)
}

start_gregor() {
    rm -rf "$DATA" && mkdir -p "$DATA" "$OUT"
    "$GREGOR" serve --set "listeners=PLAINTEXT://$BROKERS" --set "log.dirs=$DATA" "$@" \
        >"$OUT/gregor.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "gregor did not start; see $OUT/gregor.log" >&2
    return 1
}

stop_broker() {
    if [ -n "$BROKER_PID" ]; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}
