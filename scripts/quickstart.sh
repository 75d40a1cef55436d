#!/usr/bin/env bash
# Fresh machine → everything: install, run the demo with the shipped model on a real video frame,
# build the free MoCap training cache and run a short pre-training + adaptation on CPU.
# Outputs: outputs/demo/, cache/mocap_anny.npz, runs/quickstart_*/ .  (~10-15 min on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
K2M=.venv/bin/key2mesh
$K2M info
# 1. Demo: MediaPipe BlazePose → Key2Mesh (shipped anny-body25) → overlay + side view, 6 frames.
$K2M demo pose2sim-cam01 --frames 0:60:10 --out outputs/demo
# 2. The free MoCap (DeepMimic clips in the pybullet wheel, climbing MoCap in holosoma-retargeting).
[ -f cache/mocap_anny.npz ] || $K2M data prepare --out cache/mocap_anny.npz
$K2M data stats cache/mocap_anny.npz
# 3. A short pre-training and a label-free adaptation to a detector-like shifted domain.
$K2M pretrain --cache cache/mocap_anny.npz --out runs/quickstart_pretrain --steps 300 --val-every 100
$K2M adapt --source runs/quickstart_pretrain/best.pt --cache cache/mocap_anny.npz \
    --target synthetic:strong --val synthetic:strong --out runs/quickstart_adapt --steps 100 --select-every 50
echo "done: see outputs/demo/ and runs/"
