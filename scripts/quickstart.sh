#!/usr/bin/env bash
# Fresh machine → the main job: install key2mesh (scripts/setup.sh), then run the demo with the
# shipped model on real footage (the pose2sim demo video, extracted from its wheel): MediaPipe
# BlazePose → Key2Mesh (shipped model) → mesh overlay + side view. A few minutes on 2 CPU cores.
# Outputs: outputs/demo/.  Training is separate: scripts/train_quick.sh (minutes) or
# scripts/train_default.sh (the shipped models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
K2M=.venv/bin/key2mesh
$K2M info
$K2M demo pose2sim-cam01 --frames 0:60:10 --out outputs/demo
echo "done: see outputs/demo/"
