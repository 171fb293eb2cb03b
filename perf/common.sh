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

# The machine's limits the targets are shares of, appended to the file $1 as they print:
# disk sequential direct write (and read, with $2 = read), fio 1 MiB blocks at QD16; TCP
# loopback, iperf3, one stream, 1 MiB writes.
measure_limits() {
    local summary=$1 read=${2:-}
    mkdir -p "$DATA"
    fio --name=seqwrite --filename="$DATA/fio.test" --rw=write --bs=1M --size=2G --direct=1 \
        --ioengine=io_uring --iodepth=16 --end_fsync=1 --output-format=terse |
        awk -F';' '{printf "fio direct write: %.0f MB/s\n", $48*1024/1e6}' | tee -a "$summary"
    if [ "$read" = read ]; then
        fio --name=seqread --filename="$DATA/fio.test" --rw=read --bs=1M --size=2G --direct=1 \
            --ioengine=io_uring --iodepth=16 --output-format=terse |
            awk -F';' '{printf "fio direct read: %.0f MB/s\n", $7*1024/1e6}' | tee -a "$summary"
    fi
    rm -f "$DATA/fio.test"
    iperf3 -s -1 -p 15201 >/dev/null 2>&1 &
    sleep 0.5
    iperf3 -c 127.0.0.1 -p 15201 -t 5 -l 1M -J | python3 -c \
        'import json,sys; r=json.load(sys.stdin)["end"]["sum_received"]; print("loopback: %.0f MB/s" % (r["bits_per_second"]/8e6))' |
        tee -a "$summary"
}
