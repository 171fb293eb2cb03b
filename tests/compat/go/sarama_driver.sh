#!/bin/sh
# Runs bin/sarama-driver (built by setup.sh) with the driver command line of tests/compat/README.md.
exec "$(dirname "$0")/bin/sarama-driver" "$@"
