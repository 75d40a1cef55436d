#!/usr/bin/env bash
# Which inputs the second training stage should see: each variant fine-tunes the stage-1 model
# (`pretrain --init`, the paper's recipe + the 'detector' noise profile, 10,000 steps) for STEPS more
# steps (Adam 3e-4, StepLR x0.8 five times) and is scored on
#   pose2sim   real MediaPipe detections in Pose2Sim's 4 demo views (12 limb joints, 392 views)
#   cmu-det    held-out CMU subjects 02 + 05 with the 'detector' noise profile (robustness)
#   cmu-clean  the same without detector noise
# Variants (synth options / network dropout):
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
[ -f "$BENCH" ] || $K2M data pose2sim --out "$BENCH"
mkdir -p "$OUT" benchmarks/results

config() {
  case "$1" in
    A) echo '{"synth": {"noise_profile": "detector"}, "pose_augment": true}' ;;
    B) echo '{"synth": {"noise_profile": "none"}, "pose_augment": true}' ;;
    C) echo '{"synth": {"noise_profile": "none", "jitter_px": 0.3}, "pose_augment": true}' ;;
    D) echo '{"synth": {"noise_profile": "none"}, "pose_augment": true, "model": {"dropout": 0.0}}' ;;
    F) echo '{"synth": {"noise_profile": "none", "jitter_px": 0.3}, "pose_augment": true, "model": {"dropout": 0.0}}' ;;
    G) echo '{"synth": {"noise_profile": "none", "jitter_px": 0.3, "occlusion_prob": 0.05}, "pose_augment": true, "model": {"dropout": 0.0}}' ;;
    H) echo '{"synth": {"noise_profile": "none"}, "pose_augment": true, "model": {"dropout": 0.0}, "weights": {"kp2d": 200.0}}' ;;
    I) echo '{"synth": {"noise_profile": "none"}, "pose_augment": false, "model": {"dropout": 0.0}}' ;;
    J) echo '{"synth": {"noise_profile": "none"}, "pose_augment": true, "model": {"dropout": 0.0}, "ema": 0.999}' ;;
    K) echo '{"synth": {"noise_profile": "none"}, "pose_augment": true, "model": {"dropout": 0.0}, "amp_cpu": true}' ;;
    L) echo '{"synth": {"noise_profile": "none", "distance_range": [2.5, 8.0]}, "pose_augment": true, "model": {"dropout": 0.0}, "amp_cpu": true}' ;;
    M) echo '{"synth": {"noise_profile": "none", "distance_range": [2.5, 8.0]}, "pose_augment": true, "model": {"dropout": 0.0}, "amp_cpu": true, "weights": {"kp3d": 200.0}}' ;;
    N) echo '{"synth": {"noise_profile": "none", "distance_range": [2.5, 8.0]}, "pose_augment": true, "model": {"dropout": 0.0}, "amp_cpu": true, "weights": {"pose": 25.0}}' ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}

for V in $VARIANTS; do
  config "$V" > "$OUT/$V.json"
  $K2M pretrain --config "$OUT/$V.json" --cache "$CACHE" --out "$OUT/$V" --keypoint-set coco17 \
      --hidden 1024 --steps "$STEPS" --lr 3e-4 --lr-step $((STEPS / 5)) --val-every "$STEPS" \
      --init "$INIT" --threads "$THREADS" --resume > "$OUT/$V.log" 2>&1
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

.venv/bin/python - "$OUT" "$INIT" "$STEPS" <<'PY'
import json, sys
from pathlib import Path
out, init, steps = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
# every variant scored in OUT, not only this run's VARIANTS (a later run adds rows)
variants = sorted(p.name.split("_")[1] for p in out.glob("eval_*_pose2sim.json"))
def res(v, d):
    return json.loads((out / f"eval_{v}_{d}.json").read_text())
def cell(v, d):
    r = res(v, d)
    return f"{r['pa_mpjpe']:.1f} / {r['mpjpe']:.1f}"
lines = [f"Stage 2 variants: {steps} steps from {init}. Cells: PA-MPJPE / MPJPE (mm).", "",
         "| variant | options | pose2sim (real) | CMU subjects, detector noise | CMU subjects, clean |",
         "|---|---|---|---|---|"]
result = {}
for v in variants:
    cfg = json.loads((out / f"{v}.json").read_text())
    lines.append(f"| {v} | `{json.dumps(cfg)}` | {cell(v, 'pose2sim')} | {cell(v, 'cmu_detector')} | {cell(v, 'cmu_none')} |")
    for d, key in (("pose2sim", "pose2sim"), ("cmu_detector", "cmu_det"), ("cmu_none", "cmu_clean")):
        result[f"{v}_{key}_pa_mpjpe"] = res(v, d)["pa_mpjpe"]
    result[f"{v}_pose2sim_mpjpe"] = res(v, "pose2sim")["mpjpe"]
text = "\n".join(lines)
print(text)
Path("benchmarks/results/finetune_recipe.md").write_text(text + "\n")
print("RESULT " + " ".join(f"{k}={v:.1f}" for k, v in result.items()))
PY
