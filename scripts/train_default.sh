#!/usr/bin/env bash
# Train the shipped default checkpoints (anny body; COCO-17 and BODY_25 inputs) on every free MoCap
# source (DeepMimic and holosoma from their wheels, the CMU MoCap archives in ../shared/data/cmu-mocap
# or CMU_DIR), on CPU, with the project's own commands. Writes
# src/key2mesh/pretrained/anny_{coco17,body25}.pt (float16 weights). Two stages per model:
#   (both resume an interrupted run and skip a finished one)
#   1. STEPS steps from scratch with the paper's augmentations plus the `detector` noise profile;
#   2. FT_STEPS steps fine-tuned from stage 1 (`pretrain --checkpoint`) with the paper's augmentations
#      only (1 px jitter, 20 % occlusion; no detector noise) and no dropout (measured on real
#      detections and held-out subjects: see docs/training.md).
#   bash scripts/train_default.sh   (STEPS, FT_STEPS, FT_LR, HIDDEN, LR_STEP, SETS, CACHE, CMU_DIR,
#   THREADS, CONFIG / FT_CONFIG (the stages' pretrain --config files, default configs/stage1.yaml and
#   configs/stage2.yaml) overridable; AMP_CPU=1: bf16 autocast on the CPU,
#   ~1.45x faster on CPUs with AVX512-BF16, same accuracy in benchmarks/finetune_recipe.sh's K;
#   SEED=1 SETS=coco17 AMP_CPU=1: the second member of anny-coco17-ensemble, anny_coco17_seed1.pt;
#   SEED=1 SETS=body25 STEPS=6000 AMP_CPU=1: the second member of anny-body25-ensemble)
set -euo pipefail
cd "$(dirname "$0")/.."
K2M=.venv/bin/key2mesh
STEPS=${STEPS:-10000}
FT_STEPS=${FT_STEPS:-3000}
FT_LR=${FT_LR:-3e-4}
HIDDEN=${HIDDEN:-1024}
LR_STEP=${LR_STEP:-$((STEPS / 10))}  # StepLR x0.8 ten times over the run (the official 10 epochs)
SETS=${SETS:-coco17 body25}
CACHE=${CACHE:-cache/mocap_all.npz}
CMU_DIR=${CMU_DIR:-../shared/data/cmu-mocap}
[ -x .venv/bin/python ] || bash scripts/setup.sh
# (re)build the cache when missing or retargeted before the current retargeting version
if ! .venv/bin/python -c "import sys; from key2mesh.data.cache import PoseBank
sys.exit(bool(PoseBank.load(sys.argv[1]).stale_sources()))" "$CACHE" 2>/dev/null; then
  $K2M data prepare --cache "$CACHE" --max-fps 30 \
      --bvh "$CMU_DIR/cmu-bvh-cgspeed-daz.tar.xz" --asf-amc "$CMU_DIR/cmu-asf-amc-01-03.tar.xz"
fi
$K2M data stats "$CACHE"
mkdir -p runs src/key2mesh/pretrained
CONFIG=${CONFIG:-configs/stage1.yaml}        # stage 1's recipe (a pretrain --config file)
FT_CONFIG=${FT_CONFIG:-configs/stage2.yaml}  # stage 2's recipe
SEED=${SEED:-0}  # another seed trains another ensemble member: runs/default_<set>_seed<N>*, anny_<set>_seed<N>.pt
SUF=$([ "$SEED" = 0 ] && echo "" || echo "_seed$SEED")
for SET in $SETS; do
  KSET=$([ "$SET" = body25 ] && echo openpose_body25 || echo coco17)
  RUN="runs/default_$SET$SUF"
  $K2M pretrain --config "$CONFIG" --cache "$CACHE" --out "$RUN" --seed "$SEED" \
      --keypoint-set "$KSET" --hidden "$HIDDEN" --steps "$STEPS" --lr-step "$LR_STEP" --val-every 1000 --resume ${THREADS:+--threads "$THREADS"} ${AMP_CPU:+--amp-cpu}
  FINAL="$RUN/best.pt"
  if [ "$FT_STEPS" -gt 0 ]; then
    $K2M pretrain --config "$FT_CONFIG" --cache "$CACHE" --out "${RUN}_ft" --seed "$SEED" \
        --keypoint-set "$KSET" --hidden "$HIDDEN" --steps "$FT_STEPS" --lr "$FT_LR" \
        --lr-step $((FT_STEPS / 5)) --val-every "$FT_STEPS" --checkpoint "$RUN/last.pt" --resume \
        ${THREADS:+--threads "$THREADS"} ${AMP_CPU:+--amp-cpu}
    FINAL="${RUN}_ft/last.pt"
  fi
  $K2M export-model --checkpoint "$FINAL" --slim "src/key2mesh/pretrained/anny_$SET$SUF.pt"
done
