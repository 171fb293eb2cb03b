#!/bin/sh
# Builds the Go client drivers of tests/compat/README.md from Debian bookworm's packages, offline:
#   bin/kafka-go-driver  segmentio/kafka-go 0.2.1 (golang-github-segmentio-kafka-go-dev)
#   bin/sarama-driver    Shopify/sarama 1.22.1   (golang-github-shopify-sarama-dev; zstd via cgo
#                        and Debian's libzstd)
# Debian ships Go libraries as sources under /usr/share/gocode, so the drivers build in GOPATH
# mode (GO111MODULE=off) with this directory's src/ first: no module proxy is needed.
# Idempotent: installs only missing packages and rebuilds only when a source or a package
# version changed.
set -eu
cd "$(dirname "$0")"
HERE=$(pwd)

PKGS="golang-go golang-github-segmentio-kafka-go-dev golang-github-shopify-sarama-dev gcc libc6-dev pkg-config"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    echo "go setup: installing$missing"
    # shellcheck disable=SC2086
    if ! $SUDO apt-get install -y -q --no-install-recommends $missing < /dev/null; then
        # A fresh container has no package lists yet.
        $SUDO apt-get update -q < /dev/null
        # shellcheck disable=SC2086
        $SUDO apt-get install -y -q --no-install-recommends $missing < /dev/null
    fi
fi

ver() { dpkg-query -W -f='${Version}' "$1"; }
upstream() { echo "$1" | sed 's/-[^-]*$//'; }
KGO_DEB=$(ver golang-github-segmentio-kafka-go-dev)
SARAMA_DEB=$(ver golang-github-shopify-sarama-dev)
KGO_VERSION="$(upstream "$KGO_DEB") (Debian $KGO_DEB)"
SARAMA_VERSION="$(upstream "$SARAMA_DEB") (Debian $SARAMA_DEB)"

export GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$HERE:/usr/share/gocode"
export CGO_ENABLED=1 CGO_CFLAGS="-g -O2 -Wno-deprecated-declarations"
if [ -z "${HOME:-}" ] && [ -z "${GOCACHE:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
    export GOCACHE=/tmp/gregor-compat-go-cache
fi

stamp=$( (go version; echo "$KGO_DEB $SARAMA_DEB"; find src -type f -name '*.go' | sort | xargs cat) | sha256sum | cut -d' ' -f1)
if [ -x bin/kafka-go-driver ] && [ -x bin/sarama-driver ] && [ "$(cat bin/.stamp 2>/dev/null)" = "$stamp" ]; then
    echo "go drivers up to date: kafka-go $KGO_VERSION, sarama $SARAMA_VERSION ($(go version))"
    exit 0
fi
mkdir -p bin
echo "go setup: building with $(go version)"
go build -ldflags "-X 'main.version=$KGO_VERSION'" -o bin/kafka-go-driver gregorcompat/kafkago
go build -ldflags "-X 'main.version=$SARAMA_VERSION'" -o bin/sarama-driver gregorcompat/sarama
echo "$stamp" > bin/.stamp
echo "go drivers built: bin/kafka-go-driver (kafka-go $KGO_VERSION), bin/sarama-driver (sarama $SARAMA_VERSION)"
