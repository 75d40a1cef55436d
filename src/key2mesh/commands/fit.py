"""`key2mesh fit`: the optimisation baseline (SMPLify-style), optionally refining Key2Mesh."""

from __future__ import annotations

import argparse

from key2mesh.commands._config import add_config_arguments
from key2mesh.keypoints.io import MIN_KEYPOINTS

HELP = "fit the body model to 2D keypoint files by optimisation (baseline; --init-from for Key2Mesh + refinement)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="+", help="OpenPose JSON files/folders, COCO keypoint JSON, .npy/.npz"
    )
    add_config_arguments(p, "FitConfig")
    p.add_argument("--keypoint-set", help="keypoint set of the inputs when it cannot be inferred")
    p.add_argument(
        "--fit-set",
        help="keypoint set the fit uses (inputs are converted; default openpose_body25)",
    )
    p.add_argument("--body", choices=["anny", "smpl"], help="body model (default anny)")
    p.add_argument("--smpl-dir", help="SMPL model folder for --body smpl")
    p.add_argument(
        "--init-from",
        help="checkpoint (or shipped name): start from Key2Mesh's prediction (refinement)",
    )
    p.add_argument("--iters", help="optimisation steps (default 100)")
    p.add_argument("--optimizer", choices=["adam", "lbfgs"], help="default adam")
    p.add_argument("--lr", help="learning rate (default: the optimiser's own)")
    p.add_argument(
        "--sigma",
        help="Geman-McClure scale (box-normalised units; default 0.1)",
    )
    p.add_argument("--pose-weight", help="pose prior weight (default 1e-3)")
    p.add_argument(
        "--hinge-weight",
        help="knee/elbow hyper-extension weight (default 1)",
    )
    p.add_argument("--shape-weight", help="shape prior weight (default 1e-2)")
    p.add_argument("--batch-size", help="detections fitted at a time (default 512)")
    p.add_argument(
        "--min-keypoints",
        help=f"skip detections with fewer confident keypoints (default {MIN_KEYPOINTS})",
    )
    p.add_argument("--out", default="outputs/fit.npz")


# flags that set the FitConfig field of the same name, and those of its weights
FLAGS = (
    "fit_set",
    "body",
    "smpl_dir",
    "init_from",
    "iters",
    "optimizer",
    "lr",
    "batch_size",
    "min_keypoints",
)
WEIGHT_FLAGS = {
    "sigma": "sigma",
    "pose_weight": "pose",
    "hinge_weight": "hinge",
    "shape_weight": "shape",
}


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from key2mesh.commands._config import merged_config
    from key2mesh.fitting.pipeline import FitConfig, fit_files
    from key2mesh.safe_paths import atomic_savez, refuse_overwriting_inputs

    flags = {key: getattr(args, key) for key in FLAGS}
    flags.update({f"weights.{field}": getattr(args, flag) for flag, field in WEIGHT_FLAGS.items()})
    names = {
        f"weights.{field}": f"--{flag.replace('_', '-')}" for flag, field in WEIGHT_FLAGS.items()
    }
    cfg = merged_config(FitConfig, args.config, flags, args.set_options, names)
    refuse_overwriting_inputs(args.out, [*args.inputs, cfg.init_from])
    table = fit_files(cfg, args.inputs, args.keypoint_set)
    out = atomic_savez(
        args.out,
        rotmats=table.rotmats,
        shape=table.shape,
        reprojection_error=table.reprojection_error,
        names=np.array(table.names),
        body=table.body,
        keypoint_set=table.keypoint_set,
    )
    why = "; ".join(f"{n} {reason}" for reason, n in table.skipped.items())
    n, total = len(table.names), table.total
    print(
        f"wrote {out}: {n} fits in {table.seconds:.1f} s, "
        f"mean normalised re-projection error {table.reprojection_error.mean():.4f}"
        f"{f' ({total - n} of {total} detections skipped: {why})' if why else ''}"
    )
    return 0
