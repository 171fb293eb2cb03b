#!/usr/bin/env bash
# "Steady under load": one keyed produce rate in four situations, each on a fresh broker, with a
# consumer reading along (end-to-end latency), then a table of p99 per scenario and its ratio
# to the baseline (a):
#   a  baseline: PRODUCERS (4) producers, keyed (KEYS 10000 distinct 16-byte keys, murmur2
#      partitioning), RATE_MB (50) MB/s of RECORD (1 KiB) values, acks=1, PARTITIONS (12)
#   b  MANY (50) producers, keyed, at the same total rate
#   c  (a) while retention deletes segments: topic segment.bytes=SEGMENT (8 MiB),
#      retention.bytes=RETAIN (32 MiB) per partition, broker log.retention.check.interval.ms=
#      CHECK_MS (1000)
#   d  (a) while a consumer drains a backlog: BACKLOG (10GB) written first (not measured), then
#      the consumer reads from the start while the producers write; BACKLOG_DUR (DUR) long
# Producers use the driver's defaults otherwise: linger 5 ms, batch.size 16384, 5 in flight.
# Usage: perf/steady.sh [a b c d]   (env: DUR=60s WARMUP=5s BACKLOG=10GB ... as above)
source "$(dirname "$0")/common.sh"
RATE_MB="${RATE_MB:-50}"
RECORD="${RECORD:-1024}"
KEYS="${KEYS:-10000}"
KEY_SIZE="${KEY_SIZE:-16}"
PARTITIONS="${PARTITIONS:-12}"
PRODUCERS="${PRODUCERS:-4}"
MANY="${MANY:-50}"
DUR="${DUR:-60s}"
WARMUP="${WARMUP:-5s}"
SEGMENT="${SEGMENT:-8388608}"
RETAIN="${RETAIN:-33554432}"
CHECK_MS="${CHECK_MS:-1000}"
BACKLOG="${BACKLOG:-10GB}"
BACKLOG_DUR="${BACKLOG_DUR:-$DUR}"
DRAIN="${DRAIN:-30s}"
SCENARIOS=("${@:-a b c d}")
read -r -a SCENARIOS <<<"${SCENARIOS[*]}"
# Records/s so that key + value payload is RATE_MB * 10^6 bytes/s (the driver's MB/s).
RATE=$((RATE_MB * 1000000 / (RECORD + KEY_SIZE)))
S="$OUT/steady"
mkdir -p "$S"
trap stop_broker EXIT

run() { # name, broker settings (space separated --set values), driver args...
    local name="$1" sets="$2"
    shift 2
    local broker_args=()
    for s in $sets; do broker_args+=(--set "$s"); done
    start_gregor "${broker_args[@]}"
    "$BENCH" --brokers "$BROKERS" --progress-secs 10 --broker-pid "$BROKER_PID" \
        --label "$name" --out "$S/$name" --acks 1 --record-size "$RECORD" \
        --partitions "$PARTITIONS" --keys "$KEYS" --key-size "$KEY_SIZE" --rate "$RATE" \
        --warmup "$WARMUP" --drain-timeout "$DRAIN" "$@" | tee "$S/$name.txt"
    stop_broker
}

NAMES=()
for sc in "${SCENARIOS[@]}"; do
    case "$sc" in
        a) NAMES+=(a-baseline)
           run a-baseline "" --workload e2e --producers "$PRODUCERS" --duration "$DUR" ;;
        b) NAMES+=(b-producers"$MANY")
           run b-producers"$MANY" "" --workload e2e --producers "$MANY" --duration "$DUR" ;;
        c) NAMES+=(c-retention)
           run c-retention "log.retention.check.interval.ms=$CHECK_MS" --workload e2e \
            --producers "$PRODUCERS" --duration "$DUR" \
            --topic-config "segment.bytes=$SEGMENT,retention.bytes=$RETAIN" ;;
        d) NAMES+=(d-backlog)
           run d-backlog "" --workload backlog --backlog-bytes "$BACKLOG" \
            --producers "$PRODUCERS" --duration "$BACKLOG_DUR" ;;
        *) echo "unknown scenario $sc (a b c d)" >&2; exit 2 ;;
    esac
done

# One line per scenario: MB/s, p99 produce and e2e (ms), consumer MB/s, CPU, notes.
summary() {
    jq -r '.runs[0] | [
        (.produce.mb_per_s * 10 | round / 10),
        (.produce_latency.p99_us / 1000),
        ((.e2e_latency.p99_us // 0) / 1000),
        ((.consume.mb_per_s // 0) * 10 | round / 10),
        ((.driver_cpu.cores * 100 | round | tostring) + "%"),
        (if .broker_cpu then ((.broker_cpu.cores * 100 | round | tostring) + "%") else "-" end),
        ([ (if (.errors | length) > 0 or .missing_records > 0
            then "errors=\((.errors | add // 0) + .missing_records)" else empty end),
           (if .records_deleted > 0 then "retention deleted \(.records_deleted) records" else empty end),
           (if .backlog then
              (if .backlog.drained
               then "backlog \(.backlog.fill.bytes / 1e6 | round) MB drained in \(.backlog.drain_seconds * 10 | round / 10)s at \(.backlog.drain_mb_per_s | round) MB/s"
               else "backlog \(.backlog.fill.bytes / 1e6 | round) MB NOT drained: \(.backlog.unread_records) records unread, read \(.backlog.drain_mb_per_s | round) MB/s" end)
            else empty end)
         ] | join("; ") | if . == "" then "-" else . end | gsub(" "; "_"))
    ] | @tsv' "$1"
}
ratio() { awk -v x="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", x / b; else print "-" }'; }

# The table: p99 of produce and end-to-end per scenario, and the ratio to the baseline (the
# a-baseline result in $S, from this run or an earlier one).
{
    echo "steady under load: $RATE records/s ($RATE_MB MB/s of ${KEY_SIZE} B keys + $RECORD B values), acks=1, $PARTITIONS partitions, $DUR measured after $WARMUP"
    printf '%-16s %9s %9s %6s %9s %6s %9s %6s %6s  %s\n' scenario "prod MB/s" "prod p99" "x(a)" \
        "e2e p99" "x(a)" "cons MB/s" drvCPU brkCPU notes
    base_p=0 base_e=0
    if [ -f "$S/a-baseline/result.json" ]; then
        read -r _ base_p base_e _ < <(summary "$S/a-baseline/result.json")
    fi
    for name in "${NAMES[@]}"; do
        read -r mb pp ep cmb drv brk notes < <(summary "$S/$name/result.json")
        printf '%-16s %9s %9.3f %6s %9.3f %6s %9s %6s %6s  %s\n' "$name" "$mb" "$pp" \
            "$(ratio "$pp" "$base_p")" "$ep" "$(ratio "$ep" "$base_e")" "$cmb" "$drv" "$brk" \
            "${notes//_/ }"
    done
} | tee "$S/table.txt"
