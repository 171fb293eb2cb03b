#!/bin/sh
# Installs kcat (Debian bookworm: kcat 1.7.1 on librdkafka 2.0.2) for tests/compat/kcat/kcat_driver.py.
# Idempotent: does nothing when kcat is already on PATH. The driver itself needs only python3.
set -eu

if command -v kcat >/dev/null 2>&1; then
    echo "kcat present: $(kcat -V 2>&1 | grep -m1 '^Version')"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends kcat; then
    # A fresh container has no package lists yet.
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends kcat
fi
command -v python3 >/dev/null 2>&1 || $SUDO apt-get install -y -q --no-install-recommends python3
echo "kcat installed: $(kcat -V 2>&1 | grep -m1 '^Version')"
