#!/usr/bin/env bash
# Train the shipped default checkpoints (anny body; BODY_25 and COCO-17 inputs) on the free MoCap,
# on CPU, with the project's own commands. Writes src/key2mesh/pretrained/anny_{body25,coco17}.pt.
# STEPS (default 5000) and HIDDEN (default 512) can be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
K2M=.venv/bin/key2mesh
STEPS=${STEPS:-5000}
HIDDEN=${HIDDEN:-512}
CACHE=${CACHE:-cache/mocap_anny.npz}
SOURCES=${SOURCES:-deepmimic,holosoma}
AUGMENT=${AUGMENT:-true}
[ -f "$CACHE" ] || $K2M data prepare --out "$CACHE" --fps 60 --sources "$SOURCES"
mkdir -p runs src/key2mesh/pretrained
for SET in body25 coco17; do
  KSET=$([ "$SET" = body25 ] && echo openpose_body25 || echo coco17)
  printf '{"model": {"hidden": %s}, "synth": {"noise_profile": "detector"}, "pose_augment": %s}\n' "$HIDDEN" "$AUGMENT" > "runs/default_$SET.json"
  $K2M pretrain --config "runs/default_$SET.json" --cache "$CACHE" --out "runs/default_$SET" \
      --keypoint-set "$KSET" --steps "$STEPS" --val-every 500
  $K2M export "runs/default_$SET/best.pt" --slim "src/key2mesh/pretrained/anny_$SET.pt"
done
