"""The tables and RESULT line of benchmarks/ablation.sh, from the JSON files its evaluations wrote.

.venv/bin/python benchmarks/ablation_table.py --out runs/ablation --source anny-coco17 --steps 300
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DOMAINS = ("clean", "detector", "cmu", "pose2sim")
ROWS = (
    ("2d", "+ L2D^t"),
    ("2d+wd", "+ L_wd"),
    ("2d+wd+reg", "+ L_reg (full L_DA)"),
    ("2d+mv", "L2D^t + L_mv (multi-view, beyond the paper)"),
    ("2d+wd+reg+mv", "full L_DA + L_mv (multi-view)"),
)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--source", default="anny-coco17")
    p.add_argument("--steps", default="300")
    p.add_argument("--data-free", default="")
    p.add_argument("--data-all", default="")
    a = p.parse_args()
    out = Path(a.out)

    def res(name: str, d: str) -> dict:
        return json.loads((out / f"eval_{name}_{d}.json").read_text())

    def cell(name: str, d: str) -> str:
        r = res(name, d)
        ci = r.get("pa_mpjpe_ci95")
        has_ci = ci and ci[0] is not None and d == "pose2sim"  # [null, null]: one cluster
        interval = f" [{ci[0]:.1f}, {ci[1]:.1f}]" if has_ci else ""
        return f"{r['pa_mpjpe']:.1f}{interval} / {r['mpjpe']:.1f}"

    def cells(name: str) -> str:
        return " | ".join(cell(name, d) for d in DOMAINS)

    n = res("pretrained", "pose2sim")["n"]
    lines = [
        f"Pre-trained model: {a.source}; adapted to the pose2sim development part's detections, "
        f"{a.steps} steps (batch 256, k = 3, lr 1e-4, frozen BatchNorm statistics, dropout off), "
        "checkpoint selected every 25 steps by PA-MPJPE on the development part's labels.",
        "Cells: PA-MPJPE / MPJPE (mm). clean/detector: held-out MoCap, 14 joints; cmu-subj: held-out "
        f"CMU subjects 02+05 with detector noise; pose2sim: the test part ({n} views of unseen "
        "instants), 12 limb joints, [low, high] 95 % bootstrap over instants.",
        "",
        "| model | clean | detector noise | held-out CMU subjects | pose2sim test part |",
        "|---|---|---|---|---|",
        f"| pre-trained | {cells('pretrained')} |",
    ]
    for loss, row in ROWS:
        lines.append(f"| {row} | {cells(f'dev_{loss}')} |")
    text = "\n".join(lines)
    print(text)
    from _common import results_header

    header = results_header(f"Loss ablation: tables built from the evaluations in {a.out}")
    Path("benchmarks/results/ablation.md").write_text(header + "\n" + text + "\n")
    if a.data_free and a.data_all:
        scale = "\n".join(
            [
                "Data scale (pre-trained models, same recipe):",
                "",
                "| training data | clean | detector noise | held-out CMU subjects | pose2sim test part |",
                "|---|---|---|---|---|",
                f"| free MoCap only ({a.data_free}) | {cells('data_free')} |",
                f"| free + CMU ({a.data_all}) | {cells('data_all')} |",
            ]
        )
        print(scale)
        header = results_header(f"Data scale: table built from the evaluations in {a.out}")
        Path("benchmarks/results/data_scale.md").write_text(header + "\n" + scale + "\n")
    result = {
        f"{short}_{d}_pa_mpjpe": res(name, d)["pa_mpjpe"]
        for short, name in (
            ("pretrained", "pretrained"),
            ("l2d", "dev_2d"),
            ("wd", "dev_2d+wd"),
            ("full", "dev_2d+wd+reg"),
            ("l2d_mv", "dev_2d+mv"),
            ("full_mv", "dev_2d+wd+reg+mv"),
        )
        for d in DOMAINS
    }
    for short in ("full", "full_mv"):
        result[f"{short}_vs_pretrained_pose2sim_test_pa_ratio"] = (
            result[f"{short}_pose2sim_pa_mpjpe"] / result["pretrained_pose2sim_pa_mpjpe"]
        )
    ci = {
        f"{short}_pose2sim_pa_mpjpe_ci": res(name, "pose2sim")["pa_mpjpe_ci95"]
        for short, name in (("pretrained", "pretrained"), ("full_mv", "dev_2d+wd+reg+mv"))
    }
    if a.data_free and a.data_all:
        result.update(
            {
                f"data_{k}_{d}_pa_mpjpe": res(f"data_{k}", d)["pa_mpjpe"]
                for k in ("free", "all")
                for d in DOMAINS
            }
        )
    print(
        "RESULT "
        + " ".join(f"{k}={v:.3f}" if "ratio" in k else f"{k}={v:.1f}" for k, v in result.items())
        + " "
        + " ".join(f"{k}={lo:.1f},{hi:.1f}" for k, (lo, hi) in ci.items())
    )


if __name__ == "__main__":
    main()
