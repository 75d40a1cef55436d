#!/usr/bin/env bash
# Which inputs the second training stage should see: each variant fine-tunes the stage-1 model
# (`pretrain --checkpoint`, the paper's recipe + the 'detector' noise profile, 10,000 steps) for STEPS more
# steps (Adam 3e-4, StepLR x0.8 five times) and is scored on
#   pose2sim   real MediaPipe detections in Pose2Sim's 4 demo views (12 limb joints, 392 views)
#   cmu-det    held-out CMU subjects 02 + 05 with the 'detector' noise profile (robustness)
#   cmu-clean  the same without detector noise
# Variants (each a pretrain --config file, configs/finetune/<V>.yaml):
#   A detector noise (stage 1's inputs: the control)   B no detector noise
#   C B + 0.3 px jitter                                D B + no dropout (what the shipped models use)
#   F C + no dropout                                   G F + 5 % occlusion
#   H D + 2D loss weight x4 (200)                      I D without the pose sampler
#   J D + weight average (EMA, decay 0.999)            K D + bf16 autocast on the CPU
#   L K + camera distance 2.5-8 m per sample          M L + 3D keypoint loss weight x4 (200)
#   N L + pose (rotation) loss weight x1/4 (25)
# The last line is machine-readable: RESULT A_pose2sim_pa_mpjpe=... D_cmu_det_pa_mpjpe=...
#
#   bash benchmarks/finetune_recipe.sh     (INIT, STEPS, CACHE, BENCH, OUT, THREADS, VARIANTS overridable)
set -euo pipefail
cd "$(dirname "$0")/.."
K2M=.venv/bin/key2mesh
INIT=${INIT:-runs/default_coco17/last.pt}
STEPS=${STEPS:-1500}
CACHE=${CACHE:-cache/mocap_all.npz}
BENCH=${BENCH:-cache/pose2sim_benchmark.npz}
OUT=${OUT:-runs/finetune_recipe}
THREADS=${THREADS:-1}
VARIANTS=${VARIANTS:-A B C D F G H I J K L M N}
[ -f "$INIT" ] || { echo "missing $INIT: run scripts/train_default.sh (stage 1) first"; exit 2; }
[ -f "$CACHE" ] || { echo "missing $CACHE: build it as scripts/train_default.sh does"; exit 2; }
[ -f "$BENCH" ] || $K2M data pose2sim --benchmark "$BENCH"
mkdir -p "$OUT" benchmarks/results

for V in $VARIANTS; do
  [ -f "configs/finetune/$V.yaml" ] || { echo "unknown variant $V (no configs/finetune/$V.yaml)" >&2; exit 2; }
  $K2M pretrain --config "configs/finetune/$V.yaml" --cache "$CACHE" --out "$OUT/$V" --keypoint-set coco17 \
      --hidden 1024 --steps "$STEPS" --lr 3e-4 --lr-step $((STEPS / 5)) --val-every "$STEPS" \
      --checkpoint "$INIT" --threads "$THREADS" --resume > "$OUT/$V.log" 2>&1
  CK="$OUT/$V/last.pt"
  # scores newer than the checkpoint are kept (re-running the script only scores what changed)
  [ "$OUT/eval_${V}_pose2sim.json" -nt "$CK" ] ||
    $K2M evaluate --dataset "$BENCH" --checkpoint "$CK" --json "$OUT/eval_${V}_pose2sim.json" > /dev/null
  for P in detector none; do
    [ "$OUT/eval_${V}_cmu_$P.json" -nt "$CK" ] ||
      $K2M evaluate --dataset mocap-heldout --heldout subjects --noise-profile "$P" --cache "$CACHE" \
          --checkpoint "$CK" --json "$OUT/eval_${V}_cmu_$P.json" > /dev/null
  done
done

.venv/bin/python benchmarks/finetune_table.py --out "$OUT" --init "$INIT" --steps "$STEPS"
