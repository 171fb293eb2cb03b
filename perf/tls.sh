#!/usr/bin/env bash
# TLS against PLAINTEXT in the same run, as librdkafka sees it: one broker with a PLAINTEXT, an
# SSL and a SASL_SSL (SCRAM-SHA-512) listener; per round and way in, 1 KiB records with acks=1
# on 12 partitions: produce throughput, consume throughput, then end-to-end latency at 50 MB/s.
# Rounds alternate the ways in so all see the same machine noise. Certificates are made here.
# Usage: [ROUNDS=3] [RECORDS=500000] [E2E_SECS=10] perf/tls.sh
source "$(dirname "$0")/common.sh"
ROUNDS="${ROUNDS:-3}"
RECORDS="${RECORDS:-500000}"
E2E_SECS="${E2E_SECS:-10}"
CLIENT_BENCH="${CLIENT_BENCH:-$ROOT/target/release/gregor-client-bench}"
SSL_PORT=$((PORT + 1))
SASL_PORT=$((PORT + 2))
T="$OUT/tls"
mkdir -p "$T"
SUMMARY="$T/summary.txt"
: >"$SUMMARY"
trap stop_broker EXIT

# A CA and a broker certificate for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=perf CA" -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=broker" \
    -keyout "$T/broker.key" -out "$T/broker.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$T/san.ext"
openssl x509 -req -in "$T/broker.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
    -days 2 -extfile "$T/san.ext" -out "$T/broker.crt" 2>/dev/null
cat "$T/broker.key" "$T/broker.crt" >"$T/broker.pem"

start_gregor \
    --set "listeners=PLAINTEXT://$BROKERS,SSL://127.0.0.1:$SSL_PORT,SASL_SSL://127.0.0.1:$SASL_PORT" \
    --set "ssl.keystore.location=$T/broker.pem" \
    --set "sasl.enabled.mechanisms=SCRAM-SHA-512"
"$GREGOR" users --bootstrap-server "$BROKERS" add perf --mechanism SCRAM-SHA-512 --password perf-secret

way() { # label -> client arguments
    case $1 in
        plaintext) echo "--bootstrap $BROKERS" ;;
        ssl) echo "--bootstrap 127.0.0.1:$SSL_PORT -X security.protocol=ssl -X ssl.ca.location=$T/ca.pem" ;;
        sasl_ssl) echo "--bootstrap 127.0.0.1:$SASL_PORT -X security.protocol=sasl_ssl -X ssl.ca.location=$T/ca.pem -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=perf -X sasl.password=perf-secret" ;;
    esac
}

for round in $(seq "$ROUNDS"); do
    for w in plaintext ssl sasl_ssl; do
        # shellcheck disable=SC2046
        "$CLIENT_BENCH" --label "$w" $(way "$w") --records "$RECORDS" --e2e-secs "$E2E_SECS" \
            | sed "s/^/round $round  /" | tee -a "$SUMMARY"
    done
done
echo "summary: $SUMMARY"
