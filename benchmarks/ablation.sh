#!/usr/bin/env bash
# Loss ablation of the paper (pre-trained, +L2D^t, +L_wd, +L_reg) and, beyond it, the multi-view
# term L_mv, on real footage split into a development and a test part, plus the data-scale effect.
#
# Domains (3D ground truth never used for training):
#   clean      held-out MoCap (the checkpoint's own held-out clips and subjects), no noise
#   detector   the same with the 'detector' noise profile
#   cmu-subj   only the held-out CMU subjects (02, 05), 'detector' noise
#   pose2sim   the TEST part of the real benchmark (second half of the clip's instants;
#              `key2mesh data pose2sim` writes BENCH_dev.npz / BENCH_test.npz), 12 limb joints
# SOURCE (default: the shipped anny-coco17) is adapted to the DEVELOPMENT part's detections with each
# loss set, the checkpoint selected by PA-MPJPE on the development part's labels (the paper's rule
# with a labelled set that is not the test set), and scored on the test part's unseen instants.
# Label-free adaptation (adapt's defaults, each part adapted to itself) is benchmarks/adaptation.py.
# DATA_FREE / DATA_ALL: two checkpoints trained with the same recipe on free MoCap only and on free +
# CMU (scripts/train_default.sh with CACHE=...); their rows give the data-scale effect.
# Tables: benchmarks/results/ablation.md (and data_scale.md); the last line is RESULT key=value ...
#
#   bash benchmarks/ablation.sh        (SOURCE, STEPS, CACHE, BENCH, OUT, DATA_FREE, DATA_ALL overridable)
set -euo pipefail
cd "$(dirname "$0")/.."
K2M=.venv/bin/key2mesh
CACHE=${CACHE:-cache/mocap_all.npz}
BENCH=${BENCH:-cache/pose2sim_benchmark.npz}
SOURCE=${SOURCE:-anny-coco17}
STEPS=${STEPS:-300}
OUT=${OUT:-runs/ablation}
DATA_FREE=${DATA_FREE:-}
DATA_ALL=${DATA_ALL:-}
DEV=${BENCH%.npz}_dev.npz
TEST=${BENCH%.npz}_test.npz
mkdir -p "$OUT" benchmarks/results
[ -f "$CACHE" ] || { echo "missing $CACHE: build it as scripts/train_default.sh does"; exit 2; }
[ -f "$TEST" ] || $K2M data pose2sim --benchmark "$BENCH"

evaluate_all() {  # checkpoint name
  $K2M evaluate --dataset mocap-heldout --noise-profile none --cache "$CACHE" --checkpoint "$1" --json "$OUT/eval_$2_clean.json" > /dev/null
  $K2M evaluate --dataset mocap-heldout --noise-profile detector --cache "$CACHE" --checkpoint "$1" --json "$OUT/eval_$2_detector.json" > /dev/null
  $K2M evaluate --dataset mocap-heldout --heldout subjects --noise-profile detector --cache "$CACHE" --checkpoint "$1" \
      --json "$OUT/eval_$2_cmu.json" > /dev/null
  $K2M evaluate --dataset "$TEST" --checkpoint "$1" --json "$OUT/eval_$2_pose2sim.json" > /dev/null
}

multiview() { case "$1" in *mv) echo --multiview ;; esac; }
evaluate_all "$SOURCE" pretrained
for L in 2d 2d+wd 2d+wd+reg 2d+mv 2d+wd+reg+mv; do
  $K2M adapt --checkpoint "$SOURCE" --cache "$CACHE" --target "$DEV" --val "$DEV" $(multiview "$L") \
      --losses "$L" --out "$OUT/dev_$L" --steps "$STEPS" --select-every 25 --overwrite > "$OUT/dev_$L.log" 2>&1
  evaluate_all "$OUT/dev_$L/best.pt" "dev_$L"
done
[ -n "$DATA_FREE" ] && evaluate_all "$DATA_FREE" data_free
[ -n "$DATA_ALL" ] && evaluate_all "$DATA_ALL" data_all
.venv/bin/python benchmarks/ablation_table.py --out "$OUT" --source "$SOURCE" --steps "$STEPS" \
    --data-free "$DATA_FREE" --data-all "$DATA_ALL"
