#!/usr/bin/env bash
# Set up a virtual environment and run the service on embedded defaults
# (SQLite store, filesystem broker, one in-process-managed worker).
# Usage: bash scripts/serve.sh [--host 127.0.0.1] [--port 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
exec .venv/bin/spectral-topics serve "$@"
