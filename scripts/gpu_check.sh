#!/usr/bin/env bash
# GPU check (< 4 min on one GPU): the CUDA tests, 200 pre-training steps and 50 adaptation steps on
# CUDA (bf16 autocast), with samples/s, and keypoints → full mesh through the API on CUDA
# (benchmarks/inference_device.py: batch 1 and 512). Needs an installed .venv (scripts/setup.sh) and a training
# cache (CACHE, default cache/mocap_anny.npz; built from the free wheels when missing and reachable).
#   bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
K2M=.venv/bin/key2mesh
CACHE=${CACHE:-cache/mocap_anny.npz}
OUT=${OUT:-runs/gpu_check}
export ANNY_CACHE_DIR=${ANNY_CACHE_DIR:-$PWD/.cache/anny} KEY2MESH_CACHE_DIR=${KEY2MESH_CACHE_DIR:-$PWD/.cache/key2mesh}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print('device:', torch.cuda.get_device_name(0))"
$PY -m pytest -q tests/test_cuda.py tests/test_random_devices.py
if ! $PY -c "import sys; from key2mesh.data.cache import PoseBank
sys.exit(bool(PoseBank.load(sys.argv[1]).stale_sources()))" "$CACHE" 2>/dev/null; then
  $K2M data prepare --cache "$CACHE"  # missing, or retargeted before the current version
fi
rm -rf "$OUT"
$K2M pretrain --cache "$CACHE" --out "$OUT/pt" --keypoint-set coco17 --steps 200 --val-every 100 --device cuda --overwrite \
    | tee "$OUT.pretrain.log" | grep -E '"samples_per_s"|pa_mpjpe' | tail -3
$K2M adapt --checkpoint "$OUT/pt/last.pt" --cache "$CACHE" --target synthetic:strong --val synthetic:strong \
    --out "$OUT/ad" --steps 50 --select-every 25 --device cuda --overwrite | tee "$OUT.adapt.log" | grep -E '"samples_per_s"' | tail -1
$PY benchmarks/inference_device.py --device cuda | tee "$OUT.inference.log" | tail -3
$PY scripts/gpu_rates.py "$OUT"
