#!/usr/bin/env bash
# Set up a virtual environment (once) and run the project's tests (all markers, CI included).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[test,train]"
  touch .venv/.installed
fi
# --durations: the log shows where CI's time goes (the target is under 30 minutes)
exec .venv/bin/python -m pytest -q --durations=15 "$@"
