#!/usr/bin/env bash
# Installs the Node.js clients of the compatibility suite, pinned by package-lock.json:
#   kafkajs 2.2.4 (+ kafkajs-snappy, kafkajs-lz4, @bokuweb/zstd-wasm for its codecs)
#   @confluentinc/kafka-javascript 1.10.1 (librdkafka 2.15.1)
# Idempotent: does nothing when node_modules already matches package-lock.json.
#
# @confluentinc/kafka-javascript first tries a prebuilt binary from GitHub, which this
# machine cannot reach, then builds its bundled librdkafka with node-gyp. Its default static
# build downloads zlib, OpenSSL, zstd and curl sources, which fails here too; with
# CKJS_LINKING=dynamic it links Debian's libssl, zlib and libzstd instead (about 2 minutes
# on 2 cores).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "setup.sh: node and npm are needed (Node.js 20)" >&2
    exit 1
fi

stamp=node_modules/.gregor-setup-stamp
want="$(node --version) $(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    node -e "require('@confluentinc/kafka-javascript'); require('kafkajs'); require('kafkajs-lz4')" 2>/dev/null; then
    echo "setup.sh: node clients already installed"
    exit 0
fi

# Build tools and libraries for librdkafka (and lz4's native module).
debs=(g++ make python3 pkg-config libssl-dev zlib1g-dev libzstd-dev)
missing=()
for d in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# node-gyp must use the headers of the installed Node.js: fetching them is not possible here.
if [ -z "${npm_config_nodedir:-}" ]; then
    prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
    if [ -f "$prefix/include/node/node.h" ]; then
        export npm_config_nodedir="$prefix"
    fi
fi

start=$(date +%s)
CKJS_LINKING=dynamic npm ci --no-audit --no-fund --loglevel=error
node -e "
const c = require('@confluentinc/kafka-javascript');
for (const f of ['gzip', 'snappy', 'lz4', 'zstd']) {
  if (!c.features.includes(f)) { console.error('librdkafka built without ' + f); process.exit(1); }
}
require('kafkajs'); require('kafkajs-snappy'); require('kafkajs-lz4'); require('@bokuweb/zstd-wasm');
console.log('setup.sh: kafkajs ' + require('kafkajs/package.json').version +
  ', @confluentinc/kafka-javascript ' + require('@confluentinc/kafka-javascript/package.json').version +
  ' (librdkafka ' + c.librdkafkaVersion + ')');
"
echo "$want" >"$stamp"
echo "setup.sh: npm ci took $(($(date +%s) - start)) s"
