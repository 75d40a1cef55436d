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
.venv/bin/key2mesh --version
