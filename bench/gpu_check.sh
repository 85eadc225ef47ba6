#!/usr/bin/env bash
# The GPU check of docs/contracts.md §3.1 --device cuda, in at most 5 minutes on one NVIDIA GPU:
# the runner against a bare session.run loop on the same preprocessed tensors (target >= 0.95x),
# at batch 1 and at a declared onnx.batch_size, GPU utilisation and memory, and GPU vs CPU scores
# (bench/gpu_check.py says how).
#   bench/gpu_check.sh [--exams N] [--batch N]  (GPU_CHECK_CASES=DIR: a set already built)
# Exit 0 OK, 1 target or agreement not met, 2 no usable GPU (said in one line).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU on this machine (nvidia-smi finds none); run it on a GPU host" >&2
  exit 2
fi
nvidia-smi -L
VENV=.gpu-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e .
  # the GPU build replaces the CPU one (both install the same onnxruntime module)
  "$VENV/bin/pip" uninstall -q -y onnxruntime
  "$VENV/bin/pip" install -q "onnxruntime-gpu>=1.18"
fi
CASES="${GPU_CHECK_CASES:-.gpu-check/cases}"
if [ ! -f "$CASES/manifest.json" ]; then
  "$VENV/bin/mammocert" cases build --recipe reference_cases/default.yaml --exams 48 --out "$CASES"
fi
exec timeout 300 "$VENV/bin/python" bench/gpu_check.py --cases "$CASES" "$@"
