"""t-SNE of extractor features, MoCap source vs target, before and after adaptation (Fig. 7).

    .venv/bin/python benchmarks/tsne.py --pretrained anny-coco17 \
        --adapted runs/ablation/pose2sim_2d+wd+reg/best.pt --target cache/pose2sim_benchmark.npz

Source: held-out MoCap clips projected without noise (the pre-training domain). Target: real
detections (a detections/benchmark file) or ``synthetic:PROFILE``. Checkpoints by path or shipped name.
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pretrained", required=True)
    p.add_argument("--adapted", required=True)
    p.add_argument("--cache", default="cache/mocap_all.npz")
    p.add_argument(
        "--target",
        default="cache/pose2sim_benchmark.npz",
        help="detections file or synthetic:PROFILE",
    )
    p.add_argument("--num", type=int, default=600)
    p.add_argument("--out", default="benchmarks/results/tsne.png")
    a = p.parse_args()
    from key2mesh.commands.adapt import load_targets
    from key2mesh.eval.tsne import domain_gap, tsne_figure
    from key2mesh.model.checkpoint import build_network, load_checkpoint, resolve_checkpoint
    from key2mesh.train.adapt import synthetic_target

    ck_pt, ck_ad = (
        load_checkpoint(resolve_checkpoint(a.pretrained)),
        load_checkpoint(resolve_checkpoint(a.adapted)),
    )
    src = synthetic_target(a.cache, ck_pt, "none", n=a.num, seed=1)
    tgt = load_targets([a.target], ck_pt, a.cache)
    tgt = tgt.subset(torch.randperm(len(tgt), generator=torch.Generator().manual_seed(2))[: a.num])
    before, after = build_network(ck_pt).extractor, build_network(ck_ad).extractor
    path = tsne_figure(src.inputs, tgt.inputs, before, after, a.out)
    with torch.no_grad():
        fs = before(src.inputs).numpy()
        gap_before, gap_after = (
            domain_gap(fs, before(tgt.inputs).numpy()),
            domain_gap(fs, after(tgt.inputs).numpy()),
        )
    print(
        f"wrote {path}; linear-probe source/target accuracy: before {gap_before:.3f}, after {gap_after:.3f} (0.5 = aligned)"
    )


if __name__ == "__main__":
    main()
