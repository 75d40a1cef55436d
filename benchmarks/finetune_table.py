"""The table of ``benchmarks/finetune_recipe.sh``: every stage-2 variant scored in ``--out``
(``eval_<V>_{pose2sim,cmu_detector,cmu_none}.json`` from ``key2mesh evaluate --json``), with
its recipe (``configs/finetune/<V>.yaml``), into ``benchmarks/results/finetune_recipe.md``.
The last line is ``RESULT A_pose2sim_pa_mpjpe=... D_cmu_det_pa_mpjpe=... ...``.

    .venv/bin/python benchmarks/finetune_table.py --out runs/finetune_recipe \
        --init runs/default_coco17/last.pt --steps 1500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = (("pose2sim", "pose2sim"), ("cmu_detector", "cmu_det"), ("cmu_none", "cmu_clean"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/finetune_recipe", help="the runs folder of the script")
    p.add_argument("--init", default="runs/default_coco17/last.pt", help="the stage-1 model")
    p.add_argument("--steps", default="1500", help="stage-2 steps of each variant")
    p.add_argument("--results", default=str(ROOT / "benchmarks/results/finetune_recipe.md"))
    a = p.parse_args()
    out = Path(a.out)
    # every variant scored in OUT, not only this run's VARIANTS (a later run adds rows)
    variants = sorted(q.name.split("_")[1] for q in out.glob("eval_*_pose2sim.json"))

    def res(v: str, d: str) -> dict:
        return json.loads((out / f"eval_{v}_{d}.json").read_text())

    def cell(v: str, d: str) -> str:
        r = res(v, d)
        return f"{r['pa_mpjpe']:.1f} / {r['mpjpe']:.1f}"

    lines = [
        f"Stage 2 variants: {a.steps} steps from {a.init}. Cells: PA-MPJPE / MPJPE (mm).",
        "",
        "| variant | options | pose2sim (real) | CMU subjects, detector noise | CMU subjects, clean |",
        "|---|---|---|---|---|",
    ]
    result = {}
    for v in variants:
        cfg = yaml.safe_load((ROOT / "configs" / "finetune" / f"{v}.yaml").read_text())
        cells = " | ".join(cell(v, d) for d, _ in DOMAINS)
        lines.append(f"| {v} | `{json.dumps(cfg)}` | {cells} |")
        for d, key in DOMAINS:
            result[f"{v}_{key}_pa_mpjpe"] = res(v, d)["pa_mpjpe"]
        result[f"{v}_pose2sim_mpjpe"] = res(v, "pose2sim")["mpjpe"]
    text = "\n".join(lines)
    print(text)
    from _common import results_header

    header = results_header(f"Stage-2 recipe variants: table built from the evaluations in {out}")
    Path(a.results).write_text(header + "\n" + text + "\n")
    print("RESULT " + " ".join(f"{k}={v:.1f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
