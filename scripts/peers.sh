#!/usr/bin/env bash
# Make the Open Inference Protocol peers' virtual environments (.peers/<name>), once: MLServer and
# KServe pin conflicting Starlette releases, so each has its own. A venv is rebuilt only when its
# requirements file is newer than its stamp. Usage: scripts/peers.sh [mlserver] [kserve]
set -euo pipefail
cd "$(dirname "$0")/.."
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(mlserver kserve)
for name in "${names[@]}"; do
  req="harness/reference/oip/requirements-$name.txt"
  [ -f "$req" ] || { echo "peers.sh: no $req (known peers: mlserver, kserve)" >&2; exit 2; }
  venv=".peers/$name"
  if [ -x "$venv/bin/python" ] && [ -f "$venv/.installed" ] && [ ! "$req" -nt "$venv/.installed" ]; then
    continue
  fi
  rm -rf "$venv"
  start=$(date +%s)
  python3 -m venv "$venv"
  # pip's warnings about this machine's extra index folders are noise; errors still show
  "$venv/bin/pip" install -q -r "$req" 2> >(grep -v "is ignored: it is neither" >&2)
  touch "$venv/.installed"
  echo "peers.sh: $venv made in $(( $(date +%s) - start )) s"
done
