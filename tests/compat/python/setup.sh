#!/usr/bin/env bash
# Installs the pinned Python clients (and their codec packages) of the compatibility drivers in
# this directory into the python3 that runs them. Idempotent: returns at once when every pin in
# requirements.txt is already installed. Works as root on a fresh Debian with python3.
set -euo pipefail
cd "$(dirname "$0")"

PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v "$PY" >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends python3 python3-pip < /dev/null
fi

pins_installed() {
    "$PY" - <<'EOF'
import sys
from importlib import metadata

for line in open("requirements.txt"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, version = line.partition("==")
    try:
        if metadata.version(name.strip()) != version.strip():
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
EOF
}

if pins_installed; then
    echo "python compat clients: already installed"
    exit 0
fi

if ! "$PY" -m pip --version >/dev/null 2>&1; then
    "$PY" -m ensurepip --upgrade >/dev/null 2>&1 || {
        $SUDO apt-get update -q
        $SUDO apt-get install -y -q --no-install-recommends python3-pip < /dev/null
    }
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "$PY" -m pip install -q -r requirements.txt 2>"$log"; then
    if grep -q externally-managed-environment "$log"; then
        # Debian's own python3 (PEP 668): install beside the system packages.
        "$PY" -m pip install -q --break-system-packages -r requirements.txt
    else
        cat "$log" >&2
        exit 1
    fi
fi

pins_installed || { echo "python compat clients: pins still not satisfied after pip install" >&2; exit 1; }
echo "python compat clients: installed"
