#!/bin/sh
# Installs Burrow (Debian bookworm: burrow 1.2.1, LinkedIn's consumer lag monitor, built on
# sarama 1.22) and kcat for tests/compat/burrow/burrow_driver.py. The driver itself needs only
# python3; Burrow's ZooKeeper is an in-memory stand-in (fake_zookeeper.py), so no JRE.
# Idempotent: installs only what is missing.
set -eu

missing=""
command -v Burrow >/dev/null 2>&1 || missing="$missing burrow"
command -v kcat >/dev/null 2>&1 || missing="$missing kcat"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
if [ -n "$missing" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    echo "burrow setup: installing$missing"
    # shellcheck disable=SC2086
    if ! $SUDO apt-get install -y -q --no-install-recommends $missing < /dev/null; then
        # A fresh container has no package lists yet.
        $SUDO apt-get update -q < /dev/null
        # shellcheck disable=SC2086
        $SUDO apt-get install -y -q --no-install-recommends $missing < /dev/null
    fi
fi
echo "burrow present: $(dpkg-query -W -f='${Version}' burrow), kcat $(kcat -V 2>&1 | grep -m1 '^Version' | cut -d' ' -f2)"
