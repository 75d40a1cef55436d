#!/usr/bin/env bash
# The paper's loss ablation (pre-trained, +L2D^t, +L_wd, +L_reg) on a domain shift built from free
# data: held-out MoCap clips seen through a detector-like noise profile ("strong": per-joint noise
# growing to the extremities, left/right swaps, truncation, lower confidences). key2mesh commands only.
#   bash benchmarks/ablation.sh            (STEPS, PT_STEPS, PROFILE, CACHE overridable)
set -euo pipefail
cd "$(dirname "$0")/.."
K2M=.venv/bin/key2mesh
CACHE=${CACHE:-cache/mocap_anny.npz}
PROFILE=${PROFILE:-strong}
PT_STEPS=${PT_STEPS:-1500}
STEPS=${STEPS:-300}
OUT=${OUT:-runs/ablation}
mkdir -p "$OUT" benchmarks/results
[ -f "$CACHE" ] || $K2M data prepare --out "$CACHE"
echo '{"model": {"hidden": 512}}' > "$OUT/pretrain.json"
[ -f "$OUT/pretrain/best.pt" ] || $K2M pretrain --config "$OUT/pretrain.json" --cache "$CACHE" --out "$OUT/pretrain" --steps "$PT_STEPS" --val-every 500
$K2M evaluate --dataset mocap-heldout --noise-profile "$PROFILE" --cache "$CACHE" --checkpoint "$OUT/pretrain/best.pt" --json "$OUT/pretrained.json"
for L in 2d 2d+wd 2d+wd+reg; do
  $K2M adapt --source "$OUT/pretrain/best.pt" --cache "$CACHE" --target "synthetic:$PROFILE" --val "synthetic:$PROFILE" \
      --losses "$L" --out "$OUT/adapt_$L" --steps "$STEPS" --select-every 50
  $K2M evaluate --dataset mocap-heldout --noise-profile "$PROFILE" --cache "$CACHE" --checkpoint "$OUT/adapt_$L/best.pt" --json "$OUT/adapt_$L.json"
done
.venv/bin/python - "$OUT" "$PROFILE" <<'PY'
import json, sys
from pathlib import Path
out, profile = Path(sys.argv[1]), sys.argv[2]
rows = [("pre-trained", "pretrained"), ("+ L2D^t", "adapt_2d"), ("+ L_wd", "adapt_2d+wd"), ("+ L_reg", "adapt_2d+wd+reg")]
lines = [f"Target: held-out MoCap clips, noise profile '{profile}' (labels used only for scoring).", "",
         "| model | PA-MPJPE (mm) | MPJPE (mm) | PVE (mm) |", "|---|---|---|---|"]
for label, name in rows:
    r = json.loads((out / f"{name}.json").read_text())
    lines.append(f"| {label} | {r['pa_mpjpe']:.1f} | {r['mpjpe']:.1f} | {r['pve']:.1f} |")
text = "\n".join(lines)
print(text)
Path("benchmarks/results/ablation.md").write_text(text + "\n")
PY
