#!/bin/sh
# Container entry: make sure the data directory exists, then run the given command.
set -eu
mkdir -p "${DATA_DIR:-/data}"
exec "$@"
