#!/usr/bin/env bash
# Set up a virtual environment (once) and run the embedded default: `mammocert demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/mammocert ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e .
fi
exec .venv/bin/mammocert demo "$@"
