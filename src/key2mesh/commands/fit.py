"""`key2mesh fit`: the optimisation baseline (SMPLify-style), optionally refining Key2Mesh."""

from __future__ import annotations

import argparse

from key2mesh.commands._args import add_checkpoint_argument
from key2mesh.commands._config import ConfigDefaults, add_config_arguments

HELP = "fit the body model to 2D keypoint files by optimisation (baseline; --checkpoint for Key2Mesh + refinement)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ConfigDefaults("fitting/pipeline.py", "FitConfig")
    p.add_argument(
        "inputs", nargs="+", help="OpenPose JSON files/folders, COCO keypoint JSON, .npy/.npz"
    )
    add_config_arguments(p, "FitConfig")
    p.add_argument("--keypoint-set", help="keypoint set of the inputs when it cannot be inferred")
    p.add_argument(
        "--fit-set",
        help=d.help("fit_set", "keypoint set the fit uses (inputs are converted)"),
    )
    p.add_argument("--body", choices=["anny", "smpl"], help=d.help("body", "body model"))
    p.add_argument("--smpl-dir", help="SMPL model folder for --body smpl")
    add_checkpoint_argument(
        p,
        "start from this checkpoint's (or shipped model's) prediction: Key2Mesh + refinement",
        dest="init_from",
        old=("--init-from",),
    )
    p.add_argument("--iters", help=d.help("iters", "optimisation steps"))
    p.add_argument("--optimizer", choices=["adam", "lbfgs"], help=d.help("optimizer", "optimiser"))
    p.add_argument("--lr", help="learning rate (when not given: the optimiser's own)")
    p.add_argument(
        "--sigma", help=d.help("weights.sigma", "Geman-McClure scale (box-normalised units)")
    )
    p.add_argument("--pose-weight", help=d.help("weights.pose", "pose prior weight"))
    p.add_argument(
        "--hinge-weight", help=d.help("weights.hinge", "knee/elbow hyper-extension weight")
    )
    p.add_argument("--shape-weight", help=d.help("weights.shape", "shape prior weight"))
    p.add_argument("--batch-size", help=d.help("batch_size", "detections fitted at a time"))
    p.add_argument(
        "--min-keypoints",
        help=d.help("min_keypoints", "skip detections with fewer confident keypoints"),
    )
    p.add_argument(
        "--out",
        default="outputs/fit.npz",
        metavar="FILE",
        help="the fitted parameters: ONE .npz file (fit writes one table; the commands that "
        "write several files take an --out FOLDER) (default: %(default)s)",
    )


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

    from key2mesh.commands._args import output_file
    from key2mesh.commands._config import merged_config
    from key2mesh.fitting.pipeline import FitConfig, fit_files
    from key2mesh.safe_paths import atomic_savez, refuse_overwriting_inputs

    flags = {key: getattr(args, key) for key in FLAGS}
    flags.update({f"weights.{field}": getattr(args, flag) for flag, field in WEIGHT_FLAGS.items()})
    names = {
        f"weights.{field}": f"--{flag.replace('_', '-')}" for flag, field in WEIGHT_FLAGS.items()
    }
    names["init_from"] = "--checkpoint"
    cfg = merged_config(FitConfig, args.config, flags, args.set_options, names)
    output_file(
        args.out, suffix=".npz", example="fit.npz"
    )  # a folder: refused now, not after the fit
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
