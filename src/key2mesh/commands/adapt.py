"""`key2mesh adapt`: label-free adaptation of a pre-trained model to your detections."""

from __future__ import annotations

import argparse
import json

from key2mesh.commands._args import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

HELP = "adapt a pre-trained model to unlabelled target detections (WDGRL critic, no 3D labels)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True,
                   help="pre-trained checkpoint (from `key2mesh pretrain`, or a shipped name such as anny-coco17)")
    p.add_argument("--target", nargs="+", required=True,
                   help="target detections: OpenPose JSON folders/files, COCO JSON, .npz/.npy, or "
                        "'synthetic:PROFILE' (held-out MoCap clips with a detector-like noise profile, labelled)")
    p.add_argument("--target-set", help="keypoint set of the target files when it cannot be inferred")
    p.add_argument("--cache", required=True, help="MoCap training cache (source-domain samples)")
    p.add_argument("--val", help="labelled validation: a benchmark file (e.g. `key2mesh data pose2sim`, 12 limb joints) "
                                 "or 'synthetic:PROFILE' (held-out MoCap with a noise profile); selects by PA-MPJPE. "
                                 "Without it: the re-projection error on held-out target detections (label-free)")
    p.add_argument("--out", dest="out_dir", default="runs/adapt")
    p.add_argument("--losses", choices=["2d", "2d+wd", "2d+wd+reg"], default="2d+wd+reg",
                   help="loss ablation of the paper (default: all three terms)")
    p.add_argument("--steps", type=non_negative_int, default=0)
    p.add_argument("--epochs", type=positive_float, default=5.0)
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--lr", type=positive_float, default=1e-4)
    p.add_argument("--critic-steps", type=non_negative_int, default=3, help="k critic steps per adaptation step (paper 3, official code 10)")
    p.add_argument("--gamma", type=non_negative_float, default=50.0, help="gradient-penalty weight (official code 50)")
    p.add_argument("--select-every", type=positive_int, default=500)
    p.add_argument("--bn", choices=["frozen", "batch"], default="frozen",
                   help="BatchNorm of the adapted extractor: F_pt's statistics (frozen, default) or batch statistics")
    p.add_argument("--dropout", action="store_true",
                   help="keep dropout on in the adapted extractor (off by default: L_reg then sees no dropout noise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=non_negative_int, default=0)


def load_targets(paths: list[str], checkpoint, cache: str, keypoint_set: str | None = None):
    """Read target detections from files (any supported reader) into one TargetSet."""
    import torch

    from key2mesh.train.adapt import prepare_target, synthetic_target

    if len(paths) == 1 and paths[0].startswith("synthetic:"):
        return synthetic_target(cache, checkpoint, paths[0].split(":", 1)[1], split="train", seed=11)
    from key2mesh.keypoints.io import read_detections

    kps, confs = [], []
    for path in paths:
        det = read_detections(path, keypoint_set=keypoint_set).to(checkpoint.keypoint_set)
        kp, conf, _ = det.flatten()
        kps.append(torch.as_tensor(kp))
        confs.append(torch.as_tensor(conf))
    return prepare_target(torch.cat(kps), torch.cat(confs), checkpoint.normalization, name=",".join(paths))


def run(args: argparse.Namespace) -> int:
    from key2mesh.keypoints.io import MIN_KEYPOINTS
    from key2mesh.model.checkpoint import load_checkpoint, resolve_checkpoint
    from key2mesh.train.adapt import (
        ABLATIONS,
        AdaptConfig,
        benchmark_target,
        run_adapt,
        synthetic_target,
    )

    args.source = str(resolve_checkpoint(args.source))
    ck = load_checkpoint(args.source)
    target = load_targets(args.target, ck, args.cache, args.target_set)
    print(f"target: {len(target)} detections kept, {target.dropped} dropped (< {MIN_KEYPOINTS} keypoints)")
    validation = None
    if args.val:
        if args.val.startswith("synthetic:"):
            validation = synthetic_target(args.cache, ck, args.val.split(":", 1)[1], split="val")
        else:
            validation = benchmark_target(args.val, ck)
        print(f"validation: {len(validation)} labelled samples from {args.val} (model selection by PA-MPJPE)")
    cfg = AdaptConfig(source=args.source, cache=args.cache, out_dir=args.out_dir, steps=args.steps, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, critic_steps=args.critic_steps, gamma=args.gamma,
                      weights=ABLATIONS[args.losses], select_every=args.select_every, bn=args.bn,
                      dropout=args.dropout, seed=args.seed,
                      device=args.device, threads=args.threads)
    result = run_adapt(cfg, target, validation)
    print(json.dumps(result, indent=2, default=float))
    return 0
