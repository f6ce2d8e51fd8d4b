#!/usr/bin/env bash
# Set up a virtual environment and run the service on embedded defaults
# (SQLite store, filesystem broker, one in-process-managed worker).
# The project is (re)installed only when pyproject.toml changed since the last install
# (its hash is kept in .venv/.pyproject-installed), so a second start takes seconds.
# Usage: bash scripts/serve.sh [--host 127.0.0.1] [--port 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
STAMP=.venv/.pyproject-installed
WANT="$(.venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())')"
if [ ! -x .venv/bin/spectral-topics ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  .venv/bin/python -m pip install --quiet -e .
  echo "$WANT" > "$STAMP"
fi
exec .venv/bin/spectral-topics serve "$@"
