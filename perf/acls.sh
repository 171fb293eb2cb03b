#!/usr/bin/env bash
# What ACLs cost, as librdkafka sees it: the same SASL_PLAINTEXT (PLAIN) client against a
# broker without an authorizer ("off") and one with StandardAuthorizer and 1,000 unrelated
# prefixed ACLs besides the client's own ("on": every request is checked against the index).
# Per round and mode, 1 KiB records with acks=1 on 12 partitions: produce throughput, consume
# throughput, then end-to-end latency at 50 MB/s. Rounds alternate the modes (fresh broker each
# time) so both see the same machine noise.
# Usage: [ROUNDS=3] [RECORDS=500000] [E2E_SECS=10] perf/acls.sh
source "$(dirname "$0")/common.sh"
ROUNDS="${ROUNDS:-3}"
RECORDS="${RECORDS:-500000}"
E2E_SECS="${E2E_SECS:-10}"
CLIENT_BENCH="${CLIENT_BENCH:-$ROOT/target/release/gregor-client-bench}"
SASL_PORT=$((PORT + 2))
A="$OUT/acls"
mkdir -p "$A"
SUMMARY="$A/summary.txt"
: >"$SUMMARY"
trap stop_broker EXIT

JAAS='org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-secret" user_perf="perf-secret";'
printf '%s\n' 'security.protocol=SASL_PLAINTEXT' 'sasl.mechanism=PLAIN' \
    'sasl.username=admin' 'sasl.password=admin-secret' >"$A/admin.properties"

start_mode() { # off|on
    local extra=()
    if [ "$1" = on ]; then
        extra=(--set "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            --set "super.users=User:admin")
    fi
    start_gregor \
        --set "listeners=PLAINTEXT://$BROKERS,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT" \
        --set "sasl.enabled.mechanisms=PLAIN" \
        --set "listener.name.sasl_plaintext.plain.sasl.jaas.config=$JAAS" "${extra[@]}"
    if [ "$1" = on ]; then
        local acl=("$GREGOR" acls --bootstrap-server "127.0.0.1:$SASL_PORT" --command-config "$A/admin.properties")
        "${acl[@]}" --add --allow-principal User:perf --operation All \
            --topic client-bench- --resource-pattern-type PREFIXED >/dev/null
        "${acl[@]}" --add --allow-principal User:perf --operation Read --group gregor-client-bench >/dev/null
        local topics=()
        for i in $(seq 1000); do topics+=(--topic "team-$i-"); done
        "${acl[@]}" --add --allow-principal User:other --operation Write \
            --resource-pattern-type PREFIXED "${topics[@]}" >/dev/null
        echo "ACLs: $("${acl[@]}" --list | grep -c permissionType)"
    fi
}

for round in $(seq "$ROUNDS"); do
    for mode in off on; do
        start_mode "$mode"
        "$CLIENT_BENCH" --label "acls-$mode" --bootstrap "127.0.0.1:$SASL_PORT" \
            -X security.protocol=sasl_plaintext -X sasl.mechanisms=PLAIN \
            -X sasl.username=perf -X sasl.password=perf-secret \
            --records "$RECORDS" --e2e-secs "$E2E_SECS" \
            | sed "s/^/round $round  /" | tee -a "$SUMMARY"
        stop_broker
    done
done
echo "summary: $SUMMARY"
