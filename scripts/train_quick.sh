#!/usr/bin/env bash
# A short training run on CPU (~10 min on 2 cores): build the free MoCap cache (DeepMimic clips from
# the pybullet wheel, climbing MoCap from holosoma-retargeting), pre-train briefly, and adapt
# label-free to a detector-like shifted domain. Outputs: cache/mocap_anny.npz, runs/quickstart_*/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
K2M=.venv/bin/key2mesh
# (re)build the cache when missing or retargeted before the current retargeting version
if ! .venv/bin/python -c "import sys; from key2mesh.data.cache import PoseBank
sys.exit(bool(PoseBank.load(sys.argv[1]).stale_sources()))" cache/mocap_anny.npz 2>/dev/null; then
  $K2M data prepare --cache cache/mocap_anny.npz
fi
$K2M data stats cache/mocap_anny.npz
$K2M pretrain --cache cache/mocap_anny.npz --out runs/quickstart_pretrain --steps 300 --val-every 100 --overwrite
$K2M adapt --checkpoint runs/quickstart_pretrain/best.pt --cache cache/mocap_anny.npz \
    --target synthetic:strong --val synthetic:strong --out runs/quickstart_adapt --steps 100 --select-every 50 --overwrite
echo "done: see runs/quickstart_pretrain and runs/quickstart_adapt"
